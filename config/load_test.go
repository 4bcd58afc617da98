package config

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Strong secrets for tests: ≥32 characters, many distinct, no placeholder.
const (
	strongA = "kZ3r8vQ1xN5mT7pL2wY9cB4hJ6dF0sGa"
	strongB = "Qm9Xb2Lr5Tz8Wk1Nv4Hc7Jd0Pf3Gs6Ay"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// with returns a copy of base with the overrides applied.
func with(base map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(base)+len(kv)/2)
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// prodEnv is a valid production configuration.
var prodEnv = map[string]string{
	EnvEnvironment:   "production",
	EnvSessionSecret: strongA,
	EnvOpenAIAPIKey:  "sk-test-key",
}

// varNames lists the variables named by a Load error, in order.
func varNames(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var names []string
	for _, e := range errs {
		var ve *VarError
		if !errors.As(e, &ve) {
			t.Fatalf("error %q is not a *VarError", e)
		}
		if !strings.HasPrefix(e.Error(), ve.Name+": ") {
			t.Fatalf("error %q does not start with its variable name", e)
		}
		names = append(names, ve.Name)
	}
	return names
}

var defaultRetry = Retry{
	MaxAttempts:   3,
	BaseDelay:     250 * time.Millisecond,
	MaxDelay:      2 * time.Second,
	MaxTotalDelay: 4 * time.Second,
	JitterFactor:  0.25,
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatalf("Load(empty) = %v", err)
	}
	secret := c.Session.Keys["v2-default"]
	if len(c.Session.Keys) != 1 || len(secret) != 43 || !c.Session.SecretGenerated {
		t.Fatalf("want one generated 43-char key for v2-default, got %d keys, len %d, generated %v",
			len(c.Session.Keys), len(secret), c.Session.SecretGenerated)
	}
	want := Config{
		Environment:     "development",
		BuildVersion:    "dev",
		ListenAddr:      "127.0.0.1:8080",
		ShutdownTimeout: 15 * time.Second,
		MaxBodyBytes:    262144,
		MaxInputChars:   4000,
		Session: Session{
			TTL:                  time.Hour,
			Issuer:               "offload-backend",
			Audience:             "offload-ios",
			ActiveKID:            "v2-default",
			Keys:                 map[string]Secret{"v2-default": secret},
			SecretGenerated:      true,
			IssueLimitPerIP:      8,
			IssueLimitPerInstall: 4,
			IssueLimitWindow:     time.Minute,
		},
		AI: AI{Provider: "local", Providers: []string{"local"}, LimitPerInstall: 20, LimitPerIP: 120, LimitWindow: time.Minute,
			Retry:           defaultRetry,
			BreakerCooldown: 30 * time.Second,
			MaxInFlight:     DefaultMaxInFlight,
		},
		MetricsAddr: "127.0.0.1:9464",
		DocsEnabled: true,
		Anthropic: Anthropic{
			BaseURL: "https://api.anthropic.com",
			Model:   "claude-haiku-4-5-20251001",
			Version: "2023-06-01",
			Timeout: 20 * time.Second,
		},
		Redis: Redis{Timeout: 50 * time.Millisecond},
		OpenAI: OpenAI{
			BaseURL:        "https://api.openai.com/v1",
			Model:          "gpt-4o-mini",
			Timeout:        20 * time.Second,
			ResponseFormat: "json_schema",
		},
		Usage: Usage{DBPath: ".offload-backend/usage.sqlite3", DefaultFeatureQuota: 100,
			ReconcileLimitPerInstall: 120, ReconcileLimitPerIP: 1200, ReconcileLimitWindow: time.Minute,
			MaxFeaturesPerInstall: 16, WriteTimeout: 5 * time.Second, Retention: 400 * 24 * time.Hour},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %#v\nwant %#v", c, want) // Secret formats redacted, so this is safe
	}
	if c.ProductionLike() {
		t.Error("default environment is production-like")
	}
}

