package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Environment variable names. Secret-bearing ones are never echoed in errors.
const (
	EnvEnvironment            = "OFFLOAD_ENVIRONMENT"
	EnvBuildVersion           = "OFFLOAD_BUILD_VERSION"
	EnvListenAddr             = "OFFLOAD_LISTEN_ADDR"
	EnvShutdownTimeout        = "OFFLOAD_SHUTDOWN_TIMEOUT_SECONDS"
	EnvMaxBodyBytes           = "OFFLOAD_MAX_BODY_BYTES"
	EnvMaxInputChars          = "OFFLOAD_MAX_INPUT_CHARS"
	EnvTrustedProxies         = "OFFLOAD_TRUSTED_PROXIES"
	EnvSessionSecret          = "OFFLOAD_SESSION_SECRET"
	EnvSessionTTL             = "OFFLOAD_SESSION_TTL_SECONDS"
	EnvSessionIssuer          = "OFFLOAD_SESSION_TOKEN_ISSUER"
	EnvSessionAudience        = "OFFLOAD_SESSION_TOKEN_AUDIENCE"
	EnvSessionActiveKID       = "OFFLOAD_SESSION_TOKEN_ACTIVE_KID"
	EnvSessionSigningKeys     = "OFFLOAD_SESSION_SIGNING_KEYS"
	EnvSessionLimitPerIP      = "OFFLOAD_SESSION_ISSUE_LIMIT_PER_IP"
	EnvSessionLimitPerInstall = "OFFLOAD_SESSION_ISSUE_LIMIT_PER_INSTALL"
	EnvSessionLimitWindow     = "OFFLOAD_SESSION_ISSUE_LIMIT_WINDOW_SECONDS"
	EnvAIProvider             = "OFFLOAD_AI_PROVIDER"
	EnvAILimitPerInstall      = "OFFLOAD_AI_INFERENCE_LIMIT_PER_INSTALL"
	EnvAILimitPerIP           = "OFFLOAD_AI_INFERENCE_LIMIT_PER_IP"
	EnvAILimitWindow          = "OFFLOAD_AI_INFERENCE_LIMIT_WINDOW_SECONDS"
	EnvOpenAIAPIKey           = "OFFLOAD_OPENAI_API_KEY"
	EnvOpenAIBaseURL          = "OFFLOAD_OPENAI_BASE_URL"
	EnvOpenAIModel            = "OFFLOAD_OPENAI_MODEL"
	EnvOpenAITimeout          = "OFFLOAD_OPENAI_TIMEOUT_SECONDS"
	EnvOpenAIResponseFormat   = "OFFLOAD_OPENAI_RESPONSE_FORMAT"
	EnvRetryMaxAttempts       = "OFFLOAD_OPENAI_RETRY_MAX_ATTEMPTS"
	EnvRetryBaseDelay         = "OFFLOAD_OPENAI_RETRY_BASE_DELAY_SECONDS"
	EnvRetryMaxDelay          = "OFFLOAD_OPENAI_RETRY_MAX_DELAY_SECONDS"
	EnvRetryMaxTotalDelay     = "OFFLOAD_OPENAI_RETRY_MAX_TOTAL_DELAY_SECONDS"
	EnvRetryJitterFactor      = "OFFLOAD_OPENAI_RETRY_JITTER_FACTOR"
	EnvUsageDBPath            = "OFFLOAD_USAGE_DB_PATH"
	EnvDefaultFeatureQuota    = "OFFLOAD_DEFAULT_FEATURE_QUOTA"
	EnvEnforceQuota           = "OFFLOAD_ENFORCE_QUOTA"

	EnvMetricsAddr        = "OFFLOAD_METRICS_ADDR"
	EnvShutdownReadyDelay = "OFFLOAD_SHUTDOWN_READY_DELAY_SECONDS"
	EnvDocsEnabled        = "OFFLOAD_DOCS_ENABLED"

	EnvAIRetryMaxAttempts   = "OFFLOAD_AI_RETRY_MAX_ATTEMPTS"
	EnvAIRetryBaseDelay     = "OFFLOAD_AI_RETRY_BASE_DELAY_SECONDS"
	EnvAIRetryMaxDelay      = "OFFLOAD_AI_RETRY_MAX_DELAY_SECONDS"
	EnvAIRetryMaxTotalDelay = "OFFLOAD_AI_RETRY_MAX_TOTAL_DELAY_SECONDS"
	EnvAIRetryJitterFactor  = "OFFLOAD_AI_RETRY_JITTER_FACTOR"
	EnvAIBreakerCooldown    = "OFFLOAD_AI_BREAKER_COOLDOWN_SECONDS"
	EnvAIMaxInFlight        = "OFFLOAD_AI_MAX_IN_FLIGHT"

	EnvAnthropicAPIKey  = "OFFLOAD_ANTHROPIC_API_KEY"
	EnvAnthropicBaseURL = "OFFLOAD_ANTHROPIC_BASE_URL"
	EnvAnthropicModel   = "OFFLOAD_ANTHROPIC_MODEL"
	EnvAnthropicVersion = "OFFLOAD_ANTHROPIC_VERSION"
	EnvAnthropicTimeout = "OFFLOAD_ANTHROPIC_TIMEOUT_SECONDS"

	EnvDatabaseURL                = "OFFLOAD_DATABASE_URL"
	EnvReconcileLimitPerInstall   = "OFFLOAD_USAGE_RECONCILE_LIMIT_PER_INSTALL"
	EnvReconcileLimitPerIP        = "OFFLOAD_USAGE_RECONCILE_LIMIT_PER_IP"
	EnvReconcileLimitWindow       = "OFFLOAD_USAGE_RECONCILE_LIMIT_WINDOW_SECONDS"
	EnvUsageMaxFeaturesPerInstall = "OFFLOAD_USAGE_MAX_FEATURES_PER_INSTALL"
	EnvUsageWriteTimeout          = "OFFLOAD_USAGE_WRITE_TIMEOUT_SECONDS"
	EnvUsageRetentionDays         = "OFFLOAD_USAGE_RETENTION_DAYS"

	EnvRedisURL       = "OFFLOAD_REDIS_URL"
	EnvRedisTimeoutMS = "OFFLOAD_REDIS_TIMEOUT_MS"
)

