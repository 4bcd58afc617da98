package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/offload-app/offload"
)

// Bounds on a breakdown the client accepts. The contract bounds titles; the
// depth and count bounds only keep a hostile server from making the client
// (and the CLI's tree printer) do unbounded work.
const (
	maxTitleChars    = 280
	maxStepDepth     = 16
	maxStepCount     = 10000
	maxErrorMessage  = 300
	maxRequestIDLen  = 128
	maxErrorCodeLen  = 64
	maxTokenLen      = 8192
	maxIdentifierLen = 256
)

// Reasons for an InvalidResponseError. They never quote the body.
const (
	errMalformedJSON   = constError("body is not the expected JSON")
	errTrailingData    = constError("data after the JSON value")
	errMissingStatus   = constError("missing status")
	errMissingToken    = constError("missing or malformed session_token")
	errMissingExpiry   = constError("missing or malformed expires_at")
	errNoSteps         = constError("missing or empty steps")
	errBadTitle        = constError("step title empty or longer than 280 characters")
	errTooDeep         = constError("steps nested too deeply")
	errTooMany         = constError("too many steps")
	errNegative        = constError("negative number")
	errMissingCount    = constError("missing server_count or effective_remaining")
	errMissingRecTime  = constError("missing or malformed reconciled_at")
	errBadString       = constError("string field too long or not printable")
	errMissingDeleted  = constError("missing deleted")
	errMissingErasedAt = constError("missing or malformed erased_at")
)

// decodeJSON decodes exactly one JSON value into v. Decoder messages are
// dropped because they can quote the body.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" && len(te.Field) <= maxIdentifierLen {
			return constError("field " + te.Field + " has the wrong type")
		}
		return errMalformedJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailingData
	}
	return nil
}

func decodeHealth(body []byte) (Health, error) {
	var h Health
	if err := decodeJSON(body, &h); err != nil {
		return Health{}, err
	}
	if h.Status == "" {
		return Health{}, errMissingStatus
	}
	for _, s := range []string{h.Status, h.Service, h.Version, h.Environment} {
		if !plainText(s, maxIdentifierLen) {
			return Health{}, errBadString
		}
	}
	return h, nil
}

func decodeSession(body []byte) (Session, error) {
	var w struct {
		SessionToken string `json:"session_token"`
		ExpiresAt    string `json:"expires_at"`
	}
	if err := decodeJSON(body, &w); err != nil {
		return Session{}, err
	}
	// The token goes into a header: it must be non-empty visible ASCII.
	if w.SessionToken == "" || !printable(w.SessionToken, maxTokenLen) || strings.ContainsRune(w.SessionToken, ' ') {
		return Session{}, errMissingToken
	}
	exp, err := time.Parse(time.RFC3339, w.ExpiresAt)
	if err != nil {
		return Session{}, errMissingExpiry
	}
	return Session{Token: Token(w.SessionToken), ExpiresAt: exp.UTC()}, nil
}

func decodeBreakdown(body []byte) (CloudBreakdown, error) {
	var w struct {
		Steps     []offload.Step `json:"steps"`
		Provider  string         `json:"provider"`
		LatencyMS int64          `json:"latency_ms"`
		Usage     struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		} `json:"usage"`
	}
	if err := decodeJSON(body, &w); err != nil {
		return CloudBreakdown{}, err
	}
	if len(w.Steps) == 0 {
		return CloudBreakdown{}, errNoSteps
	}
	count := 0
	if err := checkSteps(w.Steps, 1, &count); err != nil {
		return CloudBreakdown{}, err
	}
	if w.LatencyMS < 0 || w.Usage.InputTokens < 0 || w.Usage.OutputTokens < 0 {
		return CloudBreakdown{}, errNegative
	}
	if !plainText(w.Provider, maxIdentifierLen) {
		return CloudBreakdown{}, errBadString
	}
	return CloudBreakdown{
		Steps:    w.Steps,
		Provider: w.Provider,
		Latency:  time.Duration(min(w.LatencyMS, int64(24*time.Hour/time.Millisecond))) * time.Millisecond,
		Usage:    offload.TokenUsage{InputTokens: w.Usage.InputTokens, OutputTokens: w.Usage.OutputTokens},
	}, nil
}

