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

	// Health metadata.
	Environment  string
	BuildVersion string

	Tokens *token.Codec
	// ClientIP resolves the client address (the TCP peer, or X-Forwarded-For
	// behind a trusted proxy).
	ClientIP func(*http.Request) netip.Addr

	SessionLimits Limits
	AILimits      Limits

	Provider offload.Provider
	// ProviderDeadline bounds one whole provider call, retries included.
	ProviderDeadline time.Duration

	Store        offload.UsageStore
	FeatureQuota int64
	EnforceQuota bool

	MaxBodyBytes  int64
	MaxInputChars int
}

// Limits is a pair of rate limiters for one route.
type Limits struct {
	PerIP      offload.Limiter
	PerInstall offload.Limiter
}

// NewServer returns the API handler with every route and middleware.
func NewServer(d Deps) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, d)
	return instrument(d.Logger, envelope(mux))
}
