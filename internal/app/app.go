// Package app wires the server from a config.Config: the one place that
// knows which implementation backs each domain interface. cmd/offload-api
// and cmd/offload-bench both build the server through it, so the benchmark
// measures exactly what production runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/anthropic"
	"github.com/offload-app/offload/clientip"
	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/failover"
	"github.com/offload-app/offload/httpapi"
	"github.com/offload-app/offload/local"
	"github.com/offload-app/offload/openai"
	"github.com/offload-app/offload/openapi"
	"github.com/offload-app/offload/postgres"
	"github.com/offload-app/offload/prometheus"
	"github.com/offload-app/offload/ratelimit"
	"github.com/offload-app/offload/redis"
	"github.com/offload-app/offload/sqlite"
	"github.com/offload-app/offload/token"
)

// App is a wired server: its handler and the resources to release on Close.
type App struct {
	handler   http.Handler
	storeName string
	store     offload.UsageStore
	provider  offload.Provider
	deadline  time.Duration // longest a request may take (provider budget)
	logger    *slog.Logger
	metrics   *prometheus.Metrics // nil when metrics are off
	clock     offload.Clock
	retention time.Duration
	draining  atomic.Bool
	closers   []func() error
	// limitsName says where rate limits are counted ("in-process", "redis").
	limitsName string
}

// Option changes how New wires the server; tests use them to inject fakes.
type Option func(*options)

type options struct {
	clock    offload.Clock
	provider offload.Provider
	store    offload.UsageStore
}

// WithClock replaces the system clock (token times, rate-limit windows).
func WithClock(c offload.Clock) Option { return func(o *options) { o.clock = c } }

// WithProvider replaces the configured breakdown provider.
func WithProvider(p offload.Provider) Option { return func(o *options) { o.provider = p } }

// WithUsageStore replaces the configured usage store. The App closes it.
func WithUsageStore(s offload.UsageStore) Option { return func(o *options) { o.store = s } }

