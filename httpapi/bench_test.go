package httpapi

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload/ratelimit"
)

// benchEnv is newEnv with logs discarded and limits out of the way, so the
// benchmarks measure the handler path itself.
func benchEnv(b *testing.B) *env {
	e := newEnv(b, func(d *Deps) {
		d.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		unlimited := func(name string) Limits {
			return Limits{name, ratelimit.NewFixedWindow(1<<30, time.Minute, d.Clock), ratelimit.NewFixedWindow(1<<30, time.Minute, d.Clock)}
		}
		d.SessionLimits, d.AILimits, d.UsageLimits = unlimited("session"), unlimited("ai"), unlimited("usage")
	})
	return e
}

func serve(b *testing.B, e *env, method, path, body string, header map[string]string) {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, r)
	if w.Code != 200 {
		b.Fatalf("status %d: %s", w.Code, w.Body)
	}
}

func BenchmarkHealth(b *testing.B) {
	e := benchEnv(b)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, e, "GET", "/v1/health", "", nil)
	}
}

func BenchmarkCreateSession(b *testing.B) {
	e := benchEnv(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		serve(b, e, "POST", "/v1/sessions/anonymous", `{"install_id":"install-`+strconv.Itoa(i)+`","app_version":"1.0","platform":"ios"}`, nil)
	}
}

// BenchmarkGenerateBreakdown is the breakdown route with an instant fake
// provider: token check, consent, decoding, limits, counting, encoding.
func BenchmarkGenerateBreakdown(b *testing.B) {
	e := benchEnv(b)
	h := map[string]string{"Authorization": "Bearer " + e.token("install-bench"), OptInHeader: "true"}
	body := `{"input_text":"Clean the apartment, then do the laundry and call the landlord about the heating.","granularity":3,"context_hints":["tired"],"template_ids":[]}`
	b.ReportAllocs()
	for b.Loop() {
		serve(b, e, "POST", "/v1/ai/breakdown/generate", body, h)
	}
}

func BenchmarkReconcile(b *testing.B) {
	e := benchEnv(b)
	h := map[string]string{"Authorization": "Bearer " + e.token("install-bench")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		serve(b, e, "POST", "/v1/usage/reconcile", `{"install_id":"install-bench","feature":"breakdown","local_count":`+strconv.Itoa(i)+`}`, h)
	}
}
