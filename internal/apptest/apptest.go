// Package apptest runs the real server in-process for the tests of the
// packages around it (client, the CLI, the server binary), against a fake
// OpenAI upstream, so they share one set-up instead of each wiring its own.
package apptest

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/openai/openaitest"
	"github.com/offload-app/offload/openapi/openapitest"
)

// Server is the real server behind httptest.
type Server struct {
	URL      string
	App      *app.App
	Upstream *openaitest.Server // the fake OpenAI the server calls
}

// Option changes how Start runs the server.
type Option func(*options)

type options struct {
	wrap   func(http.Handler) http.Handler
	logger *slog.Logger
}

// WithWrap puts a handler around the server's, e.g. to watch or drop requests.
func WithWrap(f func(http.Handler) http.Handler) Option { return func(o *options) { o.wrap = f } }

// WithLogger sends the server's logs to l instead of discarding them.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Env is the test configuration: a SQLite file in a temp dir and the OpenAI
// provider pointed at upstream with one attempt and no backoff, so provider
// failures are fast. env overrides it.
func Env(t testing.TB, upstream *openaitest.Server, env map[string]string) map[string]string {
	vars := map[string]string{
		"OFFLOAD_USAGE_DB_PATH":                   filepath.Join(t.TempDir(), "usage.sqlite3"),
		"OFFLOAD_AI_PROVIDER":                     "openai",
		"OFFLOAD_OPENAI_API_KEY":                  "test-key",
		"OFFLOAD_OPENAI_BASE_URL":                 upstream.URL,
		"OFFLOAD_OPENAI_RETRY_MAX_ATTEMPTS":       "1",
		"OFFLOAD_OPENAI_RETRY_BASE_DELAY_SECONDS": "0",
	}
	for k, v := range env {
		vars[k] = v
	}
	return vars
}

// Start runs the server for Env(env) until the test ends.
func Start(t testing.TB, env map[string]string, opts ...Option) *Server {
	t.Helper()
	o := options{wrap: func(h http.Handler) http.Handler { return h }, logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	up := openaitest.NewServer()
	t.Cleanup(up.Close)
	vars := Env(t, up, env)
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, o.logger)
	if err != nil {
		t.Fatal(err)
	}
	// Every answer the tests get is checked against the OpenAPI document.
	srv := httptest.NewServer(o.wrap(openapitest.Wrap(t, a.Handler())))
	t.Cleanup(func() {
		srv.Close()
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	return &Server{URL: srv.URL, App: a, Upstream: up}
}

// Buffer is a bytes.Buffer safe for concurrent writers: a log sink for a
// server under test, or a spinner's output.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