// New wires the server for cfg. It opens the usage store (migrating it), so
// call it only once the start will go on: a corrupt or unreadable database
// stops the process here, before it serves.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, opts ...Option) (_ *App, err error) {
	o := options{clock: offload.SystemClock{}}
	for _, opt := range opts {
		opt(&o)
	}
	a := &App{logger: logger, clock: o.clock, retention: cfg.Usage.Retention, limitsName: "in-process"}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	var metrics offload.Metrics = offload.NopMetrics{}
	if cfg.MetricsAddr != "" {
		a.metrics = prometheus.New(cfg.BuildVersion)
		metrics = a.metrics
	}

	tokens, err := token.New(token.Options{
		Issuer:    cfg.Session.Issuer,
		Audience:  cfg.Session.Audience,
		ActiveKID: cfg.Session.ActiveKID,
		Keys:      cfg.Session.KeyBytes(),
		TTL:       cfg.Session.TTL,
	})
	if err != nil {
		return nil, fmt.Errorf("session tokens: %w", err)
	}
	for _, w := range cfg.Warnings {
		logger.Warn("configuration", slog.String("warning", w))
	}

	a.provider = o.provider
	if a.provider == nil {
		if a.provider, err = newProvider(cfg, logger, metrics, o.clock); err != nil {
			return nil, err
		}
	}

	a.store, a.storeName = o.store, "injected"
	if a.store == nil && cfg.Usage.DatabaseURL != "" {
		// PostgreSQL instead of SQLite, never both: no SQLite file is made.
		a.storeName = "postgres:" + postgres.Redact(string(cfg.Usage.DatabaseURL))
		s, err := postgres.Open(ctx, string(cfg.Usage.DatabaseURL), postgres.WithClock(o.clock), postgres.WithMetrics(metrics),
			postgres.WithMaxFeatures(cfg.Usage.MaxFeaturesPerInstall),
			postgres.WithWriteTimeout(cfg.Usage.WriteTimeout), postgres.WithCloseTimeout(cfg.Usage.WriteTimeout))
		if err != nil {
			return nil, fmt.Errorf("usage store %s (OFFLOAD_DATABASE_URL): %w", a.storeName, err)
		}
		a.store = s
	}
	if a.store == nil {
		a.storeName = "sqlite:" + cfg.Usage.DBPath
		s, err := sqlite.Open(ctx, cfg.Usage.DBPath, sqlite.WithClock(o.clock), sqlite.WithMetrics(metrics),
			sqlite.WithMaxFeatures(cfg.Usage.MaxFeaturesPerInstall), sqlite.WithCloseTimeout(cfg.Usage.WriteTimeout))
		if err != nil {
			return nil, fmt.Errorf("usage store %s: %w", cfg.Usage.DBPath, err)
		}
		a.store = s
	}
	a.closers = append(a.closers, a.store.Close)

	checks := []offload.HealthCheck{{Name: "usage_store", Critical: true, Probe: a.store.Check}}

	// With Redis every limiter is shared by the instances; the in-process
	// ones answer while Redis fails, so they are made either way.
	var shared *redis.Client
	if cfg.Redis.URL != "" {
		shared, err = redis.Open(ctx, string(cfg.Redis.URL),
			redis.WithKeySecret(redis.DeriveKeySecret([]byte(cfg.Session.Keys[cfg.Session.ActiveKID]))),
			redis.WithTimeout(cfg.Redis.Timeout),
			redis.WithLogger(logger),
			redis.WithMetrics(metrics))
		if err != nil {
			return nil, fmt.Errorf("redis (OFFLOAD_REDIS_URL): %w", err)
		}
		a.closers = append(a.closers, shared.Close)
		checks = append(checks, offload.HealthCheck{Name: "redis", Probe: shared.Check})
		a.limitsName = "redis"
	}
	limiters := map[string]*ratelimit.FixedWindow{}
	limit := func(name string, n int, window time.Duration) offload.Limiter {
		l := ratelimit.NewFixedWindow(n, window, o.clock)
		limiters[name] = l
		if shared != nil {
			return shared.Limiter(name, n, window, l)
		}
		return l
	}
	limits := func(name string, perIP, perInstall int, window time.Duration) httpapi.Limits {
		return httpapi.Limits{Name: name, PerIP: limit(name+"_ip", perIP, window), PerInstall: limit(name+"_install", perInstall, window)}
	}
	sessionLimits := limits("session", cfg.Session.IssueLimitPerIP, cfg.Session.IssueLimitPerInstall, cfg.Session.IssueLimitWindow)
	aiLimits := limits("ai", cfg.AI.LimitPerIP, cfg.AI.LimitPerInstall, cfg.AI.LimitWindow)
	usageLimits := limits("usage", cfg.Usage.ReconcileLimitPerIP, cfg.Usage.ReconcileLimitPerInstall, cfg.Usage.ReconcileLimitWindow)
	if a.metrics != nil {
		held := map[string]func() float64{}
		for name, l := range limiters {
			held[name] = func() float64 { return float64(l.Len()) }
		}
		a.metrics.GaugeFunc("offload_rate_limiter_keys", "Keys held by an in-process rate limiter (current window).", "limiter", held)
	}

	var docs http.Handler
	if cfg.DocsEnabled {
		docs = openapi.DocsHandler(httpapi.NotFoundHandler())
	}

	a.deadline = ProviderBudget(cfg.AI.Retry, max(cfg.OpenAI.Timeout, cfg.Anthropic.Timeout))
	resolver := clientip.New(cfg.TrustedProxies)
	a.handler = httpapi.NewServer(httpapi.Deps{
		Logger:            logger,
		Clock:             o.clock,
		Metrics:           metrics,
		Environment:       cfg.Environment,
		BuildVersion:      cfg.BuildVersion,
		Tokens:            tokens,
		ClientIP:          resolver.ClientIP,
		SessionLimits:     sessionLimits,
		AILimits:          aiLimits,
		UsageLimits:       usageLimits,
		Provider:          a.provider,
		ProviderDeadline:  a.deadline,
		MaxInFlight:       cfg.AI.MaxInFlight,
		Store:             a.store,
		FeatureQuota:      cfg.Usage.DefaultFeatureQuota,
		EnforceQuota:      cfg.Usage.EnforceQuota,
		UsageWriteTimeout: cfg.Usage.WriteTimeout,
		Checks:            checks,
		Draining:          a.draining.Load,
		OpenAPI:           openapi.OpenAPIHandler(),
		Docs:              docs,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		MaxInputChars:     cfg.MaxInputChars,
	})
	return a, nil
}

