// Command offload-bench measures every endpoint of the Offload server under
// keep-alive load and compares each with two references measured in the
// same run: the ceiling, a bare net/http handler writing a tiny JSON object,
// and, for breakdowns, the one-hop proxy floor, a bare handler that makes
// the same upstream call the server makes (the very bytes, to the same fake
// upstream) with a tuned keep-alive client and returns the answer.
//
// The fake OpenAI upstream runs in this process and counts the TCP
// connections it accepts, so a server whose upstream pool churns shows it.
// The servers are wired by internal/app exactly as cmd/offload-api wires
// them (SQLite file in a temp dir, real middleware, tokens and limiters,
// the real OpenAI adapter pointed at the fake, metrics on), a second one
// with the local provider. By default they run in this process with the
// load generator; with -server child each runs in a child process of its
// own (this binary again), started fresh for every endpoint, so the
// server's CPU time (getrusage), peak RSS (VmHWM) and goroutines are its
// own. With -target it loads an already running server instead.
//
//	go run ./cmd/offload-bench                       # every endpoint, -c 50, 10 s each
//	go run ./cmd/offload-bench -server child -client lean -endpoints floor,generate
//	go run ./cmd/offload-bench -server child -client lean -c 5000 -upstream-delay 1s -endpoints floor,generate
//	go run ./cmd/offload-bench -server child -client lean -endpoints overhead-open -upstream-delay 100ms -rate 1000
//	go run ./cmd/offload-bench -c 64 -endpoints reconcile,reconcile-hot,reconcile-many
//
// Reconcile runs three ways: one install per client (reconcile), every
// client on one install (reconcile-hot), and each request on another of
// -installs installs (reconcile-many). The gateway overhead runs, as LLM
// gateways publish it, send the same requests straight to the upstream,
// through the floor and through the server: one at a time (overhead), or
// open loop at -rate requests per second (overhead-open).
//
// The load generator shares the machine's cores with the server, so the
// figures are lower bounds of what the server alone could do. -client lean
// swaps the shared http.Client for a raw keep-alive connection per worker,
// which costs about half as much CPU per request and so leaves more to the
// server. On a machine shared with other work, the CPU time per request is
// steadier than requests/s; "machine" shows how busy the whole machine was
// meanwhile.
//
// Profiles: -cpuprofile covers the HTTP runs (in-process: this whole
// process; -server child: the server of each endpoint, over its measured
// window); -memprofile and -trace, in-process only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/internal/buildinfo"
)

func main() {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(childMain(role))
	}
	app.TuneRuntime(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "offload-bench:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// errUsage marks a command-line mistake: exit status 2, as flag does.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg + " (see offload-bench --help)" }
func (e *usageError) Unwrap() error { return errUsage }

// Load generator clients.
const (
	clientNetHTTP = "nethttp"
	clientLean    = "lean"
)

type options struct {
	concurrency   int
	duration      time.Duration
	warmup        time.Duration
	endpoints     []string
	upstreamDelay time.Duration
	target        string
	json          bool
	cpuProfile    string
	memProfile    string
	traceFile     string
	limiterKeys   int
	client        string
	server        string   // serverInProcess or serverChild
	serverEnv     []string // KEY=VALUE for the API server
	rate          float64  // overhead-open
	installs      int      // reconcile-many
	version       bool
	usage         func(io.Writer) // prints the flags, for --help
}

// parseFlags reads the command line. Its errors are usage errors (exit 2);
// -h and --help return flag.ErrHelp, with o.usage set to print the help.
func parseFlags(args []string, stderr io.Writer) (o options, err error) {
	defer func() {
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			err = &usageError{err.Error()}
		}
	}()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	// flag's own messages would go to stderr; run prints help to stdout.
	fs.SetOutput(io.Discard)
	o.usage = func(w io.Writer) {
		fmt.Fprintf(w, "Usage: %s [flags]\n       %s postgres [flags]\n\nLoads the Offload API (in-process, in child processes, or -target) and reports\nthroughput, latency and server costs per endpoint.\n\nFlags:\n", args[0], args[0])
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.IntVar(&o.concurrency, "c", 50, "concurrent clients (closed loop, keep-alive)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration per endpoint")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warmup per endpoint")
	eps := fs.String("endpoints", strings.Join(defaultEndpoints(), ","), "comma-separated endpoints to run (known: "+strings.Join(allEndpoints(), ", ")+")")
	fs.DurationVar(&o.upstreamDelay, "upstream-delay", 0, "simulated model latency of the fake OpenAI upstream")
	fs.StringVar(&o.target, "target", "", "base URL of a running server to load instead of the in-process one")
	fs.BoolVar(&o.json, "json", false, "print one JSON document instead of the table")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the HTTP runs to this file")
	fs.StringVar(&o.client, "client", clientNetHTTP, "load generator client: "+clientNetHTTP+" (one shared keep-alive http.Client) or "+clientLean+" (a raw keep-alive connection per worker, cheaper, HTTP/1.1 over plain TCP)")
	fs.StringVar(&o.traceFile, "trace", "", "write a runtime execution trace of the HTTP runs to this file (go tool trace)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile of the HTTP runs to this file")
	fs.IntVar(&o.limiterKeys, "limiter-keys", 1_000_000, "distinct install ids and IPs for the limiter memory benchmark")
	fs.StringVar(&o.server, "server", serverInProcess, "where the servers run: "+serverInProcess+" (this process) or "+serverChild+" (each in a child process of its own, started fresh per endpoint, so CPU, peak RSS and goroutines are the server's alone)")
	fs.Func("server-env", "KEY=VALUE set in the API server's environment (repeatable), e.g. GOGC=100 or OFFLOAD_METRICS_ADDR=off; Go runtime variables need -server child", func(kv string) error {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return errors.New("want KEY=VALUE")
		}
		o.serverEnv = append(o.serverEnv, kv)
		return nil
	})
	fs.Float64Var(&o.rate, "rate", 1000, "requests per second of the open-loop overhead run (overhead-open)")
	fs.IntVar(&o.installs, "installs", 10_000, "distinct installs of reconcile-many")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.version {
		return o, nil
	}
	switch {
	case o.concurrency < 1:
		return o, errors.New("-c must be at least 1")
	case o.duration <= 0:
		return o, errors.New("-d must be positive")
	case o.warmup < 0:
		return o, errors.New("-warmup must not be negative")
	case o.upstreamDelay < 0:
		return o, errors.New("-upstream-delay must not be negative")
	case o.limiterKeys < 1:
		return o, errors.New("-limiter-keys must be at least 1")
	case o.rate <= 0:
		return o, errors.New("-rate must be positive")
	case o.installs < 1:
		return o, errors.New("-installs must be at least 1")
	}
	if o.server != serverInProcess && o.server != serverChild {
		return o, fmt.Errorf("-server must be %s or %s", serverInProcess, serverChild)
	}
	if o.server == serverChild && (o.memProfile != "" || o.traceFile != "") {
		return o, errors.New("-memprofile and -trace cover this process only; use them without -server child")
	}
	for _, kv := range o.serverEnv {
		if k, _, _ := strings.Cut(kv, "="); o.server == serverInProcess && !strings.HasPrefix(k, "OFFLOAD_") {
			return o, fmt.Errorf("-server-env %s: only OFFLOAD_* settings apply in-process; use -server child", k)
		}
	}
	if o.client != clientNetHTTP && o.client != clientLean {
		return o, fmt.Errorf("-client must be %s or %s", clientNetHTTP, clientLean)
	}
	o.target = strings.TrimRight(o.target, "/")
	if o.target != "" && !strings.HasPrefix(o.target, "http://") && !strings.HasPrefix(o.target, "https://") {
		return o, errors.New("-target must be an http:// or https:// URL")
	}
	if o.client == clientLean && strings.HasPrefix(o.target, "https://") {
		return o, errors.New("-client lean speaks plain HTTP only; use -client nethttp for an https target")
	}
	for e := range strings.SplitSeq(*eps, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if !slices.Contains(allEndpoints(), e) {
			return o, fmt.Errorf("unknown endpoint %q (known: %s)", e, strings.Join(allEndpoints(), ", "))
		}
		if !slices.Contains(o.endpoints, e) {
			o.endpoints = append(o.endpoints, e)
		}
	}
	if len(o.endpoints) == 0 {
		return o, errors.New("-endpoints is empty")
	}
	return o, nil
}

