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
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/internal/buildinfo"
	"github.com/offload-app/offload/redis"
)

func main() {
	app.TuneRuntime(os.Getenv)
	// The first SIGINT or SIGTERM starts the drain; a second one during the
	// drain ends the process at once. One buffered channel receives both,
	// so the second is never lost to a race with the first's handling.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sigs
		cancel()
		s := <-sigs
		fmt.Fprintln(os.Stderr, "offload-api: second signal; exiting without finishing the drain")
		code := 130
		if s == syscall.SIGTERM {
			code = 143
		}
		os.Exit(code)
	}()
	err := run(ctx, os.Args, getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "offload-api:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "offload-api:", err)
		os.Exit(1)
	}
}

// getenv is os.Getenv, except that OFFLOAD_METRICS_ADDR set to the empty
// string disables metrics (config.Load sees "" as unset otherwise).
func getenv(k string) string {
	if v, ok := os.LookupEnv(k); k == config.EnvMetricsAddr && ok && v == "" {
		return "off"
	}
	return os.Getenv(k)
}

// errUsage marks a command-line mistake: exit status 2, as flag does.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }
func (e *usageError) Unwrap() error { return errUsage }

const usageText = `Usage: offload-api [flags]
       offload-api usage copy --from STORE --to STORE

Runs the Offload backend API. Every setting is an OFFLOAD_* environment
variable (see README.md); with none it serves on 127.0.0.1:8080 with a
SQLite file under .offload-backend/.

Flags:
`

// run starts the server and blocks until ctx is done, then drains in-flight
// requests and closes the store. Configuration errors return before anything
// listens, and the store is opened (and migrated) only once the listeners
// are bound, so a start that fails leaves the database file untouched.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "usage" {
		return runUsage(ctx, args[2:], getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	// flag prints its own errors and usage; we print them, to the stream
	// each belongs on (help to stdout, mistakes to stderr).
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", "", "listen address (overrides OFFLOAD_LISTEN_ADDR)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil
		}
		return &usageError{err.Error() + " (see offload-api --help)"}
	}
	if *showVersion {
		fmt.Fprintln(stdout, buildinfo.Line("offload-api"))
		return nil
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected arguments: %q (see offload-api --help)", fs.Args())}
	}

	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if *addr != "" {
		cfg.ListenAddr = *addr
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	// go-redis logs failed dials through one process-wide logger.
	redis.SetDriverLogger(logger)

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (OFFLOAD_LISTEN_ADDR): %w", cfg.ListenAddr, err)
	}
	defer ln.Close()
	var metricsLn net.Listener
	if cfg.MetricsAddr != "" {
		metricsLn, err = net.Listen("tcp", cfg.MetricsAddr)
		switch {
		case err != nil && cfg.MetricsAddrSet:
			return fmt.Errorf("listen on %s (OFFLOAD_METRICS_ADDR): %w", cfg.MetricsAddr, err)
		case err != nil:
			// The default address is best effort: a second instance on
			// one host still serves, without metrics.
			logger.Warn("metrics listener not started; set OFFLOAD_METRICS_ADDR to choose a free address",
				slog.String("addr", cfg.MetricsAddr), slog.String("error", err.Error()))
			cfg.MetricsAddr = ""
		default:
			defer metricsLn.Close()
		}
	}

	a, err := app.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	closeStore := sync.OnceValue(a.Close)
	defer closeStore()

	srv := a.HTTPServer(cfg.ListenAddr)
	// Request contexts derive from base, so cancelling it once the drain
	// time is up ends provider calls still running (a breakdown may take the
	// whole retry budget, far longer than the drain) and their handlers
	// return before the store closes. The cause tells handlers it was us.
	base, cancelBase := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelBase(nil)
	srv.BaseContext = func(net.Listener) context.Context { return base }

	var metricsSrv *http.Server
	serveErr := make(chan error, 2)
	if metricsLn != nil {
		metricsSrv = &http.Server{Handler: a.MetricsHandler(), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
		go func() {
			if err := metricsSrv.Serve(metricsLn); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("metrics: %w", err)
			}
		}()
	}
	retentionCtx, stopRetention := context.WithCancel(base)
	retentionDone := make(chan struct{})
	go func() { defer close(retentionDone); a.RunRetention(retentionCtx) }()
	defer func() { stopRetention(); <-retentionDone }()

	metricsAddr := ""
	if metricsLn != nil {
		metricsAddr = metricsLn.Addr().String()
	}
	logger.Info("offload-api started",
		slog.String("version", cfg.BuildVersion),
		slog.String("environment", cfg.Environment),
		slog.String("addr", ln.Addr().String()),
		slog.String("metrics_addr", metricsAddr),
		slog.String("store", a.StoreName()),
		slog.String("rate_limits", a.LimitsName()),
		slog.String("provider", a.ProviderName()),
		slog.Bool("random_session_secret", cfg.Session.SecretGenerated),
		slog.Int("gomaxprocs", runtime.GOMAXPROCS(0)),
		slog.Int64("memory_limit_bytes", memoryLimit()))

	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("serve: %w", err)
		}
	}()

	select {
	case err := <-serveErr:
		srv.Close()
		return errors.Join(err, closeStore())
	case <-ctx.Done():
	}
	// Readiness fails first, so load balancers stop routing here while the
	// listener still answers what they send in the meantime.
	a.StartDrain()
	logger.Info("shutting down", slog.Duration("ready_delay", cfg.ShutdownReadyDelay), slog.Duration("drain_timeout", cfg.ShutdownTimeout))
	if cfg.ShutdownReadyDelay > 0 {
		time.Sleep(cfg.ShutdownReadyDelay)
	}
	if err := drain(srv, cfg.ShutdownTimeout); err != nil {
		logger.Warn("drain timed out; cancelling in-flight requests")
		cancelBase(offload.ErrShuttingDown)
		if err := drain(srv, forcedDrain); err != nil {
			srv.Close()
			logger.Warn("requests abandoned at shutdown: their handlers did not return")
		}
	}
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	stopRetention()
	<-retentionDone
	if err := closeStore(); err != nil {
		logger.Warn("usage store closed with errors", slog.String("error", err.Error()))
		return err
	}
	logger.Info("stopped")
	return nil
}

// memoryLimit is the runtime's soft memory limit (app.TuneRuntime may have
// set one from the container's), 0 for none.
func memoryLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	return 0
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
