package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/offload-app/offload"
)

// Error messages of this package carry no "offload client:" prefix: a
// caller that wraps them (the CLI prints "offload: …") adds its own once.

// constError is an error that can be a constant, so sentinels need no globals.
type constError string

func (e constError) Error() string { return string(e) }

// ErrConsentRequired is returned, before any network I/O, when cloud work is
// asked for while cloud consent is off. errors.Is also matches an *APIError
// whose code is consent_required, so callers handle both refusals alike.
const ErrConsentRequired = constError("cloud AI consent is off")

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

// Error reads "server answered 429 inference_rate_limited: Too many AI
// requests; retry in 56s (request id …)". A server message's own "retry
// later" gives way to the Retry-After figure, so the hint is not said twice.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server answered %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	msg := e.Message
	if e.RetryAfter > 0 {
		msg = trimRetryLater(msg)
	}
	if msg != "" {
		b.WriteString(": " + msg)
	}
	if e.RetryAfter > 0 {
		if msg != "" {
			b.WriteString(";")
		}
		b.WriteString(" retry in " + e.RetryAfter.String())
	}
	if e.RequestID != "" {
		b.WriteString(" (request id " + e.RequestID + ")")
	}
	return b.String()
}

// trimRetryLater drops a trailing "retry later" (and the separator before
// it) from a server message.
func trimRetryLater(msg string) string {
	const hint = "retry later"
	if len(msg) < len(hint) || !strings.EqualFold(msg[len(msg)-len(hint):], hint) {
		return msg
	}
	return strings.TrimRight(msg[:len(msg)-len(hint)], " ;,.-")
}

// Is makes errors.Is(err, ErrConsentRequired) true for the server's refusal too.
func (e *APIError) Is(target error) bool {
	return target == ErrConsentRequired && e.Code == offload.CodeConsentRequired
}

// Unauthorized reports a 401, which the client answers with one refresh.
func (e *APIError) Unauthorized() bool { return e.Status == 401 }

// TransportError is a request that got no HTTP answer: the server is down or
// unreachable, the connection broke, no answer came in time, or ctx ended.
// Err is the net/http error, or the cause of the deadline that ended it.
type TransportError struct {
	Op        string // "GET /v1/health", never with user content
	RequestID string // the X-Request-ID the client sent
	Err       error
}

func (e *TransportError) Error() string {
	var cte *CloudTimeoutError
	if errors.As(e.Err, &cte) {
		return "no answer from the server within " + cte.After.String() + " (" + e.Op + ")"
	}
	return "cannot reach the server (" + e.Op + "): " + e.Err.Error()
}

func (e *TransportError) Unwrap() error { return e.Err }

// CloudTimeoutError is the cause of a cloud breakdown that got no answer
// within the client's cloud timeout. It matches context.DeadlineExceeded.
type CloudTimeoutError struct {
	After time.Duration
}

func (e *CloudTimeoutError) Error() string {
	return "no answer within " + e.After.String()
}

// Timeout reports true, like a net.Error that timed out.
func (e *CloudTimeoutError) Timeout() bool { return true }

// Is makes errors.Is(err, context.DeadlineExceeded) true.
func (e *CloudTimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

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
	s := fmt.Sprintf("invalid response from the server (%s, %d): %s", e.Op, e.Status, e.Reason)
	if e.RequestID != "" {
		s += " (request id " + e.RequestID + ")"
	}
	return s
}

// CorruptStateError is a client state file that exists but cannot be read
// back. Stores report it and never reset the file themselves; the Client
// and the Service decide what to do (a session is a cache and is replaced,
// consent is treated as off) and say so in a Warning. Reason is
// content-free: no token bytes, and no decoder message, which could quote them.
type CorruptStateError struct {
	Path   string
	Reason string
}

func (e *CorruptStateError) Error() string {
	return "state file " + e.Path + " is corrupt: " + e.Reason
}

// Warning is a problem with local state that a call worked around: it went
// on without that state instead of failing, and Effect says how.
type Warning struct {
	Err    error  // a *CorruptStateError or a state I/O error
	Effect string // what was done instead, e.g. EffectNotCounted
}

// What a Warning's call did instead.
const (
	EffectSessionReplaced = "a new session is issued"
	EffectSessionInMemory = "the session is kept for this run only"
	EffectConsentOff      = "cloud AI is treated as off"
	EffectNotCounted      = "this breakdown was not counted"
	EffectTemporaryID     = "this run uses a temporary install id and saves nothing"
)

func (w Warning) Error() string { return w.Err.Error() + "; " + w.Effect }

func (w Warning) Unwrap() error { return w.Err }