// newProvider builds the configured provider chain. Even one provider is
// wrapped in a chain (it then behaves exactly as the provider alone), so
// provider metrics exist either way. A provider without a key is left out
// (config.Load has warned about it) unless it is the last one, which is
// always kept so a keyless deployment answers 503 provider_unavailable.
func newProvider(cfg config.Config, logger *slog.Logger, m offload.Metrics, clock offload.Clock) (offload.Provider, error) {
	var chain []offload.Provider
	for i, name := range cfg.AI.Providers {
		last := i == len(cfg.AI.Providers)-1
		switch name {
		case config.ProviderLocal:
			chain = append(chain, local.Provider{})
		case config.ProviderAnthropic:
			if cfg.Anthropic.APIKey == "" && !last {
				continue
			}
			chain = append(chain, anthropic.New(anthropic.Options{
				APIKey:  string(cfg.Anthropic.APIKey),
				BaseURL: cfg.Anthropic.BaseURL,
				Model:   cfg.Anthropic.Model,
				Version: cfg.Anthropic.Version,
				Timeout: cfg.Anthropic.Timeout,
				Retry:   cfg.AI.Retry,
				// One connection per admitted breakdown, as for OpenAI.
				MaxConns: cfg.AI.MaxInFlight,
				Logger:   logger,
			}))
		default:
			if cfg.OpenAI.APIKey == "" && !last {
				continue
			}
			p, err := openai.New(openai.Options{
				APIKey:         string(cfg.OpenAI.APIKey),
				BaseURL:        cfg.OpenAI.BaseURL,
				Model:          cfg.OpenAI.Model,
				Timeout:        cfg.OpenAI.Timeout,
				ResponseFormat: openai.ResponseFormat(cfg.OpenAI.ResponseFormat),
				Retry:          cfg.AI.Retry,
				// The pool holds one connection per admitted breakdown:
				// no queueing in the transport, no churn under load.
				MaxConns: cfg.AI.MaxInFlight,
				Logger:   logger,
			})
			if err != nil {
				return nil, fmt.Errorf("openai provider: %w", err)
			}
			chain = append(chain, p)
		}
	}
	c, err := failover.New(chain, failover.Options{Cooldown: cfg.AI.BreakerCooldown, Clock: clock, Metrics: m, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("provider chain (OFFLOAD_AI_PROVIDER): %w", err)
	}
	return c, nil
}

// ProviderBudget is the longest one provider call may take: every attempt
// timing out, plus the whole retry sleep budget.
func ProviderBudget(r config.Retry, perAttempt time.Duration) time.Duration {
	return time.Duration(r.MaxAttempts)*perAttempt + r.MaxTotalDelay
}

// Handler is the API.
func (a *App) Handler() http.Handler { return a.handler }

// MetricsHandler serves /metrics for the metrics listener; nil when
// metrics are off.
func (a *App) MetricsHandler() http.Handler {
	if a.metrics == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	return mux
}

// StartDrain turns /readyz 503, so load balancers stop sending new
// requests before the listener closes.
func (a *App) StartDrain() { a.draining.Store(true) }

// ProviderName names the breakdown provider, for the startup log.
func (a *App) ProviderName() string { return a.provider.Name() }

// LimitsName says where rate limits are counted, for the startup log.
func (a *App) LimitsName() string { return a.limitsName }

// StoreName says which usage store backs the server, for the startup log.
func (a *App) StoreName() string { return a.storeName }

// Store is the usage store (the benchmark reads its batching stats).
func (a *App) Store() offload.UsageStore { return a.store }

// HTTPServer returns an http.Server for the API with the timeouts a public
// server needs. WriteTimeout covers the provider's whole retry budget, so a
// slow but successful breakdown is never cut off mid-answer.
func (a *App) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           a.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      a.deadline + 15*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		// "OPTIONS *" reaches our handler (and gets the envelope) instead
		// of net/http's bare 200.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
}

// Close releases the store (flushing pending usage writes) and every other
// resource New opened, in reverse order.
func (a *App) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	a.closers = nil
	if len(errs) > 0 {
		return errors.Join(append([]error{errors.New("closing usage store")}, errs...)...)
	}
	return nil
}
