// Command offload-api is the Offload backend server.
//
// With no configuration it runs in the development environment on
// 127.0.0.1:8080 with a random session secret, the local breakdown provider
// and an embedded SQLite usage store. See README.md for every OFFLOAD_*
// variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
)

func main() {
	app.TuneRuntime(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "offload-api:", err)
		os.Exit(1)
	}
}

// run starts the server and blocks until ctx is done, then drains in-flight
// requests and closes the store. Configuration errors return before anything
// listens.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "usage" {
		return runUsage(ctx, args[2:], getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "listen address (overrides OFFLOAD_LISTEN_ADDR)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}

	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if *addr != "" {
		cfg.ListenAddr = *addr
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))

	a, err := app.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	closeStore := sync.OnceValue(a.Close)
	defer closeStore()

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (OFFLOAD_LISTEN_ADDR): %w", cfg.ListenAddr, err)
	}
	srv := a.HTTPServer(cfg.ListenAddr)
	// Request contexts derive from base, so cancelling it once the drain
	// time is up ends provider calls still running (a breakdown may take the
	// whole retry budget, far longer than the drain) and their handlers
	// return before the store closes.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv.BaseContext = func(net.Listener) context.Context { return base }
	logger.Info("offload-api started",
		slog.String("version", cfg.BuildVersion),
		slog.String("environment", cfg.Environment),
		slog.String("addr", ln.Addr().String()),
		slog.String("store", a.StoreName()),
		slog.String("provider", a.ProviderName()),
		slog.Bool("random_session_secret", cfg.Session.SecretGenerated))

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", slog.Duration("drain_timeout", cfg.ShutdownTimeout))
	if err := drain(srv, cfg.ShutdownTimeout); err != nil {
		logger.Warn("drain timed out; cancelling in-flight requests")
		cancelBase()
		if err := drain(srv, forcedDrain); err != nil {
			srv.Close()
			return errors.Join(fmt.Errorf("shutdown: %w", err), closeStore())
		}
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(fmt.Errorf("serve: %w", err), closeStore())
	}
	if err := closeStore(); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// forcedDrain is how long handlers get to return once their requests have
// been cancelled; they only need to write an error answer.
const forcedDrain = 5 * time.Second

// drain stops accepting and waits up to d for in-flight requests to finish.
func drain(srv *http.Server, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return srv.Shutdown(ctx)
}