func TestLoadReadsEveryVariable(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvEnvironment:            " staging ",
		EnvBuildVersion:           "1.2.3",
		EnvListenAddr:             ":9000",
		EnvShutdownTimeout:        "2.5",
		EnvMaxBodyBytes:           "1024",
		EnvMaxInputChars:          "10",
		EnvTrustedProxies:         "10.0.0.0/8, 192.168.1.7",
		EnvSessionSecret:          " " + strongA + " ",
		EnvSessionTTL:             "120",
		EnvSessionIssuer:          " iss ",
		EnvSessionAudience:        "aud",
		EnvSessionActiveKID:       "k1",
		EnvSessionLimitPerIP:      "1",
		EnvSessionLimitPerInstall: "2",
		EnvSessionLimitWindow:     "3",
		EnvAIProvider:             "LOCAL",
		EnvAILimitPerInstall:      "4",
		EnvAILimitPerIP:           "5",
		EnvAILimitWindow:          "6",
		EnvOpenAIAPIKey:           " sk-abc ",
		EnvOpenAIBaseURL:          "http://localhost:11434/v1",
		EnvOpenAIModel:            "llama3",
		EnvOpenAITimeout:          "0.5",
		EnvOpenAIResponseFormat:   "json_object",
		EnvRetryMaxAttempts:       "10",
		EnvRetryBaseDelay:         "0",
		EnvRetryMaxDelay:          "1.25",
		EnvRetryMaxTotalDelay:     "3",
		EnvRetryJitterFactor:      "1",
		EnvUsageDBPath:            "/var/lib/offload/u.db",
		EnvDefaultFeatureQuota:    "0",
		EnvEnforceQuota:           "Yes",

		EnvMetricsAddr:                "0.0.0.0:9100",
		EnvShutdownReadyDelay:         "3",
		EnvDocsEnabled:                "true",
		EnvAIBreakerCooldown:          "7",
		EnvAIMaxInFlight:              "9",
		EnvAnthropicAPIKey:            " sk-ant ",
		EnvAnthropicBaseURL:           "http://127.0.0.1:9/",
		EnvAnthropicModel:             "claude-x",
		EnvAnthropicVersion:           "2024-01-01",
		EnvAnthropicTimeout:           "1.5",
		EnvDatabaseURL:                "postgres://u:pw@db.internal/offload",
		EnvReconcileLimitPerInstall:   "11",
		EnvReconcileLimitPerIP:        "12",
		EnvReconcileLimitWindow:       "13",
		EnvUsageMaxFeaturesPerInstall: "14",
		EnvUsageWriteTimeout:          "0.25",
		EnvUsageRetentionDays:         "0",
		EnvRedisURL:                   "redis://:pw@cache:6379/0",
		EnvRedisTimeoutMS:             "20",
	}))
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	want := Config{
		Environment:     "staging",
		BuildVersion:    "1.2.3",
		ListenAddr:      ":9000",
		ShutdownTimeout: 2500 * time.Millisecond,
		MaxBodyBytes:    1024,
		MaxInputChars:   10,
		TrustedProxies:  []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")},
		Session: Session{
			TTL:                  2 * time.Minute,
			Issuer:               "iss",
			Audience:             "aud",
			ActiveKID:            "k1",
			Keys:                 map[string]Secret{"k1": strongA},
			IssueLimitPerIP:      1,
			IssueLimitPerInstall: 2,
			IssueLimitWindow:     3 * time.Second,
		},
		AI: AI{Provider: "local", Providers: []string{"local"}, LimitPerInstall: 4, LimitPerIP: 5, LimitWindow: 6 * time.Second,
			Retry:           Retry{MaxAttempts: 10, MaxDelay: 1250 * time.Millisecond, MaxTotalDelay: 3 * time.Second, JitterFactor: 1},
			BreakerCooldown: 7 * time.Second,
			MaxInFlight:     9,
		},
		MetricsAddr:        "0.0.0.0:9100",
		MetricsAddrSet:     true,
		ShutdownReadyDelay: 3 * time.Second,
		DocsEnabled:        true,
		Anthropic: Anthropic{
			APIKey:  "sk-ant",
			BaseURL: "http://127.0.0.1:9/",
			Model:   "claude-x",
			Version: "2024-01-01",
			Timeout: 1500 * time.Millisecond,
		},
		Redis: Redis{URL: "redis://:pw@cache:6379/0", Timeout: 20 * time.Millisecond},
		OpenAI: OpenAI{
			APIKey:         "sk-abc",
			BaseURL:        "http://localhost:11434/v1",
			Model:          "llama3",
			Timeout:        500 * time.Millisecond,
			ResponseFormat: "json_object",
		},
		Usage: Usage{DBPath: "/var/lib/offload/u.db", DatabaseURL: "postgres://u:pw@db.internal/offload",
			DefaultFeatureQuota: 0, EnforceQuota: true,
			ReconcileLimitPerInstall: 11, ReconcileLimitPerIP: 12, ReconcileLimitWindow: 13 * time.Second,
			MaxFeaturesPerInstall: 14, WriteTimeout: 250 * time.Millisecond},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if string(c.Session.Keys["k1"]) != strongA || string(c.OpenAI.APIKey) != "sk-abc" {
		t.Error("secrets not trimmed to their exact values")
	}
	if !c.ProductionLike() {
		t.Error("staging is not production-like")
	}
}

