// Package config reads the OFFLOAD_* environment once into a Config value that
// is passed to constructors. Nothing else in the module reads the environment.
package config

import (
	"net/netip"
	"time"

	"github.com/offload-app/offload"
)

// Secret is key material. It formats as "[REDACTED]" everywhere (fmt, slog,
// JSON) so a config value can be logged or printed without leaking it.
type Secret string

func (Secret) String() string               { return "[REDACTED]" }
func (Secret) GoString() string             { return "[REDACTED]" }
func (Secret) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }

// Config is the whole server configuration. Load fills every field, with the
// contract's defaults, and validates it; a Config from Load is ready to use.
type Config struct {
	Environment     string // OFFLOAD_ENVIRONMENT, default "development"
	BuildVersion    string // OFFLOAD_BUILD_VERSION, default "dev"
	ListenAddr      string // OFFLOAD_LISTEN_ADDR, default "127.0.0.1:8080"
	ShutdownTimeout time.Duration
	MaxBodyBytes    int64          // OFFLOAD_MAX_BODY_BYTES, default 262144
	MaxInputChars   int            // OFFLOAD_MAX_INPUT_CHARS, default 4000
	TrustedProxies  []netip.Prefix // OFFLOAD_TRUSTED_PROXIES, default none

	// MetricsAddr is the Prometheus listener (OFFLOAD_METRICS_ADDR), ""
	// when disabled. MetricsAddrSet says the operator chose it: a chosen
	// address that can't be bound stops the start, the default only warns.
	MetricsAddr    string
	MetricsAddrSet bool
	// ShutdownReadyDelay is how long /readyz answers 503 before the
	// listener starts draining (OFFLOAD_SHUTDOWN_READY_DELAY_SECONDS).
	ShutdownReadyDelay time.Duration
	// DocsEnabled serves GET /docs (OFFLOAD_DOCS_ENABLED; default on
	// outside production).
	DocsEnabled bool

	// Warnings are settings that let the server start but degrade it (a
	// provider without a key); each is logged once at startup.
	Warnings []string

	Session   Session
	AI        AI
	OpenAI    OpenAI
	Anthropic Anthropic
	Usage     Usage
	Redis     Redis
}

// Session configures token issue and verification.
type Session struct {
	TTL       time.Duration // OFFLOAD_SESSION_TTL_SECONDS, default 1h
	Issuer    string
	Audience  string
	ActiveKID string
	// Keys maps kid → key; it always holds ActiveKID. Built from
	// OFFLOAD_SESSION_SIGNING_KEYS, else ActiveKID → OFFLOAD_SESSION_SECRET
	// (or a random per-start secret outside production).
	Keys            map[string]Secret
	SecretGenerated bool // the random development secret was used

	IssueLimitPerIP      int
	IssueLimitPerInstall int
	IssueLimitWindow     time.Duration
}

// AI configures the breakdown route.
type AI struct {
	// Provider is the chain as configured, normalised ("openai",
	// "openai,anthropic,local"); Providers is the same list.
	Provider        string
	Providers       []string
	LimitPerInstall int
	LimitPerIP      int
	LimitWindow     time.Duration
	// Retry applies to every provider (OFFLOAD_AI_RETRY_* or the older
	// OFFLOAD_OPENAI_RETRY_* names).
	Retry Retry
	// BreakerCooldown is how long a failing provider is skipped.
	BreakerCooldown time.Duration
	// MaxInFlight bounds concurrent breakdowns; over it, 503 at once.
	MaxInFlight int
}

// Anthropic configures the Anthropic adapter.
type Anthropic struct {
	APIKey  Secret
	BaseURL string
	Model   string
	Version string        // sent as anthropic-version
	Timeout time.Duration // per attempt
}

// Redis configures the shared rate limits; URL empty keeps them in process.
type Redis struct {
	URL     Secret // may hold a password
	Timeout time.Duration
}

// OpenAI configures the OpenAI adapter.
type OpenAI struct {
	APIKey         Secret
	BaseURL        string
	Model          string
	Timeout        time.Duration // per attempt
	ResponseFormat string        // "json_schema" or "json_object"
}

// Retry is the provider retry policy of the contract.
type Retry = offload.RetryPolicy

// Usage configures the usage store and the reconcile route.
type Usage struct {
	DBPath string // OFFLOAD_USAGE_DB_PATH (SQLite, when DatabaseURL is empty)
	// DatabaseURL selects PostgreSQL (OFFLOAD_DATABASE_URL); it may hold a
	// password.
	DatabaseURL         Secret
	DefaultFeatureQuota int64 // OFFLOAD_DEFAULT_FEATURE_QUOTA, default 100
	EnforceQuota        bool  // OFFLOAD_ENFORCE_QUOTA, default false

	ReconcileLimitPerInstall int
	ReconcileLimitPerIP      int
	ReconcileLimitWindow     time.Duration
	MaxFeaturesPerInstall    int           // distinct features per install
	WriteTimeout             time.Duration // a write not durable by then fails
	Retention                time.Duration // rows idle longer are deleted; 0 keeps them
}
