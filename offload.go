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
	// Provider names the provider that answered when it differs from the
	// one asked (a chain); empty means Provider.Name() of the one called.
	Provider string
	// Attempts is how many upstream calls the answer took (0: not counted).
	Attempts int
}

// Provider generates breakdowns. Implementations return *ProviderError for
// every failure the client should see as a provider error code.
type Provider interface {
	// Name is reported in the response's "provider" field ("openai", "local").
	Name() string
	Generate(ctx context.Context, req BreakdownRequest) (Breakdown, error)
}

// UsageStore keeps the per-install, per-feature usage counts. Only counts are
// stored, never content. Every write is durable before it returns, and every
// check-and-write is atomic in the store (one statement or transaction), so
// it holds across processes sharing the store.
type UsageStore interface {
	// Reconcile stores max(stored, localCount) and returns the stored value.
	// Creating a row for an install that already has the store's maximum
	// number of distinct features fails with ErrFeatureLimit; existing rows
	// are always reconciled.
	Reconcile(ctx context.Context, installID, feature string, localCount int64) (int64, error)
	// Increment adds one to the count and returns the new value. It is the
	// server's own counting and is never refused by the feature cap.
	Increment(ctx context.Context, installID, feature string) (int64, error)
	// Reserve adds one to the count only while it is below quota and returns
	// the new value; at or over quota it fails with ErrQuotaExceeded and
	// changes nothing. Never refused by the feature cap.
	Reserve(ctx context.Context, installID, feature string, quota int64) (int64, error)
	// Release gives back one Reserve whose work failed (never below 0).
	Release(ctx context.Context, installID, feature string) error
	// Count returns the stored count (0 for an unknown key).
	Count(ctx context.Context, installID, feature string) (int64, error)
	// Erase deletes every count of the install and returns how many rows
	// went. Erasing an unknown install is not an error (0).
	Erase(ctx context.Context, installID string) (int64, error)
	// Expire deletes at most limit rows not updated since before and
	// returns how many went; the caller loops while it returns limit.
	Expire(ctx context.Context, before time.Time, limit int) (int64, error)
	// Check reports whether the store can commit now (readiness). Its error
	// is content-free and names no user data path.
	Check(ctx context.Context) error
	Close() error
}

// HealthCheck is one readiness check. A failing Critical check makes the
// service unready; a failing non-critical one is reported as degraded.
// Name is a fixed word ("usage_store", "redis"), never configuration.
type HealthCheck struct {
	Name     string
	Critical bool
	Probe    func(ctx context.Context) error
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

// UsageRow is one stored count, as the usage copy command moves it between
// stores. UpdatedAt is UTC, second precision.
type UsageRow struct {
	InstallID string
	Feature   string
	Count     int64
	UpdatedAt time.Time
}

// UsageCopier is a store that can list its rows and merge rows in bulk
// (offload-api usage copy). Both stores implement it.
type UsageCopier interface {
	// EachRow calls fn for every row, in (install_id, feature) order.
	EachRow(ctx context.Context, fn func(UsageRow) error) error
	// MergeRows stores max(stored, row.Count) for each row, durably and in
	// one transaction, ignoring the feature cap (the rows exist already
	// somewhere); updated_at becomes the later of the two.
	MergeRows(ctx context.Context, rows []UsageRow) error
}