func TestLoadRejectsBadValues(t *testing.T) {
	tests := []struct {
		name, value string
	}{
		{EnvSessionTTL, "abc"},
		{EnvSessionTTL, "0"},
		{EnvSessionTTL, "1.5"},
		{EnvSessionTTL, "99999999999999"}, // would overflow time.Duration
		{EnvSessionLimitPerIP, "0"},
		{EnvSessionLimitPerIP, "x"},
		{EnvSessionLimitPerInstall, "-1"},
		{EnvSessionLimitWindow, "0"},
		{EnvAILimitPerInstall, "0"},
		{EnvAILimitPerIP, "1e3"},
		{EnvAILimitWindow, "0"},
		{EnvRetryMaxAttempts, "0"},
		{EnvRetryMaxAttempts, "11"},
		{EnvRetryMaxAttempts, "three"},
		{EnvRetryBaseDelay, "-0.1"},
		{EnvRetryBaseDelay, "NaN"},
		{EnvRetryMaxDelay, "soon"},
		{EnvRetryMaxTotalDelay, "-1"},
		{EnvRetryMaxTotalDelay, "Inf"},
		{EnvRetryJitterFactor, "1.01"},
		{EnvRetryJitterFactor, "-0.5"},
		{EnvRetryJitterFactor, "nan"},
		{EnvMaxInputChars, "0"},
		{EnvMaxInputChars, "4k"},
		{EnvDefaultFeatureQuota, "-1"},
		{EnvDefaultFeatureQuota, "ten"},
		{EnvMaxBodyBytes, "0"},
		{EnvMaxBodyBytes, "9223372036854775808"},
		{EnvShutdownTimeout, "-1"},
		{EnvShutdownTimeout, "x"},
		{EnvOpenAITimeout, "0"},
		{EnvOpenAITimeout, "-3"},
		{EnvEnforceQuota, "maybe"},
		{EnvEnforceQuota, "on"},
		{EnvOpenAIResponseFormat, "text"},
		{EnvAIProvider, "gemini"},
		{EnvAIProvider, "local,openai"},
		{EnvAIProvider, "openai,openai"},
		{EnvAIProvider, " , "},
		{EnvMetricsAddr, "9464"},
		{EnvDatabaseURL, "mysql://x"},
		{EnvRedisURL, "http://cache"},
		{EnvUsageWriteTimeout, "0"},
		{EnvUsageMaxFeaturesPerInstall, "0"},
		{EnvUsageRetentionDays, "-1"},
		{EnvAIMaxInFlight, "0"},
		{EnvAnthropicBaseURL, "https://user:pw@api.anthropic.com"},
		{EnvTrustedProxies, "10.0.0.0/33"},
		{EnvTrustedProxies, "10.0.0.1, example.com"},
		{EnvTrustedProxies, "fe80::1%eth0"},
		{EnvOpenAIBaseURL, "ftp://example.com"},
		{EnvOpenAIBaseURL, "api.openai.com/v1"},
		{EnvOpenAIBaseURL, "http://"},
		{EnvOpenAIBaseURL, "https://user:pw@llm.example/v1"},
		{EnvListenAddr, "8080"},
		{EnvSessionIssuer, "   "},
		{EnvSessionAudience, " \t"},
		{EnvSessionActiveKID, "  "},
		{EnvOpenAIModel, " "},
		{EnvUsageDBPath, "  "},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, err := Load(env(map[string]string{tt.name: tt.value}))
			if got := varNames(t, err); !slices.Equal(got, []string{tt.name}) {
				t.Fatalf("error names %v, want [%s] (err: %v)", got, tt.name, err)
			}
		})
	}
}

