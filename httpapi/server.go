// Package httpapi serves the Offload wire contract (../shared/CONTRACT.md)
// over net/http: routes, middleware, request decoding, the auth gate and the
// one table from error codes to HTTP statuses.
package httpapi

import (
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/token"
)

// Deps is everything the handlers need. It is read once by NewServer.
type Deps struct {
	Logger *slog.Logger
	Clock  offload.Clock
	// Metrics receives content-free observations; nil discards them.
	Metrics offload.Metrics

	// Health metadata.
	Environment  string
	BuildVersion string

	Tokens *token.Codec
	// ClientIP resolves the client address (the TCP peer, or X-Forwarded-For
	// behind a trusted proxy).
	ClientIP func(*http.Request) netip.Addr

	SessionLimits Limits
	AILimits      Limits
	UsageLimits   Limits // reconcile and erase

	Provider offload.Provider
	// ProviderDeadline bounds one whole provider call, retries included.
	ProviderDeadline time.Duration
	// MaxInFlight bounds concurrent provider calls; over it a breakdown is
	// refused at once (0: unbounded).
	MaxInFlight int

	Store        offload.UsageStore
	FeatureQuota int64
	EnforceQuota bool
	// UsageWriteTimeout bounds every usage-store write a request waits for.
	UsageWriteTimeout time.Duration

	// Checks are run by GET /readyz; Draining reports a started shutdown.
	Checks   []offload.HealthCheck
	Draining func() bool

	// OpenAPI serves GET /openapi.json and Docs GET /docs; nil answers 404.
	OpenAPI http.Handler
	Docs    http.Handler

	MaxBodyBytes  int64
	MaxInputChars int
}

// Limits is a pair of rate limiters for one route. Name prefixes the
// limiter names reported to metrics ("session" → "session_ip").
type Limits struct {
	Name       string
	PerIP      offload.Limiter
	PerInstall offload.Limiter
}

// NewServer returns the API handler with every route and middleware.
func NewServer(d Deps) http.Handler {
	if d.Metrics == nil {
		d.Metrics = offload.NopMetrics{}
	}
	if d.Clock == nil {
		d.Clock = offload.SystemClock{}
	}
	if d.Draining == nil {
		d.Draining = func() bool { return false }
	}
	mux := http.NewServeMux()
	addRoutes(mux, d)
	return instrument(d.Logger, d.Metrics, envelope(mux))
}