// checkSteps validates titles and bounds, and turns absent or null substeps
// into empty slices so a Step always encodes as the contract says.
func checkSteps(steps []offload.Step, depth int, count *int) error {
	if depth > maxStepDepth {
		return errTooDeep
	}
	for i := range steps {
		*count++
		if *count > maxStepCount {
			return errTooMany
		}
		n := utf8.RuneCountInString(steps[i].Title)
		if strings.TrimSpace(steps[i].Title) == "" || n > maxTitleChars {
			return errBadTitle
		}
		if steps[i].Substeps == nil {
			steps[i].Substeps = []offload.Step{}
			continue
		}
		if err := checkSteps(steps[i].Substeps, depth+1, count); err != nil {
			return err
		}
	}
	return nil
}

func decodeReconciliation(body []byte) (Reconciliation, error) {
	var w struct {
		ServerCount        *int64 `json:"server_count"`
		EffectiveRemaining *int64 `json:"effective_remaining"`
		ReconciledAt       string `json:"reconciled_at"`
	}
	if err := decodeJSON(body, &w); err != nil {
		return Reconciliation{}, err
	}
	if w.ServerCount == nil || w.EffectiveRemaining == nil {
		return Reconciliation{}, errMissingCount
	}
	if *w.ServerCount < 0 || *w.EffectiveRemaining < 0 {
		return Reconciliation{}, errNegative
	}
	at, err := time.Parse(time.RFC3339, w.ReconciledAt)
	if err != nil {
		return Reconciliation{}, errMissingRecTime
	}
	return Reconciliation{
		ServerCount:        *w.ServerCount,
		EffectiveRemaining: *w.EffectiveRemaining,
		ReconciledAt:       at.UTC(),
	}, nil
}

func decodeErasure(body []byte) (Erasure, error) {
	var w struct {
		Deleted  *int64 `json:"deleted"`
		ErasedAt string `json:"erased_at"`
	}
	if err := decodeJSON(body, &w); err != nil {
		return Erasure{}, err
	}
	if w.Deleted == nil {
		return Erasure{}, errMissingDeleted
	}
	if *w.Deleted < 0 {
		return Erasure{}, errNegative
	}
	at, err := time.Parse(time.RFC3339, w.ErasedAt)
	if err != nil {
		return Erasure{}, errMissingErasedAt
	}
	return Erasure{Deleted: *w.Deleted, ErasedAt: at.UTC()}, nil
}

// decodeAPIError reads the contract's error body. Anything else (a proxy's
// page, a truncated body) still yields an *APIError with the status, an
// empty code and the status text, so callers can decide by status.
func decodeAPIError(status int, body []byte) *APIError {
	ae := &APIError{Status: status, Message: http.StatusText(status)}
	var w struct {
		Error *struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if len(body) > MaxResponseBytes || decodeJSON(body, &w) != nil || w.Error == nil || !validCode(w.Error.Code) {
		return ae
	}
	ae.Code = w.Error.Code
	if m := cleanMessage(w.Error.Message); m != "" {
		ae.Message = m
	}
	if validRequestID(w.Error.RequestID) {
		ae.RequestID = w.Error.RequestID
	}
	return ae
}

// validCode accepts the contract's code shape: lower-case words joined by "_".
func validCode(code string) bool {
	if code == "" || len(code) > maxErrorCodeLen {
		return false
	}
	for _, r := range code {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// validRequestID accepts what the server reuses: 1–128 printable ASCII.
func validRequestID(id string) bool {
	return id != "" && printable(id, maxRequestIDLen)
}

// printable reports whether s is at most max bytes of printable ASCII
// (the empty string included).
func printable(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// plainText reports whether s is at most max bytes of UTF-8 without control
// characters, fit to print on one line.
func plainText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// cleanMessage keeps a server message fit for one terminal line: control
// characters become spaces and it is cut at maxErrorMessage characters.
func cleanMessage(m string) string {
	var b strings.Builder
	n := 0
	for _, r := range m {
		if n == maxErrorMessage {
			b.WriteString("…")
			break
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}
