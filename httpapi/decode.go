package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/offload-app/offload"
)

var (
	errValidation   = &offload.Error{Code: offload.CodeValidation}
	errBodyTooLarge = &offload.Error{Code: offload.CodeRequestTooLarge}
	errInternal     = &offload.Error{Code: offload.CodeInternal}
)

// The request bodies are read as the existing deployment (FastAPI, pydantic
// v2) reads them, so a client sees the same answer from either:
//   - Content-Type absent, empty, application/json or application/*+json
//     (parameters allowed) is JSON; any other type is 422.
//   - The body is UTF-8 (a leading BOM is skipped, as Python's json.loads
//     does); invalid UTF-8 anywhere, and \u escapes that leave an unpaired
//     surrogate in a field we read, are 422 rather than silently turned
//     into U+FFFD, which would make different bytes one install id.
//   - Field names match exactly; a key that differs only in case is an
//     unknown field and ignored; of duplicate keys the last one wins.
//   - since takes what pydantic's datetime takes (see ignoredTimeField).

// decodeBody reads a JSON object from r's body into dst, a pointer to a
// struct whose fields are json.RawMessage, checked by the field helpers
// below. A body over maxBytes is refused before the rest is read; a body
// that is not JSON by its Content-Type is refused unread; anything that is
// not a single JSON object is a validation error.
func decodeBody(w http.ResponseWriter, r *http.Request, maxBytes int64, dst any) error {
	if r.ContentLength > maxBytes {
		return errBodyTooLarge
	}
	if !jsonContentType(r.Header.Get("Content-Type")) {
		return errValidation
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

// jsonContentType reports whether a request body with this Content-Type
// header value is read as JSON. It is FastAPI's rule (fastapi/routing.py,
// strict_content_type off, as before FastAPI 0.132): no value (absent or
// empty), or a type whose main type is "application" and whose subtype is
// "json" or ends in "+json", as Python's email.message parses it: the part
// before the first ";", stripped of Python whitespace and lowercased, with
// exactly one "/" (any other count reads as text/plain).
func jsonContentType(v string) bool {
	if v == "" {
		return true
	}
	mediaType, _, _ := strings.Cut(v, ";")
	mediaType = asciiLower(trimPySpace(mediaType))
	main, sub, _ := strings.Cut(mediaType, "/")
	if strings.Count(mediaType, "/") != 1 || main != "application" {
		return false
	}
	return sub == "json" || strings.HasSuffix(sub, "+json")
}

// trimPySpace strips what Python's str.strip does from a header value that
// Starlette decoded as Latin-1, so byte by byte. Go's server has already
// trimmed spaces and tabs and refused control characters; NEL (0x85) and
// NBSP (0xa0) are the bytes that can still reach here.
func trimPySpace(s string) string {
	isSpace := func(c byte) bool {
		switch c {
		case ' ', '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, 0x85, 0xa0:
			return true
		}
		return false
	}
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// asciiLower lowercases ASCII letters only. Python lowercases Latin-1 too,
// but that can't make a byte ASCII, and strings.ToLower would fold other
// bytes in ways Python doesn't (it reads header bytes as UTF-8).
func asciiLower(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// decodeObject is the pure part of decodeBody, fuzzed on its own.
//
// encoding/json matches struct fields case-insensitively (and by Unicode
// folding: "ſ" finds "s"), with no option to turn that off; its exact-match
// successor encoding/json/v2 needs GOEXPERIMENT=jsonv2 in Go 1.26. So the
// object is decoded into a map, whose keys match exactly and where the
// last duplicate wins, as in a Python dict, and the fields of dst are
// picked from it by their json names.
func decodeObject(body []byte, dst any) error {
	body = bytes.TrimPrefix(body, utf8BOM)
	if !utf8.Valid(body) {
		return errValidation
	}
	// Only JSON's own whitespace may surround the value (json.loads refuses
	// \f or NBSP, which bytes.TrimSpace would skip).
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return errValidation
	}
	var fields map[string]json.RawMessage
	// Unmarshal also refuses trailing data after the object.
	if err := json.Unmarshal(body, &fields); err != nil {
		return errValidation
	}
	setFields(fields, dst)
	return nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// setFields sets each json.RawMessage field of the struct dst points to
// from fields, by the exact name in its json tag. A field without a value
// in fields is left alone. Any other field type is a programming error.
func setFields(fields map[string]json.RawMessage, dst any) {
	v := reflect.ValueOf(dst).Elem()
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type != rawMessageType {
			panic("httpapi: request field " + t.Name() + "." + f.Name + " is not a json.RawMessage")
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if raw, ok := fields[name]; ok {
			v.Field(i).SetBytes(raw)
		}
	}
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// textField parses a required JSON string of min..max code points.
func textField(raw json.RawMessage, minLen, maxLen int) (string, error) {
	s, err := stringValue(raw)
	if err != nil {
		return "", err
	}
	if n := utf8.RuneCountInString(s); n < minLen || n > maxLen {
		return "", errValidation
	}
	return s, nil
}

// stringValue reads a JSON string literal. A \u escape that leaves a
// surrogate unpaired is refused: encoding/json would read it as U+FFFD, so
// "\ud800" and "\udbff" would be the same string.
func stringValue(raw json.RawMessage) (string, error) {
	if isNull(raw) || raw[0] != '"' {
		return "", errValidation
	}
	if s, ok := plainString(raw); ok {
		return s, nil
	}
	if !pairedSurrogates(raw) {
		return "", errValidation
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
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

// pairedSurrogates reports whether every \u escape of a surrogate in the
// well-formed string literal raw is a high one directly followed by a low
// one, the only form that stands for a code point. The JSON parser has no
// option to refuse the others, hence this scan.
func pairedSurrogates(raw json.RawMessage) bool {
	for i := 1; i < len(raw)-1; i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // a one-letter escape: skip the letter, which may be '\\'
			continue
		}
		r := hex4(raw[i+2 : i+6])
		i += 5
		switch {
		case 0xdc00 <= r && r <= 0xdfff:
			return false
		case 0xd800 <= r && r <= 0xdbff:
			if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return false
			}
			if lo := hex4(raw[i+3 : i+7]); lo < 0xdc00 || lo > 0xdfff {
				return false
			}
			i += 6
		}
	}
	return true
}

// hex4 reads four hex digits that a JSON parser has already checked.
func hex4(b []byte) rune {
	n, _ := strconv.ParseUint(string(b), 16, 16)
	return rune(n)
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

// ignoredTimeField checks an optional timestamp the server ignores
// (reconcile's since). It takes exactly what the existing deployment's
// Optional[datetime] field takes, so a client that works with one works
// with the other: null or absent; a JSON number or a string, by the rules
// of pydanticDatetime. Booleans, objects and arrays are refused.
func ignoredTimeField(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	switch c := raw[0]; {
	case c == '"':
		s, err := stringValue(raw)
		if err != nil || !pydanticDatetime(s) {
			return errValidation
		}
	case c == '-' || ('0' <= c && c <= '9'):
		if !pydanticNumber(string(raw)) {
			return errValidation
		}
	default:
		return errValidation
	}
	return nil
}

// The datetime rules below are pydantic v2's in lax mode (pydantic 2.13,
// pydantic-core 2.46, speedate 0.17): speedate's parser, pydantic-core's
// handling of numbers, and its fallback to a bare date. They were read
// from those sources and are checked against pydantic itself by the
// fixture testdata/since.json (made by testdata/gen_fixtures.py).
// pydantic accepts a date with no time since 2.6; older 2.x refuse it.

// pydanticDatetime reports whether pydantic v2 accepts s for a datetime:
//   - YYYY-MM-DD, then T, t, a space or _, then HH:MM, optionally :SS and
//     a fraction of any length after . or , (digits past 6 are dropped),
//     then nothing (a naive time), Z or z, or ±HH:MM or ±HHMM (under 24h;
//     U+2212 for minus too). Years 0001-9999, real calendar days, hours
//     up to 23, seconds up to 59.
//   - YYYY-MM-DD alone (midnight).
//   - A Unix timestamp in decimal, with an optional sign and fraction:
//     seconds, or milliseconds when its magnitude is over 2e10, between
//     0001-01-01 and 9999-12-31. Exponents need a fraction ("1.5e3", not
//     "1e3"), and an integer too long for int64 wraps as it does in
//     speedate; both quirks are kept, since matching is the point.
//
// Everything else ("", "yesterday", "now", surrounding spaces) is refused.
func pydanticDatetime(s string) bool {
	if year, ok := parseDatetime(s); ok {
		return year != 0 // Python has no year 0
	}
	n, stop, ok := speedateInt(s)
	switch {
	case ok:
		return timestampInRange(n, 0)
	case stop == '.':
		// speedate reads a float only when the integer stopped at a dot.
		// ParseFloat's grammar is Rust's for such text (no hex, no
		// underscores, no inf); out of range it returns ±Inf or 0 as Rust does.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return false
		}
		return floatStringInRange(f)
	}
	if len(s) == 10 {
		year, ok := parseDate(s)
		return ok && year != 0
	}
	return false
}

// parseDatetime is speedate's DateTime::parse_bytes_rfc3339; it returns the
// year so the caller can refuse year 0 as pydantic does.
func parseDatetime(s string) (year int, ok bool) {
	year, ok = parseDate(s)
	if !ok || len(s) < 16 || !strings.ContainsRune("Tt _", rune(s[10])) {
		return 0, false
	}
	hour, ok1 := digits2(s, 11)
	minute, ok2 := digits2(s, 14)
	if !ok1 || !ok2 || s[13] != ':' || hour > 23 || minute > 59 {
		return 0, false
	}
	pos := 16
	if pos < len(s) && s[pos] == ':' {
		sec, ok := digits2(s, pos+1)
		if !ok || sec > 59 {
			return 0, false
		}
		pos += 3
		if pos < len(s) && (s[pos] == '.' || s[pos] == ',') {
			pos++
			start := pos
			for pos < len(s) && '0' <= s[pos] && s[pos] <= '9' {
				pos++
			}
			if pos == start {
				return 0, false
			}
		}
	}
	if pos == len(s) {
		return year, true // no offset: a naive datetime
	}
	switch {
	case s[pos] == 'Z' || s[pos] == 'z':
		pos++
	case s[pos] == '+' || s[pos] == '-':
		pos++
		if pos, ok = tzOffset(s, pos); !ok {
			return 0, false
		}
	case strings.HasPrefix(s[pos:], "\u2212"):
		pos += len("\u2212")
		if pos, ok = tzOffset(s, pos); !ok {
			return 0, false
		}
	default:
		return 0, false
	}
	return year, pos == len(s)
}

// tzOffset reads HH:MM or HHMM at pos, under 24 hours, and returns the
// position after it.
func tzOffset(s string, pos int) (int, bool) {
	h, ok := digits2(s, pos)
	if !ok {
		return 0, false
	}
	pos += 2
	if pos < len(s) && s[pos] == ':' {
		pos++
	}
	m, ok := digits2(s, pos)
	if !ok || m > 59 || h*60+m >= 24*60 {
		return 0, false
	}
	return pos + 2, true
}

// parseDate reads YYYY-MM-DD at the start of s (speedate's
// Date::parse_bytes_partial): any four-digit year, 0000 included, and a
// day that exists in that month of the proleptic Gregorian calendar.
func parseDate(s string) (year int, ok bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return 0, false
	}
	y1, ok1 := digits2(s, 0)
	y2, ok2 := digits2(s, 2)
	month, ok3 := digits2(s, 5)
	day, ok4 := digits2(s, 8)
	if !ok1 || !ok2 || !ok3 || !ok4 || month < 1 || month > 12 || day < 1 {
		return 0, false
	}
	year = y1*100 + y2
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[month]
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		days = 29
	}
	return year, day <= days
}

// digits2 reads two ASCII digits at s[i:].
func digits2(s string, i int) (int, bool) {
	if i+2 > len(s) {
		return 0, false
	}
	a, b := s[i], s[i+1]
	if a < '0' || a > '9' || b < '0' || b > '9' {
		return 0, false
	}
	return int(a-'0')*10 + int(b-'0'), true
}

// speedateInt is speedate's integer reader: an optional sign and decimal
// digits, accumulated with wrapping int64 arithmetic and refused when the
// running value turns negative. On failure stop is the byte it stopped at
// (0 for an empty string).
func speedateInt(s string) (n int64, stop byte, ok bool) {
	neg := false
	if len(s) >= 2 && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, c, false
		}
		n = n*10 + int64(c-'0') // wraps, as Rust's wrapping_mul/add
		if n < 0 {
			return 0, c, false
		}
	}
	if neg {
		n = -n
	}
	return n, 0, true
}