func TestLoadAcceptsBoundaries(t *testing.T) {
	tests := []struct {
		name, value string
	}{
		{EnvSessionTTL, "1"},
		{EnvRetryMaxAttempts, "1"},
		{EnvRetryMaxAttempts, "10"},
		{EnvRetryJitterFactor, "0"},
		{EnvRetryBaseDelay, "0"},
		{EnvShutdownTimeout, "0"},
		{EnvOpenAITimeout, "0.001"},
		{EnvDefaultFeatureQuota, "0"},
		{EnvMaxBodyBytes, "1"},
		{EnvEnforceQuota, "FALSE"},
		{EnvEnforceQuota, "0"},
		{EnvEnforceQuota, "no"},
		{EnvOpenAIResponseFormat, "JSON_SCHEMA"},
		{EnvTrustedProxies, ","},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			if _, err := Load(env(map[string]string{tt.name: tt.value})); err != nil {
				t.Fatalf("Load = %v", err)
			}
		})
	}
}

func TestLoadReportsEveryInvalidVariable(t *testing.T) {
	_, err := Load(env(map[string]string{
		EnvSessionTTL:         "0",
		EnvRetryMaxAttempts:   "99",
		EnvEnforceQuota:       "perhaps",
		EnvSessionSigningKeys: "{",
	}))
	got := varNames(t, err)
	want := []string{EnvSessionTTL, EnvSessionSigningKeys, EnvRetryMaxAttempts, EnvEnforceQuota}
	if !slices.Equal(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	if !strings.Contains(err.Error(), `OFFLOAD_SESSION_TTL_SECONDS: must be an integer ≥ 1 (got "0")`) {
		t.Errorf("message does not explain the TTL problem: %v", err)
	}
}

func TestLoadSigningKeys(t *testing.T) {
	tests := []struct {
		desc    string
		env     map[string]string
		errVars []string
		keys    map[string]Secret
	}{
		{
			desc: "keys cover active kid",
			env:  map[string]string{EnvSessionSigningKeys: `{" old ":" k-old ","new":"k-new"}`, EnvSessionActiveKID: "new"},
			keys: map[string]Secret{"old": "k-old", "new": "k-new"},
		},
		{
			desc: "empty object is unset",
			env:  map[string]string{EnvSessionSigningKeys: `{}`, EnvSessionSecret: "dev"},
			keys: map[string]Secret{"v2-default": "dev"},
		},
		{
			desc:    "active kid not in keys",
			env:     map[string]string{EnvSessionSigningKeys: `{"old":"k"}`, EnvSessionSecret: "s"},
			errVars: []string{EnvSessionActiveKID},
		},
		{desc: "bad JSON", env: map[string]string{EnvSessionSigningKeys: `{"a":`}, errVars: []string{EnvSessionSigningKeys}},
		{desc: "array", env: map[string]string{EnvSessionSigningKeys: `["a"]`}, errVars: []string{EnvSessionSigningKeys}},
		{desc: "string", env: map[string]string{EnvSessionSigningKeys: `"a"`}, errVars: []string{EnvSessionSigningKeys}},
		{desc: "null", env: map[string]string{EnvSessionSigningKeys: `null`}, errVars: []string{EnvSessionSigningKeys}},
		{desc: "number value", env: map[string]string{EnvSessionSigningKeys: `{"v2-default":1}`}, errVars: []string{EnvSessionSigningKeys}},
		{desc: "object value", env: map[string]string{EnvSessionSigningKeys: `{"v2-default":{"k":"v"}}`}, errVars: []string{EnvSessionSigningKeys}},
		{desc: "empty kid", env: map[string]string{EnvSessionSigningKeys: `{" ":"key"}`}, errVars: []string{EnvSessionSigningKeys}},
		{desc: "empty key", env: map[string]string{EnvSessionSigningKeys: `{"v2-default":"  "}`}, errVars: []string{EnvSessionSigningKeys}},
		{desc: "duplicate kid", env: map[string]string{EnvSessionSigningKeys: `{"v2-default":"a","v2-default ":"b"}`}, errVars: []string{EnvSessionSigningKeys}},
		{desc: "trailing data", env: map[string]string{EnvSessionSigningKeys: `{"v2-default":"a"} {}`}, errVars: []string{EnvSessionSigningKeys}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c, err := Load(env(tt.env))
			if got := varNames(t, err); !slices.Equal(got, tt.errVars) {
				t.Fatalf("error names %v, want %v (err: %v)", got, tt.errVars, err)
			}
			if err == nil && !reflect.DeepEqual(c.Session.Keys, tt.keys) {
				t.Errorf("keys %v, want %v", c.Session.KeyBytes(), tt.keys)
			}
			if err == nil && c.Session.SecretGenerated {
				t.Error("SecretGenerated with explicit key material")
			}
		})
	}
}

