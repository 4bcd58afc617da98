package offload

import "time"

// Metrics receives content-free observations from every layer. Every string
// argument is one of a fixed set chosen by the code (a route pattern, a
// contract code, a provider name, a limiter name), never client input, so
// the series a backend keeps cannot grow with traffic.
type Metrics interface {
	// InFlight moves the gauge of requests being served by delta.
	InFlight(delta int)
	// Request is one answered (or abandoned) request.
	Request(route, method string, status int, code string, d time.Duration)
	// RateLimited is one rejection by the named limiter ("session_ip", …).
	RateLimited(limiter string)
	// AdmissionRejected is one breakdown refused because too many were in flight.
	AdmissionRejected()
	// ProviderCall is one call to a provider ("openai") that ended with the
	// outcome ("ok", "timeout", "status_429", "skipped_open_breaker", …).
	ProviderCall(provider, outcome string, attempts int, d time.Duration, usage TokenUsage)
	// BreakerOpen sets whether the provider's circuit breaker is open.
	BreakerOpen(provider string, open bool)
	// UsageCommit is one usage-store commit of rows writes that took d.
	UsageCommit(rows int, d time.Duration)
	// UsageIncrementLost is one breakdown count that could not be stored.
	UsageIncrementLost()
	// UsageExpired is n rows deleted by retention.
	UsageExpired(n int)
	// UsageErased is one erase request served.
	UsageErased()
	// LimiterFallback is one shared-limiter check answered in process
	// because the shared service failed.
	LimiterFallback(limiter string)
}

// NopMetrics discards every observation.
type NopMetrics struct{}

func (NopMetrics) InFlight(int)                                                {}
func (NopMetrics) Request(string, string, int, string, time.Duration)          {}
func (NopMetrics) RateLimited(string)                                          {}
func (NopMetrics) AdmissionRejected()                                          {}
func (NopMetrics) ProviderCall(string, string, int, time.Duration, TokenUsage) {}
func (NopMetrics) BreakerOpen(string, bool)                                    {}
func (NopMetrics) UsageCommit(int, time.Duration)                              {}
func (NopMetrics) UsageIncrementLost()                                         {}
func (NopMetrics) UsageExpired(int)                                            {}
func (NopMetrics) UsageErased()                                                {}
func (NopMetrics) LimiterFallback(string)                                      {}