// DefaultMetricsAddr is where metrics are served unless configured: loopback
// only, never the public listener.
const DefaultMetricsAddr = "127.0.0.1:9464"

// MetricsOff are the values of OFFLOAD_METRICS_ADDR that disable metrics. An
// empty value does too where the caller can tell empty from unset (the
// binary's environment); through a plain getenv, empty means unset.
var MetricsOff = []string{"off", "none", "disabled", "false", "0"}

// Provider names for AI.Provider and response formats for OpenAI.ResponseFormat.
const (
	ProviderOpenAI    = "openai"
	ProviderAnthropic = "anthropic"
	ProviderLocal     = "local"

	FormatJSONSchema = "json_schema"
	FormatJSONObject = "json_object"
)

// maxSeconds is the largest whole number of seconds a time.Duration holds,
// so no bound below can overflow.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// VarError is one invalid environment variable. Problem never contains a
// secret; for a non-secret variable it may quote (a prefix of) the value.
type VarError struct {
	Name    string // e.g. "OFFLOAD_SESSION_TTL_SECONDS"
	Problem string
}

func (e *VarError) Error() string { return e.Name + ": " + e.Problem }

// Load reads every OFFLOAD_* variable of the contract through getenv (an
// empty value means unset), applies defaults and bounds, and validates the
// result. On failure it returns one error joining a *VarError per invalid
// variable; no error text contains a secret or the API key.
func Load(getenv func(string) string) (Config, error) {
	l := loader{getenv: getenv}
	var c Config

	c.Environment = l.str(EnvEnvironment, "development")
	c.BuildVersion = l.str(EnvBuildVersion, "dev")
	prod := IsProductionLike(c.Environment)

	c.ListenAddr = l.str(EnvListenAddr, "127.0.0.1:8080")
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		l.fail(EnvListenAddr, "must be host:port (got %s)", quoteShort(c.ListenAddr))
	}
	c.ShutdownTimeout = l.seconds(EnvShutdownTimeout, 15, false)
	c.MaxBodyBytes = l.int(EnvMaxBodyBytes, 262144, 1, math.MaxInt64)
	c.MaxInputChars = int(l.int(EnvMaxInputChars, 4000, 1, math.MaxInt32))
	c.TrustedProxies = l.proxies(EnvTrustedProxies)

	c.Session = l.session(prod)

	c.OpenAI.APIKey = Secret(strings.TrimSpace(getenv(EnvOpenAIAPIKey)))
	c.OpenAI.BaseURL = l.baseURL(EnvOpenAIBaseURL, "https://api.openai.com/v1", EnvOpenAIAPIKey)
	c.OpenAI.Model = l.nonEmpty(EnvOpenAIModel, "gpt-4o-mini")
	c.OpenAI.Timeout = l.seconds(EnvOpenAITimeout, 20, true)
	c.OpenAI.ResponseFormat = strings.ToLower(l.str(EnvOpenAIResponseFormat, FormatJSONSchema))
	if f := c.OpenAI.ResponseFormat; f != FormatJSONSchema && f != FormatJSONObject {
		l.fail(EnvOpenAIResponseFormat, "must be json_schema or json_object (got %s)", quoteShort(f))
	}
	// The later deployment renamed OFFLOAD_OPENAI_RETRY_* to
	// OFFLOAD_AI_RETRY_* (one policy for every provider); either works.
	retry := Retry{
		MaxAttempts:   int(aliased(&l, EnvAIRetryMaxAttempts, EnvRetryMaxAttempts, func(n string) int64 { return l.int(n, 3, 1, 10) })),
		BaseDelay:     aliased(&l, EnvAIRetryBaseDelay, EnvRetryBaseDelay, func(n string) time.Duration { return l.seconds(n, 0.25, false) }),
		MaxDelay:      aliased(&l, EnvAIRetryMaxDelay, EnvRetryMaxDelay, func(n string) time.Duration { return l.seconds(n, 2, false) }),
		MaxTotalDelay: aliased(&l, EnvAIRetryMaxTotalDelay, EnvRetryMaxTotalDelay, func(n string) time.Duration { return l.seconds(n, 4, false) }),
		JitterFactor:  aliased(&l, EnvAIRetryJitterFactor, EnvRetryJitterFactor, func(n string) float64 { return l.fraction(n, 0.25) }),
	}

	c.Anthropic.APIKey = Secret(strings.TrimSpace(getenv(EnvAnthropicAPIKey)))
	c.Anthropic.BaseURL = l.baseURL(EnvAnthropicBaseURL, "https://api.anthropic.com", EnvAnthropicAPIKey)
	c.Anthropic.Model = l.nonEmpty(EnvAnthropicModel, "claude-haiku-4-5-20251001")
	c.Anthropic.Version = l.nonEmpty(EnvAnthropicVersion, "2023-06-01")
	c.Anthropic.Timeout = l.seconds(EnvAnthropicTimeout, 20, true)

	keys := map[string]bool{
		ProviderOpenAI:    c.OpenAI.APIKey != "",
		ProviderAnthropic: c.Anthropic.APIKey != "",
		ProviderLocal:     true,
	}
	providers := l.providers(prod, keys)
	c.AI = AI{
		Provider:        strings.Join(providers, ","),
		Providers:       providers,
		LimitPerInstall: int(l.int(EnvAILimitPerInstall, 20, 1, math.MaxInt32)),
		LimitPerIP:      int(l.int(EnvAILimitPerIP, 120, 1, math.MaxInt32)),
		LimitWindow:     time.Duration(l.int(EnvAILimitWindow, 60, 1, maxSeconds)) * time.Second,
		Retry:           retry,
		BreakerCooldown: l.seconds(EnvAIBreakerCooldown, 30, true),
		MaxInFlight:     int(l.int(EnvAIMaxInFlight, DefaultMaxInFlight, 1, math.MaxInt32)),
	}
	c.Warnings = missingKeyWarnings(providers, keys)

	c.Usage = Usage{
		DBPath:                   l.nonEmpty(EnvUsageDBPath, ".offload-backend/usage.sqlite3"),
		DatabaseURL:              Secret(strings.TrimSpace(getenv(EnvDatabaseURL))),
		DefaultFeatureQuota:      l.int(EnvDefaultFeatureQuota, 100, 0, math.MaxInt64),
		EnforceQuota:             l.bool(EnvEnforceQuota, false),
		ReconcileLimitPerInstall: int(l.int(EnvReconcileLimitPerInstall, 120, 1, math.MaxInt32)),
		ReconcileLimitPerIP:      int(l.int(EnvReconcileLimitPerIP, 1200, 1, math.MaxInt32)),
		ReconcileLimitWindow:     time.Duration(l.int(EnvReconcileLimitWindow, 60, 1, maxSeconds)) * time.Second,
		MaxFeaturesPerInstall:    int(l.int(EnvUsageMaxFeaturesPerInstall, 16, 1, math.MaxInt32)),
		WriteTimeout:             l.seconds(EnvUsageWriteTimeout, 5, true),
		Retention:                time.Duration(l.int(EnvUsageRetentionDays, 400, 0, maxSeconds/86400)) * 24 * time.Hour,
	}
	if u := string(c.Usage.DatabaseURL); u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "postgres" && pu.Scheme != "postgresql") {
			// Not quoted: the URL may carry a password.
			l.fail(EnvDatabaseURL, "must be a postgres:// or postgresql:// URL")
		}
	}

	c.Redis.URL = Secret(strings.TrimSpace(getenv(EnvRedisURL)))
	if u := string(c.Redis.URL); u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "redis" && pu.Scheme != "rediss") || pu.Host == "" {
			l.fail(EnvRedisURL, "must be a redis:// or rediss:// URL")
		}
	}
	c.Redis.Timeout = time.Duration(l.int(EnvRedisTimeoutMS, 50, 1, 60000)) * time.Millisecond

	c.MetricsAddr, c.MetricsAddrSet = DefaultMetricsAddr, false
	if raw := strings.TrimSpace(getenv(EnvMetricsAddr)); raw != "" {
		c.MetricsAddrSet = true
		c.MetricsAddr = raw
		if slices.Contains(MetricsOff, strings.ToLower(raw)) {
			c.MetricsAddr = ""
		} else if _, _, err := net.SplitHostPort(raw); err != nil {
			l.fail(EnvMetricsAddr, "must be host:port, or off (got %s)", quoteShort(raw))
		}
	}
	c.ShutdownReadyDelay = l.seconds(EnvShutdownReadyDelay, 0, false)
	c.DocsEnabled = l.bool(EnvDocsEnabled, !prod)

	if len(l.errs) > 0 {
		return Config{}, errors.Join(l.errs...)
	}
	return c, nil
}

