// Package prometheus is offload.Metrics on a private Prometheus registry
// (github.com/prometheus/client_golang), with the Go and process collectors,
// served by Handler on the metrics listener, never on the public API.
//
// Every label value comes from a fixed set chosen by the code: route
// patterns, methods (unknown ones are "OTHER"), statuses, contract codes,
// provider names and outcome classes, limiter names. None holds an install
// id, an IP, a token, a feature name, request content or provider output,
// so the number of series does not grow with traffic.
package prometheus

import (
	"net/http"
	"strconv"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/offload-app/offload"
)

var _ offload.Metrics = (*Metrics)(nil)

// Metrics is the Prometheus backend of offload.Metrics.
type Metrics struct {
	reg *prom.Registry

	requests       *prom.CounterVec
	duration       *prom.HistogramVec
	inFlight       prom.Gauge
	errors         *prom.CounterVec
	rateLimited    *prom.CounterVec
	admission      prom.Counter
	providerCalls  *prom.CounterVec
	providerTries  *prom.CounterVec
	providerTime   *prom.HistogramVec
	providerTokens *prom.CounterVec
	breakerOpen    *prom.GaugeVec
	commitTime     prom.Histogram
	commitRows     prom.Histogram
	lost           prom.Counter
	expired        prom.Counter
	erased         prom.Counter
	fallbacks      *prom.CounterVec
}