// pydanticNumber reports whether pydantic accepts a JSON number (raw is a
// literal that encoding/json accepted) for a datetime. json.loads makes it
// an int unless it has a fraction or an exponent; an int beyond int64, or a
// float, takes pydantic-core's float path.
func pydanticNumber(raw string) bool {
	if !strings.ContainsAny(raw, ".eE") {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return false // beyond int64: far out of range as a float too
		}
		return timestampInRange(n, 0)
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return false
	}
	// pydantic-core float_as_datetime → speedate from_float_with_config.
	micros := math.Abs(f-math.Trunc(f)) * 1e6
	if math.Abs(f) > msWatershed {
		micros = math.Abs(f-math.Trunc(f)) * 1e3
	}
	return timestampInRange(saturateInt64(math.Floor(f)), saturateUint32(math.Round(micros)))
}

// floatStringInRange is speedate's DateTime::parse_bytes_with_config for a
// string that reads as a float.
func floatStringInRange(f float64) bool {
	if math.Abs(f) > msWatershed {
		f /= 1000
	}
	sec := saturateInt64(math.Floor(f))
	micros := saturateUint32(math.Round((f - float64(sec)) * 1e6))
	return timestampInRange(sec, micros)
}

const (
	// msWatershed: speedate reads a timestamp of larger magnitude as
	// milliseconds.
	msWatershed = 20_000_000_000
	unixYear1   = -62_135_596_800 // 0001-01-01T00:00:00Z, Python's datetime.min
	unixYear10k = 253_402_300_800 // 10000-01-01T00:00:00Z
)

// timestampInRange is speedate's DateTime::from_timestamp_with_config with
// the unit inferred, plus pydantic's refusal of year 0: whether ts (and
// micros more) lands in years 1-9999.
func timestampInRange(ts int64, micros uint32) bool {
	if ts == math.MinInt64 {
		return false // checked_abs fails
	}
	sec, extra := ts, int64(0)
	if ts > msWatershed || ts < -msWatershed {
		sec, extra = ts/1000, (ts%1000)*1000
		if extra < 0 {
			sec--
			extra += 1_000_000
		}
	}
	total := int64(micros) + extra
	if total > math.MaxUint32 {
		return false // checked_add on u32 fails
	}
	sec += total / 1_000_000
	return unixYear1 <= sec && sec < unixYear10k
}

// saturateInt64 and saturateUint32 convert as Rust's "as" does: clamped
// to the type's range, NaN to 0. (Go leaves out-of-range conversions
// undefined.)
func saturateInt64(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

func saturateUint32(f float64) uint32 {
	switch {
	case math.IsNaN(f) || f <= 0:
		return 0
	case f >= math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(f)
}
