package prometheus_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/prometheus"
)

func scrape(t *testing.T, m *prometheus.Metrics) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 {
		t.Fatalf("scrape: %d", w.Code)
	}
	return w.Body.String()
}

func TestEveryMetricIsExposedAndNamedByTheRules(t *testing.T) {
	m := prometheus.New("1.2.3")
	m.InFlight(1)
	m.Request("POST /v1/usage/reconcile", "POST", 200, "", time.Millisecond)
	m.Request("unmatched", "OTHER", 404, offload.CodeNotFound, time.Millisecond)
	m.RateLimited("usage_ip")
	m.AdmissionRejected()
	m.ProviderCall("openai", "ok", 2, time.Second, offload.TokenUsage{InputTokens: 10, OutputTokens: 5})
	m.BreakerOpen("openai", true)
	m.UsageCommit(8, time.Millisecond)
	m.UsageIncrementLost()
	m.UsageExpired(3)
	m.UsageErased()
	m.LimiterFallback("ai_ip")
	m.GaugeFunc("offload_rate_limiter_keys", "Keys held.", "limiter", map[string]func() float64{"ai_ip": func() float64 { return 4 }})
	body := scrape(t, m)
	for _, want := range []string{
		`offload_http_requests_total{method="POST",route="POST /v1/usage/reconcile",status="200"} 1`,
		`offload_http_request_duration_seconds_bucket{route="unmatched",le="0.001"} 1`,
		`offload_http_requests_in_flight 1`,
		`offload_http_error_responses_total{code="not_found"} 1`,
		`offload_rate_limit_rejections_total{limiter="usage_ip"} 1`,
		`offload_breakdown_admission_rejections_total 1`,
		`offload_provider_calls_total{outcome="ok",provider="openai"} 1`,
		`offload_provider_attempts_total{provider="openai"} 2`,
		`offload_provider_call_duration_seconds_count{provider="openai"} 1`,
		`offload_provider_tokens_total{direction="input",provider="openai"} 10`,
		`offload_provider_tokens_total{direction="output",provider="openai"} 5`,
		`offload_provider_breaker_open{provider="openai"} 1`,
		`offload_usage_commit_duration_seconds_count 1`,
		`offload_usage_commit_rows_sum 8`,
		`offload_usage_increments_lost_total 1`,
		`offload_usage_rows_expired_total 3`,
		`offload_usage_erase_requests_total 1`,
		`offload_rate_limit_fallbacks_total{limiter="ai_ip"} 1`,
		`offload_rate_limiter_keys{limiter="ai_ip"} 4`,
		`offload_build_info{version="1.2.3"} 1`,
		`go_goroutines `,
		`process_cpu_seconds_total `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "offload_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}