// loader reads variables and collects every problem instead of stopping at
// the first, so an operator sees all mistakes in one start attempt.
type loader struct {
	getenv func(string) string
	errs   []error
}

func (l *loader) fail(name, format string, args ...any) {
	l.errs = append(l.errs, &VarError{Name: name, Problem: fmt.Sprintf(format, args...)})
}

// str returns the trimmed value, or def when it is unset or empty.
func (l *loader) str(name, def string) string {
	if v := strings.TrimSpace(l.getenv(name)); v != "" {
		return v
	}
	return def
}

// nonEmpty is str for variables where a value of only spaces is a mistake
// rather than "unset".
func (l *loader) nonEmpty(name, def string) string {
	raw := l.getenv(name)
	if raw == "" {
		return def
	}
	v := strings.TrimSpace(raw)
	if v == "" {
		l.fail(name, "must be non-empty")
	}
	return v
}

func (l *loader) int(name string, def, lo, hi int64) int64 {
	raw := strings.TrimSpace(l.getenv(name))
	if raw == "" {
		return def
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < lo || n > hi {
		l.fail(name, "must be an integer %s (got %s)", bounds(lo, hi), quoteShort(raw))
		return def
	}
	return n
}

// seconds reads a non-negative number of seconds (fractions allowed). With
// positive set, zero is rejected too.
func (l *loader) seconds(name string, def float64, positive bool) time.Duration {
	raw := strings.TrimSpace(l.getenv(name))
	if raw == "" {
		return floatSeconds(def)
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil || math.IsNaN(f) || f < 0 || (positive && f <= 0) || f > float64(maxSeconds) {
		want := "≥ 0"
		if positive {
			want = "> 0"
		}
		l.fail(name, "must be a number of seconds %s (got %s)", want, quoteShort(raw))
		return floatSeconds(def)
	}
	return floatSeconds(f)
}

func floatSeconds(f float64) time.Duration {
	return time.Duration(math.Round(f * float64(time.Second)))
}

func (l *loader) fraction(name string, def float64) float64 {
	raw := strings.TrimSpace(l.getenv(name))
	if raw == "" {
		return def
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil || !(f >= 0 && f <= 1) { // also rejects NaN
		l.fail(name, "must be a number between 0 and 1 (got %s)", quoteShort(raw))
		return def
	}
	return f
}

func (l *loader) bool(name string, def bool) bool {
	raw := strings.TrimSpace(l.getenv(name))
	switch strings.ToLower(raw) {
	case "":
		return def
	case "true", "1", "yes":
		return true
	case "false", "0", "no":
		return false
	}
	l.fail(name, "must be true, false, 1, 0, yes or no (got %s)", quoteShort(raw))
	return def
}

// proxies parses comma-separated CIDRs; a bare address means just that host.
// IPv4-mapped IPv6 forms are unmapped, because peer addresses of IPv4 clients
// arrive as plain IPv4.
func (l *loader) proxies(name string) []netip.Prefix {
	raw := strings.TrimSpace(l.getenv(name))
	if raw == "" {
		return nil
	}
	var out []netip.Prefix
	for i, part := range strings.Split(raw, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue // tolerate "a, b," and doubled commas
		}
		p, ok := parseProxy(part)
		if !ok {
			l.fail(name, "entry %d is not an IP address or CIDR (got %s)", i+1, quoteShort(part))
			continue
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func parseProxy(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, false // spans more than the mapped range
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// DefaultMaxInFlight bounds concurrent breakdowns on a small machine: each
// waiting breakdown holds a connection, two goroutines and tens of KiB.
const DefaultMaxInFlight = 4096

// providers reads the ordered provider chain ("openai,anthropic,local"). An
// unset value picks openai when its key is set, else anthropic when its key
// is, else local outside production; in production without any key it picks
// openai, which then answers 503 provider_unavailable (a warning, not a
// refused start, as the existing deployment behaves).
func (l *loader) providers(prod bool, haveKey map[string]bool) []string {
	raw := strings.ToLower(l.str(EnvAIProvider, ""))
	if raw == "" {
		switch {
		case haveKey[ProviderOpenAI]:
			return []string{ProviderOpenAI}
		case haveKey[ProviderAnthropic]:
			return []string{ProviderAnthropic}
		case !prod:
			return []string{ProviderLocal}
		default:
			return []string{ProviderOpenAI}
		}
	}
	var out []string
	for _, p := range strings.Split(raw, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
			continue
		case p != ProviderOpenAI && p != ProviderAnthropic && p != ProviderLocal:
			l.fail(EnvAIProvider, "must be a comma-separated list of openai, anthropic and local (got %s)", quoteShort(p))
			return []string{ProviderLocal}
		case slices.Contains(out, p):
			l.fail(EnvAIProvider, "names %s twice", p)
			return []string{ProviderLocal}
		case len(out) > 0 && out[len(out)-1] == ProviderLocal:
			l.fail(EnvAIProvider, "local always answers, so it can only end the list")
			return []string{ProviderLocal}
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		l.fail(EnvAIProvider, "must name at least one provider")
		return []string{ProviderLocal}
	}
	return out
}

// missingKeyWarnings names every provider of the chain that has no key: it
// is skipped, and with nothing after it breakdowns answer 503.
func missingKeyWarnings(providers []string, haveKey map[string]bool) []string {
	var out []string
	for _, p := range providers {
		if haveKey[p] {
			continue
		}
		name := EnvOpenAIAPIKey
		if p == ProviderAnthropic {
			name = EnvAnthropicAPIKey
		}
		out = append(out, name+" is not set: provider "+p+" is unavailable (breakdowns it would answer get 503 provider_unavailable)")
	}
	return out
}

// baseURL reads an absolute http(s) URL without user info.
func (l *loader) baseURL(name, def, keyVar string) string {
	v := l.str(name, def)
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not quoted: a mistyped URL may still carry credentials.
		l.fail(name, "must be an absolute http or https URL")
	} else if u.User != nil {
		// Credentials here would be a plain string in Config, printed by
		// anything that prints it; the key belongs in its own variable.
		l.fail(name, "must not contain user info; put the key in %s", keyVar)
	}
	return v
}

// aliased reads a setting that has two names. Either may be set; both set to
// different values stops the start, naming both.
func aliased[T comparable](l *loader, name, old string, read func(string) T) T {
	newSet := strings.TrimSpace(l.getenv(name)) != ""
	oldSet := strings.TrimSpace(l.getenv(old)) != ""
	switch {
	case newSet && oldSet:
		a, b := read(name), read(old)
		if a != b {
			l.fail(name, "and %s are both set, to different values; set one", old)
		}
		return a
	case oldSet:
		return read(old)
	default:
		return read(name)
	}
}

func (l *loader) session(prod bool) Session {
	s := Session{
		TTL:                  time.Duration(l.int(EnvSessionTTL, 3600, 1, maxSeconds)) * time.Second,
		Issuer:               l.nonEmpty(EnvSessionIssuer, "offload-backend"),
		Audience:             l.nonEmpty(EnvSessionAudience, "offload-ios"),
		ActiveKID:            l.nonEmpty(EnvSessionActiveKID, "v2-default"),
		IssueLimitPerIP:      int(l.int(EnvSessionLimitPerIP, 8, 1, math.MaxInt32)),
		IssueLimitPerInstall: int(l.int(EnvSessionLimitPerInstall, 4, 1, math.MaxInt32)),
		IssueLimitWindow:     time.Duration(l.int(EnvSessionLimitWindow, 60, 1, maxSeconds)) * time.Second,
	}

	var keys map[string]Secret
	keysOK := true
	if raw := strings.TrimSpace(l.getenv(EnvSessionSigningKeys)); raw != "" {
		k, err := parseSigningKeys(raw)
		if err != nil {
			l.errs = append(l.errs, &VarError{Name: EnvSessionSigningKeys, Problem: err.Error()})
			keysOK = false
		} else if len(k) > 0 { // "{}" counts as unset, as in the deployment
			keys = k
			if _, ok := keys[s.ActiveKID]; !ok && s.ActiveKID != "" {
				l.fail(EnvSessionActiveKID, "must be one of the key ids in OFFLOAD_SESSION_SIGNING_KEYS (got %s)", quoteShort(s.ActiveKID))
			}
		}
	}

	secret := strings.TrimSpace(l.getenv(EnvSessionSecret))
	switch {
	case secret == "" && prod && keys == nil && keysOK:
		l.fail(EnvSessionSecret, "is required in a production-like environment")
	case secret == "" && keys == nil && keysOK:
		secret = randomSecret()
		s.SecretGenerated = true
	case secret != "" && prod:
		// Checked even when SIGNING_KEYS makes it unused, as the deployment
		// does: a weak secret lying around is a mistake worth stopping for.
		if p := secretProblem(secret); p != "" {
			l.fail(EnvSessionSecret, "%s", p)
		}
	}

	if keys == nil {
		s.Keys = map[string]Secret{s.ActiveKID: Secret(secret)}
		return s
	}
	s.Keys = keys
	if prod {
		for _, kid := range slices.Sorted(maps.Keys(keys)) {
			if p := secretProblem(string(keys[kid])); p != "" {
				l.fail(EnvSessionSigningKeys, "key for kid %s %s", quoteShort(kid), p)
			}
		}
	}
	return s
}

// randomSecret is the per-start development secret: 32 random bytes,
// base64url as the deployment's secrets.token_urlsafe(32).
func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24; it crashes instead
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func bounds(lo, hi int64) string {
	switch {
	case hi == math.MaxInt64 || hi == math.MaxInt32 || hi == maxSeconds:
		return fmt.Sprintf("≥ %d", lo)
	default:
		return fmt.Sprintf("between %d and %d", lo, hi)
	}
}

// quoteShort quotes a non-secret value for an error message, cut to a
// length that keeps a pasted blob from flooding the log.
func quoteShort(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}

// KeyBytes returns the session keys as the token package wants them.
func (s Session) KeyBytes() map[string][]byte {
	out := make(map[string][]byte, len(s.Keys))
	for kid, k := range s.Keys {
		out[kid] = []byte(k)
	}
	return out
}

// urlHost is the scheme and host of a URL, without path, query or user.
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// LogValue is the startup summary of c: settings an operator checks, and
// never key material.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("environment", c.Environment),
		slog.String("version", c.BuildVersion),
		slog.String("listen_addr", c.ListenAddr),
		slog.String("provider", c.AI.Provider),
		slog.Bool("anthropic_key_set", c.Anthropic.APIKey != ""),
		slog.Bool("redis", c.Redis.URL != ""),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.Bool("docs_enabled", c.DocsEnabled),
		slog.String("openai_host", urlHost(c.OpenAI.BaseURL)), // a query may hold a key
		slog.String("openai_model", c.OpenAI.Model),
		slog.Bool("openai_key_set", c.OpenAI.APIKey != ""),
		slog.String("usage_db_path", c.Usage.DBPath),
		slog.Bool("enforce_quota", c.Usage.EnforceQuota),
		slog.String("active_kid", c.Session.ActiveKID),
		slog.Int("session_keys", len(c.Session.Keys)),
		slog.Bool("session_secret_generated", c.Session.SecretGenerated),
		slog.Int("trusted_proxies", len(c.TrustedProxies)),
	)
}
