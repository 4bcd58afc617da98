// Command offload-bench measures every endpoint of the Offload server under
// keep-alive load and compares each with the machine's ceiling, a bare
// net/http handler measured in the same run.
//
// By default everything runs in this one process: a fake OpenAI upstream,
// the real server wired by internal/app exactly as cmd/offload-api wires it
// (SQLite file in a temp dir, real middleware, tokens and limiters, the real
// OpenAI adapter pointed at the fake), a second server with the local
// provider, the ceiling, and the load generator. With -target it loads an
// already running server instead.
//
//	go run ./cmd/offload-bench                       # every endpoint, -c 50, 10 s each
//	go run ./cmd/offload-bench -c 200 -upstream-delay 50ms -endpoints generate
//	go run ./cmd/offload-bench -c 64 -endpoints reconcile
//
// The load generator shares the machine's cores with the server, so the
// figures are lower bounds of what the server alone could do. -client lean
// swaps the shared http.Client for a raw keep-alive connection per worker,
// which costs about half as much CPU per request and so leaves more to the
// server. On a machine shared with other work, the "cpu µs/req" and "cpu vs
// ceiling" columns (CPU time of this process per request) are steadier than
// requests/s; "machine" shows how busy the whole machine was meanwhile.
//
// Profiles: -cpuprofile, -memprofile and -trace cover the HTTP runs.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/offload-app/offload/internal/app"
)

