package client

import (
	"fmt"
	"strings"
	"time"

	"github.com/offload-app/offload"
)

// constError is an error that can be a constant, so sentinels need no globals.
type constError string

func (e constError) Error() string { return string(e) }

// ErrConsentRequired is returned, before any network I/O, when cloud work is
// asked for while cloud consent is off. errors.Is also matches an *APIError
// whose code is consent_required, so callers handle both refusals alike.
const ErrConsentRequired = constError("offload client: cloud AI consent is off")

// APIError is an answer with a non-2xx status. Code, Message and RequestID
// come from the contract's error body; when the body is not a contract error
// (a proxy's HTML page, say) Code is empty and Message is the status text.
type APIError struct {
	Status     int
	Code       string
	Message    string
	RequestID  string
	RetryAfter time.Duration // from Retry-After, on 429s
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "offload api: %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request id " + e.RequestID + ")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrConsentRequired) true for the server's refusal too.
func (e *APIError) Is(target error) bool {
	return target == ErrConsentRequired && e.Code == offload.CodeConsentRequired
}

// Unauthorized reports a 401, which the client answers with one refresh.
func (e *APIError) Unauthorized() bool { return e.Status == 401 }

// TransportError is a request that got no HTTP answer: the server is down or
// unreachable, the connection broke, or ctx ended. Err is the net/http error.
type TransportError struct {
	Op        string // "GET /v1/health", never with user content
	RequestID string // the X-Request-ID the client sent
	Err       error
}

func (e *TransportError) Error() string {
	return "offload api: " + e.Op + ": " + e.Err.Error()
}

func (e *TransportError) Unwrap() error { return e.Err }

// InvalidResponseError is a 2xx answer whose body is not what the contract
// promises (not JSON, too large, a field missing or out of range). Reason is
// content-free; the body is never kept.
type InvalidResponseError struct {
	Op        string
	Status    int
	RequestID string
	Reason    string
}

func (e *InvalidResponseError) Error() string {
	s := fmt.Sprintf("offload api: %s: invalid response (%d): %s", e.Op, e.Status, e.Reason)
	if e.RequestID != "" {
		s += " (request id " + e.RequestID + ")"
	}
	return s
}

// CorruptStateError is a client state file that exists but cannot be read
// back: it is reported, never silently reset, so no consent or count is lost
// without the user knowing. Reason is content-free: no token bytes, and no
// decoder message, which could quote them.
type CorruptStateError struct {
	Path   string
	Reason string
}

func (e *CorruptStateError) Error() string {
	return "offload client: corrupt state file " + e.Path + ": " + e.Reason +
		" (fix or remove the file)"
}
