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
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/clientip"
	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/httpapi"
	"github.com/offload-app/offload/local"
	"github.com/offload-app/offload/openai"
	"github.com/offload-app/offload/ratelimit"
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

// WithUsageStore replaces the SQLite usage store. The App closes it.
func WithUsageStore(s offload.UsageStore) Option { return func(o *options) { o.store = s } }

// New wires the server for cfg. It opens the usage store, so a corrupt or
// unreadable database stops the process here, before it listens.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, opts ...Option) (*App, error) {
	o := options{clock: offload.SystemClock{}}
	for _, opt := range opts {
		opt(&o)
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

	provider := o.provider
	if provider == nil {
		switch cfg.AI.Provider {
		case config.ProviderLocal:
			provider = local.Provider{}
		default:
			provider = openai.New(cfg.OpenAI, logger)
		}
	}

	store, storeName := o.store, "injected"
	if store == nil {
		storeName = "sqlite:" + cfg.Usage.DBPath
		s, err := sqlite.Open(ctx, cfg.Usage.DBPath)
		if err != nil {
			return nil, fmt.Errorf("usage store %s: %w", cfg.Usage.DBPath, err)
		}
		store = s
	}

	deadline := ProviderBudget(cfg.OpenAI.Retry, cfg.OpenAI.Timeout)
	resolver := clientip.New(cfg.TrustedProxies)
	handler := httpapi.NewServer(httpapi.Deps{
		Logger:       logger,
		Clock:        o.clock,
		Environment:  cfg.Environment,
		BuildVersion: cfg.BuildVersion,
		Tokens:       tokens,
		ClientIP:     resolver.ClientIP,
		SessionLimits: httpapi.Limits{
			PerIP:      ratelimit.NewFixedWindow(cfg.Session.IssueLimitPerIP, cfg.Session.IssueLimitWindow, o.clock),
			PerInstall: ratelimit.NewFixedWindow(cfg.Session.IssueLimitPerInstall, cfg.Session.IssueLimitWindow, o.clock),
		},
		AILimits: httpapi.Limits{
			PerIP:      ratelimit.NewFixedWindow(cfg.AI.LimitPerIP, cfg.AI.LimitWindow, o.clock),
			PerInstall: ratelimit.NewFixedWindow(cfg.AI.LimitPerInstall, cfg.AI.LimitWindow, o.clock),
		},
		Provider:         provider,
		ProviderDeadline: deadline,
		Store:            store,
		FeatureQuota:     cfg.Usage.DefaultFeatureQuota,
		EnforceQuota:     cfg.Usage.EnforceQuota,
		MaxBodyBytes:     cfg.MaxBodyBytes,
		MaxInputChars:    cfg.MaxInputChars,
	})
	return &App{handler: handler, storeName: storeName, store: store, provider: provider, deadline: deadline, logger: logger}, nil
}

// ProviderBudget is the longest one provider call may take: every attempt
// timing out, plus the whole retry sleep budget.
func ProviderBudget(r config.Retry, perAttempt time.Duration) time.Duration {
	return time.Duration(r.MaxAttempts)*perAttempt + r.MaxTotalDelay
}

// Handler is the API.
func (a *App) Handler() http.Handler { return a.handler }

// ProviderName names the breakdown provider, for the startup log.
func (a *App) ProviderName() string { return a.provider.Name() }

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
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
}

// Close releases the store (flushing pending usage writes).
func (a *App) Close() error {
	if err := a.store.Close(); err != nil {
		return errors.Join(errors.New("closing usage store"), err)
	}
	return nil
}
