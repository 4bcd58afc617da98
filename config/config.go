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

	Session Session
	AI      AI
	OpenAI  OpenAI
	Usage   Usage
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
	Provider        string // "openai" or "local"
	LimitPerInstall int
	LimitPerIP      int
	LimitWindow     time.Duration
}

// OpenAI configures the OpenAI adapter.
type OpenAI struct {
	APIKey         Secret
	BaseURL        string
	Model          string
	Timeout        time.Duration // per attempt
	ResponseFormat string        // "json_schema" or "json_object"
	Retry          Retry
}

// Retry is the provider retry policy of the contract.
type Retry = offload.RetryPolicy

// Usage configures the usage store.
type Usage struct {
	DBPath              string // OFFLOAD_USAGE_DB_PATH
	DefaultFeatureQuota int64  // OFFLOAD_DEFAULT_FEATURE_QUOTA, default 100
	EnforceQuota        bool   // OFFLOAD_ENFORCE_QUOTA, default false
}
