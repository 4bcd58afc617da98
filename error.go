package offload

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Error codes of the wire contract. The HTTP status of each is in one table
// in package httpapi.
const (
	CodeUnauthorized            = "unauthorized"
	CodeInvalidToken            = "invalid_token"
	CodeExpiredToken            = "expired_token"
	CodeConsentRequired         = "consent_required"
	CodeInstallIDMismatch       = "install_id_mismatch"
	CodeNotFound                = "not_found"
	CodeMethodNotAllowed        = "method_not_allowed"
	CodeRequestTooLarge         = "request_too_large"
	CodeValidation              = "validation_error"
	CodeSessionRateLimited      = "session_rate_limited"
	CodeInferenceRateLimited    = "inference_rate_limited"
	CodeUsageRateLimited        = "usage_rate_limited"
	CodeQuotaExceeded           = "quota_exceeded"
	CodeProviderRequestFailed   = "provider_request_failed"
	CodeProviderInvalidResponse = "provider_invalid_response"
	CodeProviderUnavailable     = "provider_unavailable"
	CodeProviderTimeout         = "provider_timeout"
	CodeStorageUnavailable      = "storage_unavailable"
	CodeInternal                = "internal_error"
	// CodeClientClosed is never sent (nobody is there to read it): it is the
	// code logged and counted for a request whose client went away, with
	// status 499 as nginx does.
	CodeClientClosed = "client_closed_request"
)

// ErrFeatureLimit is a store's answer to a reconcile that would create one
// feature more than an install may have.
var ErrFeatureLimit = &Error{Code: CodeValidation, Message: "Too many distinct usage features for this install"}

// ErrQuotaExceeded is a store's answer to a Reserve at or over the quota. The
// quota has no window to wait out; a long Retry-After tells the app not to
// retry soon.
var ErrQuotaExceeded = &Error{Code: CodeQuotaExceeded, RetryAfter: time.Hour}

// ErrShuttingDown is the cause with which the server cancels the requests
// still running when its drain time is up: they were ended by us, not by
// their clients.
var ErrShuttingDown = errors.New("server shutting down")

// ErrClientClosed marks a request whose client went away before the answer.
var ErrClientClosed = &Error{Code: CodeClientClosed}

// Error is an error with a contract code. Message is the fixed public
// message; it must never contain request content, tokens or provider output.
type Error struct {
	Code       string
	Message    string        // public; empty means the code's default message
	RetryAfter time.Duration // for 429s: sent as Retry-After
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Code + ": " + e.Message
	}
	return e.Code
}

// Errorf returns an *Error with code and a formatted public message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ProviderFailure classifies a provider error.
type ProviderFailure int

const (
	ProviderRequestFailed   ProviderFailure = iota // 4xx, or 429/5xx/transport after retries
	ProviderTimeout                                // every attempt timed out
	ProviderUnavailable                            // not configured (no key)
	ProviderInvalidResponse                        // answer not a valid plan
)

// ProviderError is the typed error every Provider returns on failure.
// Class is a short, content-free label for logs ("status_429", "timeout",
// "transport", "parse"); it never holds provider bodies or user content.
type ProviderError struct {
	Failure  ProviderFailure
	Class    string
	Attempts int
	// Status is the upstream HTTP status of the last attempt, 0 when there
	// was none (timeout, transport error, no key, unusable answer).
	Status int
	// Provider names the provider that failed ("openai"); set by a chain.
	Provider string
}

// Refused reports whether the upstream refused the request itself (a 4xx
// other than 429): another attempt, or another provider, would be sent the
// same content for the same answer.
func (e *ProviderError) Refused() bool {
	return e.Failure == ProviderRequestFailed && e.Status >= 400 && e.Status < 500 && e.Status != 429
}

func (e *ProviderError) Error() string {
	return fmt.Sprintf("provider: %s (%s after %d attempt(s))", ErrorCode(e), e.Class, e.Attempts)
}

// ErrStorage marks a usage-store failure (read-only file, full disk, corrupt
// file). Stores wrap their errors with it. The HTTP layer logs the text of
// such errors, so a store must build it from fixed words and codes only:
// never a key, a value or a driver message that may quote one (see
// package sqlite's errors.go).
var ErrStorage = errors.New("usage storage unavailable")

// StorageError is a usage-store failure. Stores build its text from the
// operation and fixed words for the kind of failure (a result code, an
// SQLSTATE class), never from the driver's message or the arguments, which
// may quote an install id or a feature: it is content-free by construction
// and safe to log. The driver error is kept as a cause for errors.As.
type StorageError struct {
	Op     string
	Reason string
	Cause  error
}

func (e *StorageError) Error() string { return ErrStorage.Error() + ": " + e.Op + ": " + e.Reason }

func (e *StorageError) Unwrap() []error { return []error{ErrStorage, e.Cause} }

// ErrorCode maps any error to its contract code: *Error by its code, provider
// failures by their kind, storage failures to storage_unavailable, anything
// else to internal_error. It is the one place errors become codes.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var pe *ProviderError
	if errors.As(err, &pe) {
		switch pe.Failure {
		case ProviderTimeout:
			return CodeProviderTimeout
		case ProviderUnavailable:
			return CodeProviderUnavailable
		case ProviderInvalidResponse:
			return CodeProviderInvalidResponse
		default:
			return CodeProviderRequestFailed
		}
	}
	if errors.Is(err, ErrStorage) {
		return CodeStorageUnavailable
	}
	return CodeInternal
}

// ProviderCanceled is a provider's error for a call whose context ended: a
// *ProviderError for the code mapping (provider_timeout when the deadline
// passed, class "deadline") that also unwraps to the context's error, so
// callers can tell the client leaving from the provider failing.
func ProviderCanceled(ctx context.Context, provider, class string, attempts int) error {
	cause := ctx.Err()
	if cause == nil {
		cause = context.Canceled
	}
	failure := ProviderRequestFailed
	if errors.Is(cause, context.DeadlineExceeded) {
		class, failure = "deadline", ProviderTimeout
	}
	return &canceledError{
		pe:    &ProviderError{Failure: failure, Class: class, Attempts: attempts, Provider: provider},
		cause: cause,
	}
}

type canceledError struct {
	pe    *ProviderError
	cause error
}

func (e *canceledError) Error() string   { return e.pe.Error() }
func (e *canceledError) Unwrap() []error { return []error{e.pe, e.cause} }

// TokenCount keeps a hostile usage figure from a provider from going
// negative or wrapping.
func TokenCount(n int64) int {
	if n < 0 {
		return 0
	}
	if n > 1<<31-1 {
		return 1<<31 - 1
	}
	return int(n)
}