func main() {
	app.TuneRuntime(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "offload-bench:", err)
		os.Exit(1)
	}
}

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
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.concurrency, "c", 50, "concurrent clients (closed loop, keep-alive)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration per endpoint")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warmup per endpoint")
	eps := fs.String("endpoints", strings.Join(allEndpoints(), ","), "comma-separated endpoints to run")
	fs.DurationVar(&o.upstreamDelay, "upstream-delay", 0, "simulated model latency of the fake OpenAI upstream")
	fs.StringVar(&o.target, "target", "", "base URL of a running server to load instead of the in-process one")
	fs.BoolVar(&o.json, "json", false, "print one JSON document instead of the table")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the HTTP runs to this file")
	fs.StringVar(&o.client, "client", clientNetHTTP, "load generator client: "+clientNetHTTP+" (one shared keep-alive http.Client) or "+clientLean+" (a raw keep-alive connection per worker, cheaper, HTTP/1.1 over plain TCP)")
	fs.StringVar(&o.traceFile, "trace", "", "write a runtime execution trace of the HTTP runs to this file (go tool trace)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile of the HTTP runs to this file")
	fs.IntVar(&o.limiterKeys, "limiter-keys", 1_000_000, "distinct install ids and IPs for the limiter memory benchmark")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
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
	if err != nil {
		return err
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
	if o.target != "" {
		rep.Mode = "target"
	}

	var httpEPs []string
	for _, ep := range allEndpoints() {
		if ep == epLimiter || !slices.Contains(o.endpoints, ep) {
			continue
		}
		if o.target != "" && (ep == epCeiling || ep == epGenerateLocal) {
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

// runHTTP starts the in-process servers (unless -target) and measures eps
// one after the other, each with its own warmup.
func runHTTP(ctx context.Context, o options, eps []string, rep *report) (err error) {
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	if o.traceFile != "" {
		f, err := os.Create(o.traceFile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}

	var ip *inProcess
	if o.target == "" {
		ip, err = startInProcess(ctx, o.upstreamDelay)
		if err != nil {
			return fmt.Errorf("starting the in-process servers: %w", err)
		}
		defer func() {
			if cerr := ip.close(); cerr != nil && err == nil {
				err = fmt.Errorf("stopping the in-process servers: %w", cerr)
			}
		}()
	}

	// One keep-alive client for all workers: enough idle connections per
	// host that no worker ever has to dial mid-run, no proxy (the servers
	// are local or explicitly targeted), and no gzip to decode.
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: o.concurrency + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	runID := make([]byte, 4)
	_, _ = rand.Read(runID)
	pl := &planner{ctx: ctx, client: client, runID: hex.EncodeToString(runID)}

	heap := startHeapSampler(20 * time.Millisecond)
	defer heap.close()
	for _, ep := range eps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		base := o.target
		if ip != nil {
			base = ip.url(ep)
		}
		row, err := measure(ctx, o, pl, ip, ep, base, heap)
		if err != nil {
			return fmt.Errorf("%s: %w", ep, err)
		}
		rep.Endpoints = append(rep.Endpoints, row)
		tr.CloseIdleConnections()
	}
	if c := rep.endpoint(epCeiling); c != nil && c.RPS > 0 {
		for i := range rep.Endpoints {
			e := &rep.Endpoints[i]
			v := e.RPS / c.RPS
			e.VsCeiling = &v
			if e.CPUPerRequestUs > 0 && c.CPUPerRequestUs > 0 {
				cv := c.CPUPerRequestUs / e.CPUPerRequestUs
				e.CPUVsCeiling = &cv
			}
		}
	}
	if o.memProfile != "" {
		if err := writeAllocProfile(o.memProfile); err != nil {
			return err
		}
	}
	heap.reset()
	rep.PeakHeapBytes = heap.overall.Load()
	rep.PeakRSSBytes, _ = procStatus()
	return nil
}

// measure runs one endpoint: builds its workers' requests (sessions are
// issued here, outside the measurement), runs the load and, for reconcile,
// reads every count back.
func measure(ctx context.Context, o options, pl *planner, ip *inProcess, ep, base string, heap *heapSampler) (endpointResult, error) {
	plans, recs, err := pl.plans(ep, base, o.concurrency)
	if err != nil {
		return endpointResult{}, err
	}
	var (
		before, after       storeStats
		haveStats           bool
		cpuBefore, cpuAfter time.Duration
		machine             [2][2]uint64 // busy, total ticks at start and end
	)
	withStore := ip != nil && ep != epCeiling && ep != epHealth
	onMeasure := func(starting bool) {
		var st storeStats
		if withStore {
			st, haveStats = ip.storeStats(ep)
		}
		busy, total := machineBusy()
		if starting {
			before, cpuBefore = st, processCPU()
			machine[0] = [2]uint64{busy, total}
		} else {
			after, cpuAfter = st, processCPU()
			machine[1] = [2]uint64{busy, total}
		}
	}

	runtime.GC()
	heap.reset()
	newSender := func(*plan) sender { return clientSender{pl.client} }
	if o.client == clientLean {
		newSender = func(p *plan) sender { return newLeanSender(ctx, p) }
	}
	res := runLoad(ctx, newSender, plans, o.warmup, o.duration, onMeasure)
	row := endpointResult{
		Endpoint:      ep,
		Concurrency:   o.concurrency,
		Requests:      res.requests,
		Errors:        res.errors,
		P50Ms:         ms(res.hist.quantile(0.50)),
		P95Ms:         ms(res.hist.quantile(0.95)),
		P99Ms:         ms(res.hist.quantile(0.99)),
		MaxMs:         ms(res.hist.max),
		PeakHeapBytes: heap.reset(),
		ErrorSamples:  res.samples,
	}
	if res.elapsed > 0 {
		row.RPS = float64(res.requests) / res.elapsed.Seconds()
	}
	if res.requests > 0 && cpuAfter > cpuBefore {
		row.CPUPerRequestUs = float64((cpuAfter - cpuBefore).Microseconds()) / float64(res.requests)
		row.CPUCores = (cpuAfter - cpuBefore).Seconds() / res.elapsed.Seconds()
	}
	if dt := machine[1][1] - machine[0][1]; machine[0][1] > 0 && dt > 0 {
		// Ticks are summed over all CPUs, so busy/total is the machine's
		// busy share; times NumCPU it is in cores, comparable to CPUCores.
		row.MachineCores = float64(machine[1][0]-machine[0][0]) / float64(dt) * float64(runtime.NumCPU())
	}
	if haveStats && after.commits > before.commits {
		v := float64(after.writes-before.writes) / float64(after.commits-before.commits)
		row.ReconcilesPerCommit = &v
	}
	if ep == epReconcile {
		d := pl.verifyCounts(base, recs)
		row.Durability = &d
	}
	return row, nil
}

// writeAllocProfile writes the allocations sampled since the process
// started (setup included; the load runs dominate it).
func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