// run measures the selected endpoints and prints the report. It returns an
// error (after printing) when a request failed or an acknowledged count was
// lost, because then the figures do not describe a working server.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "postgres" {
		return runPostgres(ctx, args[2:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		o.usage(stdout)
		return nil
	case err != nil:
		return err
	case o.version:
		fmt.Fprintln(stdout, buildinfo.Line("offload-bench"))
		return nil
	}
	rep := &report{
		Date:            time.Now().UTC().Format(time.DateOnly),
		GoVersion:       runtime.Version(),
		CPUs:            runtime.NumCPU(),
		Mode:            "in-process",
		Target:          o.target,
		Concurrency:     o.concurrency,
		DurationMs:      o.duration.Milliseconds(),
		WarmupMs:        o.warmup.Milliseconds(),
		UpstreamDelayMs: float64(o.upstreamDelay.Microseconds()) / 1000,
		Client:          o.client,
		Endpoints:       []endpointResult{},
	}
	switch {
	case o.target != "":
		rep.Mode = "target"
	case o.server == serverChild:
		rep.Mode = serverChild
	}
	if o.target == "" {
		rep.ServerEnv = append([]string{fmt.Sprintf("%s=%d", config.EnvAIMaxInFlight, maxInFlight(o))}, o.serverEnv...)
		if n, err := raiseOpenFiles(); err == nil {
			rep.OpenFilesLimit = n
		}
	}

	var httpEPs []string
	for _, ep := range allEndpoints() {
		if ep == epLimiter || !slices.Contains(o.endpoints, ep) {
			continue
		}
		if o.target != "" && needsSetup(ep) {
			rep.Skipped = append(rep.Skipped, skipped{ep, "needs the in-process setup; not measured with -target"})
			continue
		}
		httpEPs = append(httpEPs, ep)
	}
	if len(httpEPs) > 0 {
		if err := runHTTP(ctx, o, httpEPs, rep); err != nil {
			return err
		}
	}
	if slices.Contains(o.endpoints, epLimiter) && ctx.Err() == nil {
		l := benchLimiter(o.limiterKeys)
		rep.Limiter = &l
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	rep.checkTargets()
	rep.summarize()
	if o.json {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		return err
	}
	var failed uint64
	for _, o := range rep.Overhead {
		failed += o.errors()
	}
	for _, e := range rep.Endpoints {
		failed += e.Errors
		if e.Durability != nil && !e.Durability.ok() {
			return errors.New("an acknowledged usage count was not read back")
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d requests failed", failed)
	}
	return nil
}
