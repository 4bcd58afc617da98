// Package offload holds the domain of the Offload backend: the types that cross
// package boundaries, the small interfaces that the HTTP layer depends on
// (provider, usage store, limiter, clock), and the error codes of the wire
// contract. Implementations live in one subpackage per dependency: openai,
// local, sqlite, ratelimit; httpapi serves them; client is the app side.
package offload

import (
	"context"
	"time"
)

// ServiceName is reported by GET /v1/health.
const ServiceName = "offload-backend-api"

// FeatureBreakdown is the usage feature counted for every successful breakdown.
const FeatureBreakdown = "breakdown"

// Step is one step of a breakdown plan. Substeps is never nil once it leaves
// a provider, so it always encodes as an array.
type Step struct {
	Title    string `json:"title"`
	Substeps []Step `json:"substeps"`
}

// BreakdownRequest is what a provider is asked to break down. It is user
// content: it must never be logged, stored or echoed in an error.
type BreakdownRequest struct {
	InputText    string
	Granularity  int // 1 "just the main steps" … 5 "tiny micro-steps"
	ContextHints []string
	TemplateIDs  []string
}

// TokenUsage is the provider's token accounting for one breakdown.
type TokenUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

// Breakdown is a provider's answer.
type Breakdown struct {
	Steps []Step
	Usage TokenUsage
}

// Provider generates breakdowns. Implementations return *ProviderError for
// every failure the client should see as a provider error code.
type Provider interface {
	// Name is reported in the response's "provider" field ("openai", "local").
	Name() string
	Generate(ctx context.Context, req BreakdownRequest) (Breakdown, error)
}

// UsageStore keeps the per-install, per-feature usage counts. Only counts are
// stored, never content. Every method is durable before it returns.
type UsageStore interface {
	// Reconcile stores max(stored, localCount) and returns the stored value.
	Reconcile(ctx context.Context, installID, feature string, localCount int64) (int64, error)
	// Increment adds one to the count and returns the new value.
	Increment(ctx context.Context, installID, feature string) (int64, error)
	// Total returns the sum of the install's counts over all features.
	Total(ctx context.Context, installID string) (int64, error)
	Close() error
}

// Limiter is a rate limiter keyed by an opaque string (client IP, install id).
type Limiter interface {
	// Allow counts one event for key. When the key is over its limit it
	// returns false and how long until the limit resets.
	Allow(key string) (ok bool, retryAfter time.Duration)
}

// Clock tells the time; tests inject a fake one.
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now returns f().
func (f ClockFunc) Now() time.Time { return f() }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Claims are the verified claims of a session token that handlers need.
type Claims struct {
	InstallID string
	ExpiresAt time.Time
}

type claimsKey struct{}

// WithClaims returns a context that carries the verified claims.
func WithClaims(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFrom returns the claims put in ctx by the auth gate.
func ClaimsFrom(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}
