package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// runHTTP starts the fake upstream and the servers (unless -target) and
// measures eps one after the other, each with its own warmup. In-process,
// the servers start once; with -server child, each endpoint gets fresh
// child processes.
func runHTTP(ctx context.Context, o options, eps []string, rep *report) (err error) {
	if o.cpuProfile != "" && o.server == serverInProcess {
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

	var (
		up       *fakeUpstream
		call     *capturedRequest
		dir      string
		callPath string
		ip       *inProcess
	)
	if o.target == "" {
		if dir, err = os.MkdirTemp("", "offload-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if up, err = startUpstream(o.upstreamDelay); err != nil {
			return fmt.Errorf("starting the fake upstream: %w", err)
		}
		defer func() {
			if cerr := up.close(); cerr != nil && err == nil {
				err = fmt.Errorf("stopping the fake upstream: %w", cerr)
			}
		}()
		if call, err = captureCall(ctx, o, dir, up); err != nil {
			return err
		}
		callPath = filepath.Join(dir, "upstream-call.json")
		if err := writeCall(callPath, call); err != nil {
			return err
		}
		rep.UpstreamRequestBytes = len(call.body)
	}
	if o.target == "" && o.server == serverInProcess {
		ip, err = startInProcess(ctx, o, dir, up, call)
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
	// host that no worker ever has to dial mid-run (the open loop may have
	// a thousand in flight), no proxy (the servers are local or explicitly
	// targeted), and no gzip to decode.
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: max(o.concurrency, 1024) + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	runID := make([]byte, 4)
	_, _ = rand.Read(runID)
	pl := &planner{ctx: ctx, client: client, runID: hex.EncodeToString(runID), installs: o.installs}

	heap := startHeapSampler(20 * time.Millisecond)
	defer heap.close()
	for i, ep := range eps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var (
			be backend
			cb *childBackend
		)
		switch {
		case ip != nil:
			be = ip
		case o.target == "":
			if i > 0 {
				time.Sleep(waitGone)
			}
			if cb, err = startChildren(ctx, o, ep, dir, up, callPath); err != nil {
				return fmt.Errorf("%s: %w", ep, err)
			}
			be = cb
		}
		if isOverhead(ep) {
			var r overheadResult
			r, err = measureOverhead(ctx, o, pl, ep, be, cb, up, call)
			rep.Overhead = append(rep.Overhead, r)
		} else {
			base := o.target
			if be != nil {
				base = be.url(ep)
			}
			var row endpointResult
			row, err = measure(ctx, o, pl, ep, base, be, cb, up, heap)
			if err == nil {
				rep.Endpoints = append(rep.Endpoints, row)
			}
		}
		if cb != nil {
			if cerr := cb.close(); cerr != nil && err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", ep, err)
		}
		tr.CloseIdleConnections()
	}
	rep.compareToReferences()
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

// newSenderFunc returns how workers of this run send.
func newSenderFunc(ctx context.Context, o options, pl *planner) func(*plan) sender {
	if o.client == clientLean {
		return func(p *plan) sender { return newLeanSender(ctx, p) }
	}
	return func(*plan) sender { return clientSender{pl.client} }
}

// profilePath is where the server child's CPU profile of ep goes: the
// -cpuprofile name itself when one endpoint runs, else with ".<ep>" added.
func profilePath(o options, ep string) string {
	if len(o.endpoints) == 1 {
		return o.cpuProfile
	}
	return o.cpuProfile + "." + ep
}

// measure runs one endpoint: builds its workers' requests (sessions are
// issued here, outside the measurement), runs the load and, for reconcile,
// reads every count back.
func measure(ctx context.Context, o options, pl *planner, ep, base string, be backend, cb *childBackend, up *fakeUpstream, heap *heapSampler) (endpointResult, error) {
	plans, verify, err := pl.plans(ep, base, o.concurrency)
	if err != nil {
		return endpointResult{}, err
	}
	var (
		snaps               [2]serverSnapshot
		snapErr             error
		conns               [2]uint64
		cpuBefore, cpuAfter time.Duration
		machine             [2][2]uint64 // busy, total ticks at start and end
		profErr             = make(chan error, 1)
		profiling           = cb != nil && o.cpuProfile != ""
	)
	onMeasure := func(starting bool) {
		i := 1
		if starting {
			i = 0
		}
		if be != nil {
			s, err := be.snapshot(ep, starting)
			if err != nil && snapErr == nil {
				snapErr = err
			}
			snaps[i] = s
		}
		if up != nil {
			conns[i] = up.newConns()
		}
		busy, total := machineBusy()
		machine[i] = [2]uint64{busy, total}
		if starting {
			cpuBefore = processCPU()
			if profiling {
				go func() { profErr <- cb.serving(ep).profile(o.duration, profilePath(o, ep)) }()
			}
		} else {
			cpuAfter = processCPU()
		}
	}

	runtime.GC()
	heap.reset()
	res := runLoad(ctx, newSenderFunc(ctx, o, pl), plans, o.warmup, o.duration, onMeasure)
	if profiling && ctx.Err() == nil {
		if err := <-profErr; err != nil {
			return endpointResult{}, fmt.Errorf("server CPU profile: %w", err)
		}
	}
	if snapErr != nil {
		return endpointResult{}, snapErr
	}
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
	secs := res.elapsed.Seconds()
	if secs > 0 {
		row.RPS = float64(res.requests) / secs
	}
	if res.requests > 0 && cpuAfter > cpuBefore {
		row.CPUPerRequestUs = float64((cpuAfter - cpuBefore).Microseconds()) / float64(res.requests)
		row.CPUCores = (cpuAfter - cpuBefore).Seconds() / secs
	}
	if dt := machine[1][1] - machine[0][1]; machine[0][1] > 0 && dt > 0 {
		// Ticks are summed over all CPUs, so busy/total is the machine's
		// busy share; times NumCPU it is in cores, comparable to CPUCores.
		row.MachineCores = float64(machine[1][0]-machine[0][0]) / float64(dt) * float64(runtime.NumCPU())
	}
	if before, after := snaps[0], snaps[1]; after.haveStore && after.store.commits > before.store.commits {
		v := float64(after.store.writes-before.store.writes) / float64(after.store.commits-before.store.commits)
		row.ReconcilesPerCommit = &v
	}
	if p0, p1 := snaps[0].proc, snaps[1].proc; p0 != nil && p1 != nil && secs > 0 {
		cpu := time.Duration(p1.CPUNs - p0.CPUNs)
		s := &serverFigures{
			Cores:          cpu.Seconds() / secs,
			PeakRSSBytes:   p1.HWMBytes,
			PeakHeapBytes:  p1.PeakHeapBytes,
			PeakGoroutines: p1.PeakGoroutines,
			Threads:        p1.Threads,
			GOMAXPROCS:     p1.GOMAXPROCS,
			GOGC:           p1.GOGC,
			MemoryLimit:    p1.MemoryLimit,
		}
		if res.requests > 0 {
			s.CPUPerRequestUs = float64(cpu.Microseconds()) / float64(res.requests)
		}
		row.Server = s
	}
	if up != nil && secs > 0 {
		v := float64(conns[1]-conns[0]) / secs
		row.UpstreamNewConnsPerSec = &v
	}
	if verify != nil {
		d := verify()
		row.Durability = &d
	}
	return row, nil
}

// measureOverhead runs an overhead endpoint against the upstream, the floor
// and the API server behind be.
func measureOverhead(ctx context.Context, o options, pl *planner, ep string, be backend, cb *childBackend, up *fakeUpstream, call *capturedRequest) (overheadResult, error) {
	serverURL, floorURL := be.url(epGenerate), be.url(epFloor)
	n := 1
	if ep == epOverheadOpen {
		n = 64 // tokens shared by the open loop's connections
	}
	toks := make([]string, n)
	for i := range toks {
		tok, err := pl.issue(serverURL, "bench-"+pl.runID+"-o"+strconv.Itoa(i))
		if err != nil {
			return overheadResult{}, err
		}
		toks[i] = tok
	}
	var next atomic.Int64
	t := overheadTargets{
		direct: func() (*plan, error) { return directPlan(ctx, up.URL, call) },
		floor:  func() (*plan, error) { return floorPlan(ctx, floorURL) },
		server: func() (*plan, error) {
			tok := toks[int(next.Add(1))%len(toks)]
			h := http.Header{"Authorization": {"Bearer " + tok}, "X-Offload-Cloud-Opt-In": {"true"}}
			return newPlan(ctx, http.MethodPost, serverURL+"/v1/ai/breakdown/generate", []byte(benchInput), h)
		},
	}
	cpuOf := func(role string) time.Duration {
		st, err := cb.children[role].stats()
		if err != nil {
			return 0
		}
		return time.Duration(st.CPUNs)
	}
	newSender := newSenderFunc(ctx, o, pl)
	if ep == epOverhead {
		var cpu func() (time.Duration, time.Duration)
		if cb != nil {
			cpu = func() (time.Duration, time.Duration) { return cpuOf(roleAPI), cpuOf(roleFloor) }
		}
		return sequentialOverhead(ctx, o, newSender, t, cpu)
	}
	var cpu func(string) time.Duration
	if cb != nil {
		cpu = func(target string) time.Duration {
			if target == "floor" {
				return cpuOf(roleFloor)
			}
			return cpuOf(roleAPI)
		}
	}
	return openLoopOverhead(ctx, o, newSender, t, cpu)
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

// raiseOpenFiles lifts the soft RLIMIT_NOFILE to the hard limit and
// returns it: 5,000 clients need 5,000 sockets here plus 5,000 accepted by
// the upstream, and the server child as many again. Go raises the soft
// limit of its own process at start but gives children the original one
// back, unless the program sets the limit itself, as this does: the
// children inherit it.
func raiseOpenFiles() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return l.Cur, nil
}
