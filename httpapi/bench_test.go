package httpapi

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/prometheus"
	"github.com/offload-app/offload/ratelimit"
)

// benchEnv is newEnv with logs discarded and limits out of the way, so the
// benchmarks measure the handler path itself.
func benchEnv(b *testing.B, opts ...envOption) *env {
	e := newEnv(b, append([]envOption{func(d *Deps) {
		d.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		unlimited := func(name string) Limits {
			return Limits{name, ratelimit.NewFixedWindow(1<<30, time.Minute, d.Clock), ratelimit.NewFixedWindow(1<<30, time.Minute, d.Clock)}
		}
		d.SessionLimits, d.AILimits, d.UsageLimits = unlimited("session"), unlimited("ai"), unlimited("usage")
	}}, opts...)...)
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

// BenchmarkMetricsCost is each route's handler path without metrics
// (Deps.Metrics nil) and with the Prometheus implementation, so the
// request-path cost of the metrics is the difference of the pairs.
func BenchmarkMetricsCost(b *testing.B) {
	routes := []struct {
		name, method, path string
		body               func(i int) string
		auth               bool
	}{
		{"health", "GET", "/v1/health", func(int) string { return "" }, false},
		{"generate", "POST", "/v1/ai/breakdown/generate", func(int) string {
			return `{"input_text":"Clean the apartment, then do the laundry and call the landlord about the heating.","granularity":3,"context_hints":["tired"],"template_ids":[]}`
		}, true},
		{"reconcile", "POST", "/v1/usage/reconcile", func(i int) string {
			return `{"install_id":"install-bench","feature":"breakdown","local_count":` + strconv.Itoa(i) + `}`
		}, true},
	}
	for _, rt := range routes {
		for _, m := range []struct {
			name string
			new  func() offload.Metrics
		}{{"nil", func() offload.Metrics { return nil }}, {"prometheus", func() offload.Metrics { return prometheus.New("bench") }}} {
			b.Run(rt.name+"/metrics="+m.name, func(b *testing.B) {
				e := benchEnv(b, func(d *Deps) { d.Metrics = m.new() })
				h := map[string]string{}
				if rt.auth {
					h["Authorization"] = "Bearer " + e.token("install-bench")
					h[OptInHeader] = "true"
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					serve(b, e, rt.method, rt.path, rt.body(i), h)
				}
			})
		}
	}
}