// New registers every metric of the service, the Go and process
// collectors, and offload_build_info{version}.
func New(version string) *Metrics {
	reg := prom.NewRegistry()
	f := func(c prom.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg}

	m.requests = prom.NewCounterVec(prom.CounterOpts{
		Name: "offload_http_requests_total",
		Help: "HTTP requests answered, by route pattern, method and status (499: the client went away).",
	}, []string{"route", "method", "status"})
	m.duration = prom.NewHistogramVec(prom.HistogramOpts{
		Name:    "offload_http_request_duration_seconds",
		Help:    "Time from receiving a request to its answer, by route pattern.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route"})
	m.inFlight = prom.NewGauge(prom.GaugeOpts{
		Name: "offload_http_requests_in_flight",
		Help: "HTTP requests being served.",
	})
	m.errors = prom.NewCounterVec(prom.CounterOpts{
		Name: "offload_http_error_responses_total",
		Help: "Error answers by contract error code (client_closed_request: never sent, the client left).",
	}, []string{"code"})
	m.rateLimited = prom.NewCounterVec(prom.CounterOpts{
		Name: "offload_rate_limit_rejections_total",
		Help: "Requests refused by a rate limiter, by limiter.",
	}, []string{"limiter"})
	m.admission = prom.NewCounter(prom.CounterOpts{
		Name: "offload_breakdown_admission_rejections_total",
		Help: "Breakdowns refused at once because OFFLOAD_AI_MAX_IN_FLIGHT were already running.",
	})
	m.providerCalls = prom.NewCounterVec(prom.CounterOpts{
		Name: "offload_provider_calls_total",
		Help: "Breakdown provider calls by provider and outcome class.",
	}, []string{"provider", "outcome"})
	m.providerTries = prom.NewCounterVec(prom.CounterOpts{
		Name: "offload_provider_attempts_total",
		Help: "Upstream attempts made by provider calls (retries included), by provider.",
	}, []string{"provider"})
	m.providerTime = prom.NewHistogramVec(prom.HistogramOpts{
		Name:    "offload_provider_call_duration_seconds",
		Help:    "Duration of one provider call, retries included, by provider.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2, 4, 8, 15, 30, 60},
	}, []string{"provider"})
	m.providerTokens = prom.NewCounterVec(prom.CounterOpts{
		Name: "offload_provider_tokens_total",
		Help: "Provider tokens reported by successful calls, by provider and direction (input, output).",
	}, []string{"provider", "direction"})
	m.breakerOpen = prom.NewGaugeVec(prom.GaugeOpts{
		Name: "offload_provider_breaker_open",
		Help: "1 while the provider's circuit breaker is open (the chain skips it).",
	}, []string{"provider"})
	m.commitTime = prom.NewHistogram(prom.HistogramOpts{
		Name:    "offload_usage_commit_duration_seconds",
		Help:    "Latency of one usage-store commit (durable).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	})
	m.commitRows = prom.NewHistogram(prom.HistogramOpts{
		Name:    "offload_usage_commit_rows",
		Help:    "Writes acknowledged by one usage-store commit (group commit batch size).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
	})
	m.lost = prom.NewCounter(prom.CounterOpts{
		Name: "offload_usage_increments_lost_total",
		Help: "Breakdown counts that could not be stored (the breakdown was answered).",
	})
	m.expired = prom.NewCounter(prom.CounterOpts{
		Name: "offload_usage_rows_expired_total",
		Help: "Usage rows deleted by retention (OFFLOAD_USAGE_RETENTION_DAYS).",
	})
	m.erased = prom.NewCounter(prom.CounterOpts{
		Name: "offload_usage_erase_requests_total",
		Help: "DELETE /v1/usage requests served.",
	})
	m.fallbacks = prom.NewCounterVec(prom.CounterOpts{
		Name: "offload_rate_limit_fallbacks_total",
		Help: "Shared (Redis) limiter checks answered in process because Redis failed, by limiter.",
	}, []string{"limiter"})

	for _, c := range []prom.Collector{m.requests, m.duration, m.inFlight, m.errors, m.rateLimited, m.admission,
		m.providerCalls, m.providerTries, m.providerTime, m.providerTokens, m.breakerOpen,
		m.commitTime, m.commitRows, m.lost, m.expired, m.erased, m.fallbacks} {
		f(c)
	}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build := prom.NewGaugeVec(prom.GaugeOpts{Name: "offload_build_info", Help: "Always 1; the version label is the build."}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	f(build)
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// GaugeFunc registers a gauge read at scrape time, one series per name in
// labels (e.g. rate-limiter keys held per limiter).
func (m *Metrics) GaugeFunc(name, help, label string, values map[string]func() float64) {
	for v, fn := range values {
		m.reg.MustRegister(prom.NewGaugeFunc(prom.GaugeOpts{Name: name, Help: help, ConstLabels: prom.Labels{label: v}}, fn))
	}
}

// statusText avoids an allocation per request for the common statuses.
var statusText = func() map[int]string {
	out := map[int]string{}
	for c := 100; c < 600; c++ {
		out[c] = strconv.Itoa(c)
	}
	return out
}()

func (m *Metrics) InFlight(delta int) { m.inFlight.Add(float64(delta)) }

func (m *Metrics) Request(route, method string, status int, code string, d time.Duration) {
	s, ok := statusText[status]
	if !ok {
		s = "other"
	}
	m.requests.WithLabelValues(route, method, s).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
	if code != "" {
		m.errors.WithLabelValues(code).Inc()
	}
}

func (m *Metrics) RateLimited(limiter string) { m.rateLimited.WithLabelValues(limiter).Inc() }
func (m *Metrics) AdmissionRejected()         { m.admission.Inc() }

func (m *Metrics) ProviderCall(provider, outcome string, attempts int, d time.Duration, u offload.TokenUsage) {
	m.providerCalls.WithLabelValues(provider, outcome).Inc()
	if attempts > 0 {
		m.providerTries.WithLabelValues(provider).Add(float64(attempts))
	}
	m.providerTime.WithLabelValues(provider).Observe(d.Seconds())
	if u.InputTokens > 0 {
		m.providerTokens.WithLabelValues(provider, "input").Add(float64(u.InputTokens))
	}
	if u.OutputTokens > 0 {
		m.providerTokens.WithLabelValues(provider, "output").Add(float64(u.OutputTokens))
	}
}

func (m *Metrics) BreakerOpen(provider string, open bool) {
	v := 0.0
	if open {
		v = 1
	}
	m.breakerOpen.WithLabelValues(provider).Set(v)
}

func (m *Metrics) UsageCommit(rows int, d time.Duration) {
	m.commitRows.Observe(float64(rows))
	m.commitTime.Observe(d.Seconds())
}

func (m *Metrics) UsageIncrementLost()            { m.lost.Inc() }
func (m *Metrics) UsageExpired(n int)             { m.expired.Add(float64(n)) }
func (m *Metrics) UsageErased()                   { m.erased.Inc() }
func (m *Metrics) LimiterFallback(limiter string) { m.fallbacks.WithLabelValues(limiter).Inc() }
