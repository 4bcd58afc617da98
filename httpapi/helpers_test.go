package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/ratelimit"
)

type testResponseRecorder = httptest.ResponseRecorder

func newRequest(method, path, body string) *http.Request {
	return httptest.NewRequest(method, path, strings.NewReader(body))
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func discardLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func unlimitedLimits(c offload.Clock, name string) Limits {
	return Limits{name, ratelimit.NewFixedWindow(1<<30, time.Minute, c), ratelimit.NewFixedWindow(1<<30, time.Minute, c)}
}

func mustLimiter(c offload.Clock, n int) offload.Limiter {
	return ratelimit.NewFixedWindow(n, time.Minute, c)
}
