package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/offload-app/offload"
)

// status is the one table from contract code to HTTP status and default
// public message. Every error response is built from it.
var status = map[string]struct {
	code    int
	message string
}{
	offload.CodeUnauthorized:            {http.StatusUnauthorized, "Missing bearer token"},
	offload.CodeInvalidToken:            {http.StatusUnauthorized, "Invalid session token"},
	offload.CodeExpiredToken:            {http.StatusUnauthorized, "Session token expired"},
	offload.CodeConsentRequired:         {http.StatusForbidden, "Cloud AI processing requires explicit opt-in"},
	offload.CodeInstallIDMismatch:       {http.StatusForbidden, "Session install_id does not match request install_id"},
	offload.CodeNotFound:                {http.StatusNotFound, "Not found"},
	offload.CodeMethodNotAllowed:        {http.StatusMethodNotAllowed, "Method not allowed"},
	offload.CodeRequestTooLarge:         {http.StatusRequestEntityTooLarge, "Request body too large"},
	offload.CodeValidation:              {http.StatusUnprocessableEntity, "Request validation failed"},
	offload.CodeSessionRateLimited:      {http.StatusTooManyRequests, "Too many session requests; retry later"},
	offload.CodeInferenceRateLimited:    {http.StatusTooManyRequests, "Too many AI requests; retry later"},
	offload.CodeUsageRateLimited:        {http.StatusTooManyRequests, "Too many usage requests; retry later"},
	offload.CodeQuotaExceeded:           {http.StatusTooManyRequests, "AI action limit reached"},
	offload.CodeProviderRequestFailed:   {http.StatusBadGateway, "Provider request failed"},
	offload.CodeProviderInvalidResponse: {http.StatusBadGateway, "Provider returned invalid response"},
	offload.CodeProviderUnavailable:     {http.StatusServiceUnavailable, "Provider unavailable"},
	offload.CodeProviderTimeout:         {http.StatusGatewayTimeout, "Provider timeout"},
	offload.CodeStorageUnavailable:      {http.StatusServiceUnavailable, "Usage storage unavailable"},
	offload.CodeInternal:                {http.StatusInternalServerError, "Internal server error"},
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// writeError writes err as the contract's error envelope. Only fixed
// messages reach the client: an *offload.Error's Message is written only
// because every Message in this module is a constant or names a limit.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	if clientClosed(r, err) {
		// Nobody reads this answer: log and count it as 499, never as a
		// server error, and write nothing.
		if s := state(r.Context()); s != nil {
			s.clientGone = true
			s.code = offload.CodeClientClosed
		}
		return
	}
	code := offload.ErrorCode(err)
	entry, ok := status[code]
	if !ok {
		code, entry = offload.CodeInternal, status[offload.CodeInternal]
	}
	msg := entry.message
	var e *offload.Error
	if errors.As(err, &e) {
		if e.Message != "" {
			msg = e.Message
		}
		if e.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(e.RetryAfter)))
		}
	}
	switch entry.code {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", "Bearer")
	case http.StatusTooManyRequests:
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "1")
		}
	}
	setState(r, code, err)
	writeJSON(w, entry.code, errorBody{errorDetail{Code: code, Message: msg, RequestID: requestID(r.Context())}})
}

// clientClosed reports whether err is the client going away: the request's
// context ended (not by our shutdown) and err says so.
func clientClosed(r *http.Request, err error) bool {
	ctx := r.Context()
	if ctx.Err() == nil || errors.Is(context.Cause(ctx), offload.ErrShuttingDown) {
		return false
	}
	return errors.Is(err, offload.ErrClientClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// retryAfterSeconds rounds up so a client that waits exactly that long is
// past the window.
func retryAfterSeconds(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	return max(s, 1)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types reach here; a failure is a bug.
		panic(fmt.Sprintf("httpapi: encoding %T: %v", v, err))
	}
	writeRaw(w, code, append(b, '\n'))
}

// writeRaw writes an encoded JSON body (newline-terminated by the caller).
func writeRaw(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}
