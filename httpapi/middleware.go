package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/google/uuid"

	"github.com/offload-app/offload"
)

// reqState is per-request metadata shared between the outer middleware and
// the handlers: the request id, and the error code a handler answered with,
// so the access log line can carry it. It never holds content.
type reqState struct {
	id         string
	code       string
	detail     []slog.Attr // content-free failure details: class, attempts
	clientGone bool        // the client left before an answer was written
}

type stateKey struct{}

func state(ctx context.Context) *reqState {
	s, _ := ctx.Value(stateKey{}).(*reqState)
	return s
}

func requestID(ctx context.Context) string {
	if s := state(ctx); s != nil {
		return s.id
	}
	return ""
}

// setState records the error a request failed with for its log line. Only
// classes, counts and our own content-free error strings are kept.
func setState(r *http.Request, code string, err error) {
	s := state(r.Context())
	if s == nil {
		return
	}
	s.code = code
	var pe *offload.ProviderError
	switch {
	case errors.As(err, &pe):
		s.detail = append(s.detail, slog.String("error_class", pe.Class), slog.Int("attempts", pe.Attempts))
	case errors.Is(err, offload.ErrStorage):
		// Store errors are content-free by contract (offload.StorageError).
		s.detail = append(s.detail, slog.String("error", err.Error()))
	case code == offload.CodeInternal:
		s.detail = append(s.detail, slog.String("error_type", fmt.Sprintf("%T", err)))
	}
}

// validRequestID reports whether a client-sent X-Request-ID may be reused:
// at most 128 printable ASCII characters, so it can't inject into logs.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// statusRecorder captures the status and size of a response for the log,
// and whether writing it failed (the client went away).
type statusRecorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	writeErr error
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	if err != nil && w.writeErr == nil {
		w.writeErr = err
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// StatusClientClosed is logged (never sent) for a request whose answer did
// not reach the client, as nginx logs 499.
const StatusClientClosed = 499

// methods bounds the method label of metrics: anything else is "OTHER".
var methods = map[string]string{
	http.MethodGet: http.MethodGet, http.MethodHead: http.MethodHead, http.MethodPost: http.MethodPost,
	http.MethodPut: http.MethodPut, http.MethodPatch: http.MethodPatch, http.MethodDelete: http.MethodDelete,
	http.MethodOptions: http.MethodOptions, http.MethodConnect: http.MethodConnect, http.MethodTrace: http.MethodTrace,
}

// instrument is the outermost middleware: it assigns the request id, sets the
// X-Request-ID header, recovers panics into a 500 envelope, and logs and
// counts one line per request with metadata only (never bodies, header
// values, tokens or install ids). The status logged is the one the client
// got: an answer that could not be delivered is logged as 499.
func instrument(logger *slog.Logger, m offload.Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.InFlight(1)
		st := &reqState{id: r.Header.Get("X-Request-ID")}
		if !validRequestID(st.id) {
			st.id = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", st.id)
		rec := &statusRecorder{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))

		defer func() {
			m.InFlight(-1)
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				// The panic value may hold request content: log its type and
				// the stack (addresses only), never the value.
				logger.LogAttrs(r.Context(), slog.LevelError, "panic_recovered",
					slog.String("request_id", st.id),
					slog.String("panic_type", fmt.Sprintf("%T", v)),
					slog.String("stack", string(debug.Stack())))
				if rec.status == 0 {
					writeError(rec, r, errInternal)
				}
			}
			if rec.status == 0 && !st.clientGone {
				rec.status = http.StatusOK // net/http's implicit answer
			}
			// Push the answer out now, so a client that went away shows
			// as a failed write here instead of a 200 in the log.
			if rec.writeErr == nil && !st.clientGone {
				if err := http.NewResponseController(rec.ResponseWriter).Flush(); err != nil {
					rec.writeErr = err
				}
			}
			status, code := rec.status, st.code
			if st.clientGone || rec.writeErr != nil {
				status, code = StatusClientClosed, offload.CodeClientClosed
			}
			route := r.Pattern // set in place by the ServeMux
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			method, ok := methods[r.Method]
			if !ok {
				method = "OTHER"
			}
			m.Request(route, method, status, code, elapsed)
			attrs := []slog.Attr{
				slog.String("request_id", st.id),
				slog.String("method", method),
				slog.String("route", route),
				slog.Int("status", status),
				slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
				slog.Int64("bytes", rec.bytes),
			}
			level := slog.LevelInfo
			if code != "" {
				attrs = append(attrs, slog.String("code", code))
				attrs = append(attrs, st.detail...)
			}
			if status >= 500 {
				level = slog.LevelError
			}
			logger.LogAttrs(r.Context(), level, "request", attrs...)
		}()
		next.ServeHTTP(rec, r)
	})
}
