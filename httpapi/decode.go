package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/offload-app/offload"
)

var (
	errValidation   = &offload.Error{Code: offload.CodeValidation}
	errBodyTooLarge = &offload.Error{Code: offload.CodeRequestTooLarge}
	errInternal     = &offload.Error{Code: offload.CodeInternal}
)

// decodeBody reads a JSON object from r's body into dst (a struct whose
// fields are json.RawMessage, checked by the field helpers below). A body
// over maxBytes is refused before the rest is read; anything that is not a
// single JSON object is a validation error. Unknown fields are ignored, as
// in the existing deployment.
func decodeBody(w http.ResponseWriter, r *http.Request, maxBytes int64, dst any) error {
	if r.ContentLength > maxBytes {
		return errBodyTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errBodyTooLarge
		}
		return errValidation
	}
	return decodeObject(body, dst)
}

// decodeObject is the pure part of decodeBody, fuzzed on its own.
func decodeObject(body []byte, dst any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return errValidation
	}
	// Unmarshal also refuses trailing data after the object.
	if err := json.Unmarshal(body, dst); err != nil {
		return errValidation
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// textField parses a required JSON string of min..max code points.
func textField(raw json.RawMessage, minLen, maxLen int) (string, error) {
	if isNull(raw) || raw[0] != '"' {
		return "", errValidation
	}
	s, ok := plainString(raw)
	if !ok {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errValidation
		}
	}
	if n := utf8.RuneCountInString(s); n < minLen || n > maxLen {
		return "", errValidation
	}
	return s, nil
}

// plainString returns the text of a JSON string literal that has no escapes
// and no invalid UTF-8, the common case, without a second decoding pass.
// raw comes from a successful decode, so it is a well-formed literal.
func plainString(raw json.RawMessage) (string, bool) {
	body := raw[1 : len(raw)-1]
	for _, c := range body {
		if c == '\\' || c < 0x20 {
			return "", false
		}
	}
	if !utf8.Valid(body) {
		return "", false // json.Unmarshal turns invalid bytes into U+FFFD
	}
	return string(body), true
}

// intField parses a required JSON integer in [minVal, maxVal]. Strings are
// refused even when they hold digits; a number with a zero fraction (3.0)
// is accepted, as pydantic does.
func intField(raw json.RawMessage, minVal, maxVal int64) (int64, error) {
	if isNull(raw) || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return 0, errValidation
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(raw), 64)
		if ferr != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			return 0, errValidation
		}
		n = int64(f)
	}
	if n < minVal || n > maxVal {
		return 0, errValidation
	}
	return n, nil
}

// listField parses an optional JSON array of at most maxItems strings of
// minLen..maxLen code points. Absent means empty; null is refused.
func listField(raw json.RawMessage, maxItems, minLen, maxLen int) ([]string, error) {
	if len(raw) == 0 {
		return []string{}, nil
	}
	if raw[0] != '[' {
		return nil, errValidation
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || len(items) > maxItems {
		return nil, errValidation
	}
	out := make([]string, len(items))
	for i, it := range items {
		s, err := textField(it, minLen, maxLen)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// ignoredTimeField checks an optional timestamp the server ignores. The
// existing deployment parses it with pydantic, which takes RFC 3339 with or
// without an offset, plain dates and Unix numbers; refusing any of those
// would break a client that works today, so any string or number passes
// and only other JSON types are refused.
func ignoredTimeField(raw json.RawMessage) error {
	if isNull(raw) || raw[0] == '"' || raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9') {
		return nil
	}
	return errValidation
}