func TestLoadProductionSecretPolicy(t *testing.T) {
	tests := []struct {
		desc    string
		env     map[string]string
		errVars []string
	}{
		{desc: "strong secret", env: prodEnv},
		{desc: "missing secret", env: with(prodEnv, EnvSessionSecret, ""), errVars: []string{EnvSessionSecret}},
		{desc: "blank secret", env: with(prodEnv, EnvSessionSecret, "    "), errVars: []string{EnvSessionSecret}},
		{desc: "31 chars", env: with(prodEnv, EnvSessionSecret, strongA[:31]), errVars: []string{EnvSessionSecret}},
		{desc: "32 chars padded with spaces to look longer", env: with(prodEnv, EnvSessionSecret, "  "+strongA[:30]+"  "), errVars: []string{EnvSessionSecret}},
		{desc: "5 distinct chars", env: with(prodEnv, EnvSessionSecret, strings.Repeat("abcde", 8)), errVars: []string{EnvSessionSecret}},
		{desc: "6 distinct chars", env: with(prodEnv, EnvSessionSecret, strings.Repeat("abcdef", 6))},
		{desc: "placeholder changeme", env: with(prodEnv, EnvSessionSecret, "changeme"), errVars: []string{EnvSessionSecret}},
		{desc: "placeholder SECRET", env: with(prodEnv, EnvSessionSecret, "SECRET"), errVars: []string{EnvSessionSecret}},
		{desc: "placeholder repeated", env: with(prodEnv, EnvSessionSecret, "changemechangemechangemechangeme"), errVars: []string{EnvSessionSecret}},
		{desc: "placeholder repeated with separators", env: with(prodEnv, EnvSessionSecret, "Dev-Secret-Change-Me/dev-secret-change-me"), errVars: []string{EnvSessionSecret}},
		{desc: "placeholder padded", env: with(prodEnv, EnvSessionSecret, "test-secret-000000000000000000000000"), errVars: []string{EnvSessionSecret}},
		{desc: "password mixed", env: with(prodEnv, EnvSessionSecret, "PasswordPASSWORDpasswordPassword1"), errVars: []string{EnvSessionSecret}},
		{desc: "long secret containing a placeholder word", env: with(prodEnv, EnvSessionSecret, "secret-"+strongB)},
		{desc: "multi-byte characters counted once", env: with(prodEnv, EnvSessionSecret, strings.Repeat("äöüßéñ", 5)), errVars: []string{EnvSessionSecret}},
		{desc: "multi-byte characters, 36 of them", env: with(prodEnv, EnvSessionSecret, strings.Repeat("äöüßéñ", 6))},
		{
			desc: "signing keys cover active kid without secret",
			env:  with(prodEnv, EnvSessionSecret, "", EnvSessionSigningKeys, `{"a":"`+strongA+`","b":"`+strongB+`"}`, EnvSessionActiveKID, "b"),
		},
		{
			desc:    "weak signing key",
			env:     with(prodEnv, EnvSessionSigningKeys, `{"a":"`+strongA+`","old":"changeme"}`, EnvSessionActiveKID, "a"),
			errVars: []string{EnvSessionSigningKeys},
		},
		{
			desc:    "two weak signing keys, both reported",
			env:     with(prodEnv, EnvSessionSigningKeys, `{"a":"short","b":"`+strings.Repeat("ab", 20)+`"}`, EnvSessionActiveKID, "a"),
			errVars: []string{EnvSessionSigningKeys, EnvSessionSigningKeys},
		},
		{
			desc:    "weak unused secret next to strong keys",
			env:     with(prodEnv, EnvSessionSecret, "password", EnvSessionSigningKeys, `{"a":"`+strongA+`"}`, EnvSessionActiveKID, "a"),
			errVars: []string{EnvSessionSecret},
		},
		{desc: "dev accepts a weak secret", env: map[string]string{EnvEnvironment: "Test", EnvSessionSecret: "changeme"}},
		{desc: "dev accepts weak signing keys", env: map[string]string{EnvSessionSigningKeys: `{"v2-default":"x"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c, err := Load(env(tt.env))
			if got := varNames(t, err); !slices.Equal(got, tt.errVars) {
				t.Fatalf("error names %v, want %v (err: %v)", got, tt.errVars, err)
			}
			if err == nil && c.Session.SecretGenerated {
				t.Error("random secret generated despite explicit key material")
			}
		})
	}
}

func TestLoadRandomDevSecretDiffersBetweenLoads(t *testing.T) {
	a, errA := Load(env(nil))
	b, errB := Load(env(nil))
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	ka, kb := a.Session.Keys["v2-default"], b.Session.Keys["v2-default"]
	if ka == kb || ka == "" {
		t.Fatal("two Loads produced the same development secret")
	}
	if secretProblem(string(ka)) != "" {
		t.Errorf("generated secret would fail the production policy: %s", secretProblem(string(ka)))
	}

	c, err := Load(env(map[string]string{EnvSessionSecret: "mine"}))
	if err != nil || c.Session.SecretGenerated || string(c.Session.Keys["v2-default"]) != "mine" {
		t.Errorf("explicit dev secret not used (err %v, generated %v)", err, c.Session.SecretGenerated)
	}
}

func TestLoadProvider(t *testing.T) {
	tests := []struct {
		desc    string
		env     map[string]string
		want    string
		errVars []string
		warn    []string // variables named by Warnings
	}{
		{desc: "dev without key", env: nil, want: "local"},
		{desc: "dev with key", env: map[string]string{EnvOpenAIAPIKey: "sk"}, want: "openai"},
		{desc: "dev openai without key is allowed", env: map[string]string{EnvAIProvider: "openai"}, want: "openai", warn: []string{EnvOpenAIAPIKey}},
		{desc: "dev local with key", env: map[string]string{EnvAIProvider: "local", EnvOpenAIAPIKey: "sk"}, want: "local"},
		{desc: "prod with key", env: prodEnv, want: "openai"},
		// As the existing deployment: it starts, warns, and answers 503.
		{desc: "prod without key defaults to openai and warns", env: with(prodEnv, EnvOpenAIAPIKey, ""), want: "openai", warn: []string{EnvOpenAIAPIKey}},
		{desc: "prod explicit openai without key", env: with(prodEnv, EnvOpenAIAPIKey, " ", EnvAIProvider, "OpenAI"), want: "openai", warn: []string{EnvOpenAIAPIKey}},
		{desc: "anthropic alone", env: map[string]string{EnvAIProvider: "anthropic", EnvAnthropicAPIKey: "k"}, want: "anthropic"},
		{desc: "anthropic key picks it", env: with(prodEnv, EnvOpenAIAPIKey, "", EnvAnthropicAPIKey, "k"), want: "anthropic"},
		{desc: "chain", env: map[string]string{EnvAIProvider: " OpenAI , anthropic,local ", EnvOpenAIAPIKey: "k"}, want: "openai,anthropic,local", warn: []string{EnvAnthropicAPIKey}},
		{desc: "chain without keys", env: with(prodEnv, EnvOpenAIAPIKey, "", EnvAIProvider, "openai,anthropic"), want: "openai,anthropic", warn: []string{EnvOpenAIAPIKey, EnvAnthropicAPIKey}},
		{desc: "prod explicit local without key", env: with(prodEnv, EnvOpenAIAPIKey, "", EnvAIProvider, "local"), want: "local"},
		{desc: "unknown provider", env: map[string]string{EnvAIProvider: "gemini"}, errVars: []string{EnvAIProvider}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c, err := Load(env(tt.env))
			if got := varNames(t, err); !slices.Equal(got, tt.errVars) {
				t.Fatalf("error names %v, want %v (err: %v)", got, tt.errVars, err)
			}
			if err == nil && c.AI.Provider != tt.want {
				t.Errorf("provider %q, want %q", c.AI.Provider, tt.want)
			}
			var warned []string
			for _, w := range c.Warnings {
				warned = append(warned, strings.Fields(w)[0])
			}
			if !slices.Equal(warned, tt.warn) {
				t.Errorf("warnings %q, want ones naming %v", c.Warnings, tt.warn)
			}
		})
	}
}

func TestLoadRetryAliases(t *testing.T) {
	tests := []struct {
		desc    string
		env     map[string]string
		want    Retry
		errVars []string
	}{
		{"defaults", nil, defaultRetry, nil},
		{"new names", map[string]string{EnvAIRetryMaxAttempts: "5", EnvAIRetryBaseDelay: "0.5", EnvAIRetryMaxDelay: "3", EnvAIRetryMaxTotalDelay: "6", EnvAIRetryJitterFactor: "0"},
			Retry{MaxAttempts: 5, BaseDelay: 500 * time.Millisecond, MaxDelay: 3 * time.Second, MaxTotalDelay: 6 * time.Second}, nil},
		{"old names", map[string]string{EnvRetryMaxAttempts: "2", EnvRetryJitterFactor: "0.5"},
			Retry{MaxAttempts: 2, BaseDelay: 250 * time.Millisecond, MaxDelay: 2 * time.Second, MaxTotalDelay: 4 * time.Second, JitterFactor: 0.5}, nil},
		{"both, same value", map[string]string{EnvRetryMaxAttempts: "4", EnvAIRetryMaxAttempts: " 4 ", EnvRetryMaxDelay: "1", EnvAIRetryMaxDelay: "1.0"},
			Retry{MaxAttempts: 4, BaseDelay: 250 * time.Millisecond, MaxDelay: time.Second, MaxTotalDelay: 4 * time.Second, JitterFactor: 0.25}, nil},
		{"both, different", map[string]string{EnvRetryMaxAttempts: "4", EnvAIRetryMaxAttempts: "5"}, Retry{}, []string{EnvAIRetryMaxAttempts}},
		{"new name, bad value", map[string]string{EnvAIRetryMaxAttempts: "11"}, Retry{}, []string{EnvAIRetryMaxAttempts}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c, err := Load(env(tt.env))
			if got := varNames(t, err); !slices.Equal(got, tt.errVars) {
				t.Fatalf("error names %v, want %v (err: %v)", got, tt.errVars, err)
			}
			if err != nil {
				if tt.desc == "both, different" && !strings.Contains(err.Error(), EnvRetryMaxAttempts) {
					t.Errorf("error %q does not name both variables", err)
				}
				return
			}
			if c.AI.Retry != tt.want {
				t.Errorf("retry %+v, want %+v", c.AI.Retry, tt.want)
			}
		})
	}
}

func TestLoadMetricsAddr(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want string
		set  bool
	}{
		{"", DefaultMetricsAddr, false},
		{"off", "", true},
		{"None", "", true},
		{"127.0.0.1:0", "127.0.0.1:0", true},
	} {
		c, err := Load(env(map[string]string{EnvMetricsAddr: tt.raw}))
		if err != nil || c.MetricsAddr != tt.want || c.MetricsAddrSet != tt.set {
			t.Errorf("%q: addr %q set %v err %v, want %q %v", tt.raw, c.MetricsAddr, c.MetricsAddrSet, err, tt.want, tt.set)
		}
	}
	c, _ := Load(env(prodEnv))
	if c.DocsEnabled {
		t.Error("docs are on by default in production")
	}
}

func TestLoadTrustedProxies(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"10.0.0.0/8", []string{"10.0.0.0/8"}},
		{"10.1.2.3/8", []string{"10.0.0.0/8"}}, // masked
		{" 192.168.0.1 ", []string{"192.168.0.1/32"}},
		{"2001:db8::1", []string{"2001:db8::1/128"}},
		{"2001:db8::/32,172.16.0.0/12", []string{"2001:db8::/32", "172.16.0.0/12"}},
		{"::ffff:10.0.0.1", []string{"10.0.0.1/32"}},
		{"::ffff:10.0.0.0/104", []string{"10.0.0.0/8"}},
		{"10.0.0.1,10.0.0.1/32,,", []string{"10.0.0.1/32"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := Load(env(map[string]string{EnvTrustedProxies: tt.in}))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range c.TrustedProxies {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIsProductionLike(t *testing.T) {
	for env, want := range map[string]bool{
		"": false, "dev": false, "Development": false, " LOCAL ": false, "test": false, "Testing": false,
		"production": true, "prod": true, "staging": true, "qa": true, "developer": true,
	} {
		if got := IsProductionLike(env); got != want {
			t.Errorf("IsProductionLike(%q) = %v, want %v", env, got, want)
		}
	}
}
