package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// endpointResult is one row of the report.
type endpointResult struct {
	Endpoint    string   `json:"endpoint"`
	Concurrency int      `json:"concurrency"`
	Requests    uint64   `json:"requests"`
	Errors      uint64   `json:"errors"`
	RPS         float64  `json:"requests_per_second"`
	P50Ms       float64  `json:"p50_ms"`
	P95Ms       float64  `json:"p95_ms"`
	P99Ms       float64  `json:"p99_ms"`
	MaxMs       float64  `json:"max_ms"`
	VsCeiling   *float64 `json:"vs_ceiling,omitempty"` // RPS / ceiling RPS
	// CPUVsCeiling is the ceiling's CPU time per request over this
	// endpoint's: what VsCeiling would be if both were CPU-bound on an
	// otherwise idle machine. It shrugs off neighbours' load, which can
	// change between one endpoint's run and the next.
	CPUVsCeiling  *float64 `json:"cpu_vs_ceiling,omitempty"`
	PeakHeapBytes uint64   `json:"peak_heap_bytes"`
	// CPU time of the whole process (server and load generator) per
	// measured request, and the cores it kept busy: on a shared machine the
	// CPU cost is steadier than the throughput.
	CPUPerRequestUs float64 `json:"cpu_us_per_request"`
	CPUCores        float64 `json:"cpu_cores_used"`
	// MachineCores is how busy the whole machine was, in cores: more than
	// CPUCores means neighbours took CPU during this run.
	MachineCores float64       `json:"machine_cores_busy"`
	ErrorSamples []errorSample `json:"error_samples,omitempty"`
	// Reconcile only.
	Durability          *durability `json:"durability,omitempty"`
	ReconcilesPerCommit *float64    `json:"writes_per_commit,omitempty"`
	// Against the one-hop proxy floor (floor and generate rows): requests
	// per second over the floor's, and the floor's CPU per request over
	// this one's (the server's CPU with -server child, else the whole
	// process's, as CPUVsCeiling).
	VsFloor    *float64 `json:"vs_floor,omitempty"`
	CPUVsFloor *float64 `json:"cpu_vs_floor,omitempty"`
	// Server is the server process alone (-server child).
	Server *serverFigures `json:"server,omitempty"`
	// UpstreamNewConnsPerSec is TCP connections the fake upstream accepted
	// per second of the measured window: 0 when the server's pool keeps
	// its connections.
	UpstreamNewConnsPerSec *float64 `json:"upstream_new_conns_per_second,omitempty"`
}

// serverFigures are measured in the server's own process: CPU is
// getrusage(RUSAGE_SELF) user+system over the measured window, peak RSS
// the kernel's VmHWM (reset when the window starts), goroutines and heap
// sampled every 10 ms.
type serverFigures struct {
	CPUPerRequestUs float64 `json:"cpu_us_per_request"`
	Cores           float64 `json:"cores_used"`
	PeakRSSBytes    uint64  `json:"peak_rss_bytes"`
	PeakHeapBytes   uint64  `json:"peak_heap_bytes"`
	PeakGoroutines  int     `json:"peak_goroutines"`
	Threads         int     `json:"threads"`
	GOMAXPROCS      int     `json:"gomaxprocs"`
	GOGC            int     `json:"gogc"`
	MemoryLimit     int64   `json:"memory_limit"`
}

type skipped struct {
	Endpoint string `json:"endpoint"`
	Reason   string `json:"reason"`
}

type targetCheck struct {
	Target string `json:"target"`
	Got    string `json:"got"`
	Met    bool   `json:"met"`
}

type report struct {
	Date            string  `json:"date"`
	GoVersion       string  `json:"go_version"`
	CPUs            int     `json:"cpus"`
	Mode            string  `json:"mode"` // "in-process", "child" or "target"
	Target          string  `json:"target,omitempty"`
	Concurrency     int     `json:"concurrency"`
	DurationMs      int64   `json:"duration_ms"`
	WarmupMs        int64   `json:"warmup_ms"`
	UpstreamDelayMs float64 `json:"upstream_delay_ms"`
	Client          string  `json:"client"` // load generator client
	// ServerEnv is what the run set on the API server beyond the bench's
	// fixed environment (limits out of the way): the admission bound and
	// -server-env.
	ServerEnv []string `json:"server_env,omitempty"`
	// OpenFilesLimit is RLIMIT_NOFILE of the bench and its children.
	OpenFilesLimit uint64 `json:"open_files_limit,omitempty"`
	// UpstreamRequestBytes is the size of the body the server sends the
	// upstream for one breakdown; the floor and the direct requests send
	// the same bytes.
	UpstreamRequestBytes int              `json:"upstream_request_bytes,omitempty"`
	Endpoints            []endpointResult `json:"endpoints"`
	Overhead             []overheadResult `json:"overhead,omitempty"`
	Skipped              []skipped        `json:"skipped,omitempty"`
	PeakHeapBytes        uint64           `json:"peak_heap_bytes"` // whole process during the HTTP runs
	PeakRSSBytes         uint64           `json:"peak_rss_bytes"`  // VmHWM after the HTTP runs
	Limiter              *limiterResult   `json:"limiter,omitempty"`
	Targets              []targetCheck    `json:"targets,omitempty"`
	Summary              string           `json:"summary"`
}

func percent(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", *v*100)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (r *report) endpoint(name string) *endpointResult {
	for i := range r.Endpoints {
		if r.Endpoints[i].Endpoint == name {
			return &r.Endpoints[i]
		}
	}
	return nil
}

// compareToReferences fills the ratios to the ceiling and to the floor.
// CPU ratios use the server's own CPU with -server child, else the whole
// process's.
func (r *report) compareToReferences() {
	cpuOf := func(e *endpointResult) float64 {
		if e.Server != nil {
			return e.Server.CPUPerRequestUs
		}
		return e.CPUPerRequestUs
	}
	ratios := func(ref *endpointResult, e *endpointResult) (rps, cpu *float64) {
		if ref == nil || ref.RPS <= 0 {
			return nil, nil
		}
		v := e.RPS / ref.RPS
		rps = &v
		if a, b := cpuOf(ref), cpuOf(e); a > 0 && b > 0 {
			c := a / b
			cpu = &c
		}
		return rps, cpu
	}
	c, f := r.endpoint(epCeiling), r.endpoint(epFloor)
	for i := range r.Endpoints {
		e := &r.Endpoints[i]
		e.VsCeiling, e.CPUVsCeiling = ratios(c, e)
		if e.Endpoint == epFloor || e.Endpoint == epGenerate || e.Endpoint == epGenerateLocal {
			e.VsFloor, e.CPUVsFloor = ratios(f, e)
		}
	}
}

// checkTargets evaluates the targets of issues 6 and 15 that apply to this
// run's settings; the absolute ones only hold at the concurrency they name.
func (r *report) checkTargets() {
	add := func(target, got string, met bool) {
		r.Targets = append(r.Targets, targetCheck{Target: target, Got: got, Met: met})
	}
	ratio := func(name string, want float64) {
		if e := r.endpoint(name); e != nil && e.VsCeiling != nil {
			got := percent(e.VsCeiling)
			if e.CPUVsCeiling != nil {
				got += " (by CPU time per request " + percent(e.CPUVsCeiling) + ")"
			}
			add(fmt.Sprintf("%s ≥ %.0f%% of ceiling", name, want*100), got, *e.VsCeiling >= want)
		}
	}
	g, f := r.endpoint(epGenerate), r.endpoint(epFloor)
	vsFloor := func(want float64) {
		if g == nil || g.VsFloor == nil {
			return
		}
		got := percent(g.VsFloor)
		if g.CPUVsFloor != nil {
			got += " (by CPU time per request " + percent(g.CPUVsFloor) + ")"
		}
		add(fmt.Sprintf("generate ≥ %.0f%% of the proxy floor", want*100), got, *g.VsFloor >= want)
	}
	if r.UpstreamDelayMs == 0 {
		vsFloor(0.70)
		if g != nil && r.Concurrency <= 50 {
			add("generate p99 < 25 ms at -c 50", fmt.Sprintf("%.2f ms", g.P99Ms), g.P99Ms < 25)
		}
	}
	if g != nil && r.UpstreamDelayMs > 0 && r.UpstreamDelayMs <= 50 && r.Concurrency >= 200 {
		add("generate ≥ 3,000 req/s with upstream delay at -c 200", fmt.Sprintf("%.0f req/s", g.RPS), g.RPS >= 3000)
	}
	if g != nil && r.UpstreamDelayMs >= 1000 && r.Concurrency >= 3000 {
		vsFloor(0.90)
		if g.Server != nil && f != nil && f.Server != nil && f.Server.PeakRSSBytes > 0 {
			v := float64(g.Server.PeakRSSBytes) / float64(f.Server.PeakRSSBytes)
			add("generate peak RSS ≤ 2× the floor's", fmt.Sprintf("%s vs %s (%.1f×)", mib(g.Server.PeakRSSBytes), mib(f.Server.PeakRSSBytes), v), v <= 2)
		}
	}
	if g != nil && g.UpstreamNewConnsPerSec != nil && r.UpstreamDelayMs > 0 {
		add("no new upstream connections in steady state", fmt.Sprintf("%.1f/s", *g.UpstreamNewConnsPerSec), *g.UpstreamNewConnsPerSec < 0.5)
	}
	ratio(epSession, 0.75)
	ratio(epHealth, 0.50)
	for _, name := range []string{epReconcile, epReconcileHot, epReconcileMany} {
		e := r.endpoint(name)
		if e == nil {
			continue
		}
		if r.Concurrency >= 64 {
			ratio(name, 0.35)
			add(name+" p99 < 20 ms at -c 64", fmt.Sprintf("%.2f ms", e.P99Ms), e.P99Ms < 20)
			if name == epReconcile {
				add("reconcile ≥ 10,000/s at -c 64", fmt.Sprintf("%.0f/s", e.RPS), e.RPS >= 10000)
			}
		}
		if e.Durability != nil {
			add(name+": no acknowledged count lost", fmt.Sprintf("%d of %d installs lost", e.Durability.Lost, e.Durability.Installs), e.Durability.ok())
		}
	}
	for _, o := range r.Overhead {
		add(o.Endpoint+" p99 overhead ≤ 1 ms", fmt.Sprintf("%.3f ms (p50 %.3f ms)", o.OverheadP99Ms, o.OverheadP50Ms), o.OverheadP99Ms <= 1)
		if n := o.errors(); n > 0 {
			add(o.Endpoint+" without errors", fmt.Sprintf("%d errors", n), false)
		}
	}
	for _, e := range r.Endpoints {
		if e.Errors > 0 {
			add(e.Endpoint+" without errors", fmt.Sprintf("%d errors", e.Errors), false)
		}
	}
	if l := r.Limiter; l != nil && l.Keys >= 1_000_000 {
		// Each limiter holds 1,000,000 keys; the session route has two.
		live := max(l.InstallBytes, l.IPBytes)
		after := l.EvictedBytes - min(l.EvictedBytes, l.BaselineBytes)
		add("a limiter < 64 MiB with 1,000,000 live keys", mib(live)+" (largest of the two)", live < 64<<20)
		add("limiters < 8 MiB after eviction", mib(after)+" (both)", after < 8<<20)
	}
}

func (r *report) summarize() {
	var parts []string
	for _, e := range r.Endpoints {
		s := fmt.Sprintf("%s %.0f/s", e.Endpoint, e.RPS)
		switch {
		case e.VsFloor != nil && e.Endpoint != epFloor:
			s += fmt.Sprintf(" (%.0f%% of floor)", *e.VsFloor*100)
		case e.VsCeiling != nil && e.Endpoint != epCeiling:
			s += fmt.Sprintf(" (%.0f%%)", *e.VsCeiling*100)
		}
		s += fmt.Sprintf(" p99 %.1fms", e.P99Ms)
		if e.Errors > 0 {
			s += fmt.Sprintf(" %d errors", e.Errors)
		}
		parts = append(parts, s)
	}
	for _, o := range r.Overhead {
		parts = append(parts, fmt.Sprintf("%s overhead p50 %.3fms p99 %.3fms", o.Endpoint, o.OverheadP50Ms, o.OverheadP99Ms))
	}
	if len(r.Endpoints) > 0 && r.Mode != serverChild {
		parts = append(parts, "peak heap "+mib(r.PeakHeapBytes)+", RSS "+mib(r.PeakRSSBytes))
	}
	if l := r.Limiter; l != nil {
		parts = append(parts, fmt.Sprintf("limiters %s live → %s evicted",
			mib(l.LiveBytes-min(l.LiveBytes, l.BaselineBytes)), mib(l.EvictedBytes-min(l.EvictedBytes, l.BaselineBytes))))
	}
	met := 0
	for _, t := range r.Targets {
		if t.Met {
			met++
		}
	}
	if len(r.Targets) > 0 {
		parts = append(parts, fmt.Sprintf("targets %d/%d met", met, len(r.Targets)))
	}
	r.Summary = fmt.Sprintf("offload-bench %s %s -client %s -c %d: %s", r.Date, r.Mode, r.Client, r.Concurrency, strings.Join(parts, "; "))
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeText(w io.Writer) error {
	fmt.Fprintf(w, "offload-bench %s, %s, %d CPUs, %s", r.Date, r.GoVersion, r.CPUs, r.Mode)
	if r.Target != "" {
		fmt.Fprintf(w, " %s", r.Target)
	}
	fmt.Fprintf(w, ", -client %s, -c %d, -d %v, -warmup %v, -upstream-delay %vms\n",
		r.Client, r.Concurrency, time.Duration(r.DurationMs)*time.Millisecond, time.Duration(r.WarmupMs)*time.Millisecond, r.UpstreamDelayMs)
	if r.Mode == serverChild {
		fmt.Fprintln(w, "each server in its own process; load generator and fake upstream in this one, all on this machine's cores")
	} else {
		fmt.Fprintln(w, "load generator and server share this machine's cores")
	}
	if len(r.ServerEnv) > 0 {
		fmt.Fprintf(w, "server env: %s; open files limit %d\n", strings.Join(r.ServerEnv, " "), r.OpenFilesLimit)
	}
	if r.UpstreamRequestBytes > 0 {
		fmt.Fprintf(w, "upstream request body %d bytes (the floor and the direct requests send the same)\n", r.UpstreamRequestBytes)
	}

	if len(r.Endpoints) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "endpoint\tconc\trequests\treq/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\tvs ceiling\tvs floor\tcpu µs/req\tcpu vs ceiling\tcpu vs floor\tcores\tmachine\tpeak heap\tup conns/s\t")
		for _, e := range r.Endpoints {
			conns := "-"
			if e.UpstreamNewConnsPerSec != nil {
				conns = fmt.Sprintf("%.1f", *e.UpstreamNewConnsPerSec)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%s\t%s\t%.0f\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t\n",
				e.Endpoint, e.Concurrency, e.Requests, e.RPS, e.P50Ms, e.P95Ms, e.P99Ms, e.MaxMs, e.Errors, percent(e.VsCeiling), percent(e.VsFloor),
				e.CPUPerRequestUs, percent(e.CPUVsCeiling), percent(e.CPUVsFloor), e.CPUCores, e.MachineCores, mib(e.PeakHeapBytes), conns)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if r.Mode == serverChild {
			fmt.Fprintln(w, "  cpu µs/req, cores, peak heap: this process (load generator, fake upstream); cpu ratios: the server's")
			fmt.Fprintln(w, "\nserver process (getrusage CPU over the window, VmHWM, goroutines sampled every 10 ms):")
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "endpoint\tcpu µs/req\tcores\tpeak RSS\tpeak heap\tpeak goroutines\tthreads\tGOMAXPROCS\tGOGC\tmemory limit\t")
			for _, e := range r.Endpoints {
				if s := e.Server; s != nil {
					limit := "none"
					if s.MemoryLimit > 0 && s.MemoryLimit < 1<<62 {
						limit = mib(uint64(s.MemoryLimit))
					}
					fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t\n", e.Endpoint, s.CPUPerRequestUs, s.Cores,
						mib(s.PeakRSSBytes), mib(s.PeakHeapBytes), s.PeakGoroutines, s.Threads, s.GOMAXPROCS, s.GOGC, limit)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		for _, e := range r.Endpoints {
			for _, s := range e.ErrorSamples {
				fmt.Fprintf(w, "  %s error: %s ×%d\n", e.Endpoint, s.What, s.Count)
			}
			if e.Durability != nil {
				d := e.Durability
				fmt.Fprintf(w, "  %s durability: %d installs read back, %d lost, %d above what was sent, %d unreadable\n",
					e.Endpoint, d.Installs, d.Lost, d.Invented, d.Unreadable)
			}
			if e.ReconcilesPerCommit != nil {
				fmt.Fprintf(w, "  %s: %.1f writes per commit on average\n", e.Endpoint, *e.ReconcilesPerCommit)
			}
		}
		fmt.Fprintf(w, "  peak heap %s, peak RSS %s (this process)\n", mib(r.PeakHeapBytes), mib(r.PeakRSSBytes))
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "  skipped %s: %s\n", s.Endpoint, s.Reason)
	}
	if len(r.Overhead) > 0 {
		if err := r.writeOverhead(w); err != nil {
			return err
		}
	}

	if l := r.Limiter; l != nil {
		fmt.Fprintf(w, "\nlimiter memory: %d distinct install ids and %d distinct IPs, HeapAlloc after GC (%d ms, %d ns/Allow)\n",
			l.Keys, l.Keys, l.DurationMs, l.NsPerAllow)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "phase\tkeys held\theap\tover baseline\t")
		fmt.Fprintf(tw, "baseline\t0\t%s\t-\t\n", mib(l.BaselineBytes))
		fmt.Fprintf(tw, "live\t%d\t%s\t%s\t\n", l.LiveKeys, mib(l.LiveBytes), mib(l.LiveBytes-min(l.LiveBytes, l.BaselineBytes)))
		fmt.Fprintf(tw, "after eviction\t%d\t%s\t%s\t\n", l.KeysAfter, mib(l.EvictedBytes), mib(l.EvictedBytes-min(l.EvictedBytes, l.BaselineBytes)))
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "  install-id limiter %s, IP limiter %s, %d keys evicted\n", mib(l.InstallBytes), mib(l.IPBytes), l.Evicted)
	}

	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\ntargets:")
		for _, t := range r.Targets {
			mark := "met"
			if !t.Met {
				mark = "MISSED"
			}
			fmt.Fprintf(w, "  %-6s %s: %s\n", mark, t.Target, t.Got)
		}
	}
	_, err := fmt.Fprintf(w, "\n%s\n", r.Summary)
	return err
}

func (r *report) writeOverhead(w io.Writer) error {
	for _, o := range r.Overhead {
		fmt.Fprintf(w, "\n%s: %s", o.Endpoint, o.Mode)
		if o.RatePerSecond > 0 {
			fmt.Fprintf(w, " at %.0f req/s", o.RatePerSecond)
		}
		fmt.Fprintf(w, ", upstream delay %vms; latency from the (scheduled) start\n", o.UpstreamDelayMs)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target\trequests\treq/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\terrors\tserver cpu µs/req\tp50 overhead ms\tp99 overhead ms\t")
		for _, t := range []struct {
			name     string
			s        latencySummary
			p50, p99 string
		}{
			{"direct", o.Direct, "-", "-"},
			{"floor", o.Floor, fmt.Sprintf("%.3f", o.FloorOverheadP50Ms), fmt.Sprintf("%.3f", o.FloorOverheadP99Ms)},
			{"server", o.Server, fmt.Sprintf("%.3f", o.OverheadP50Ms), fmt.Sprintf("%.3f", o.OverheadP99Ms)},
		} {
			cpu := "-"
			if t.s.ServerCPUPerRequestUs > 0 {
				cpu = fmt.Sprintf("%.0f", t.s.ServerCPUPerRequestUs)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%s\t%s\t%s\t\n", t.name, t.s.Requests, t.s.RPS,
				t.s.P50Ms, t.s.P90Ms, t.s.P99Ms, t.s.MaxMs, t.s.Errors, cpu, t.p50, t.p99)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, t := range []struct {
			name string
			s    latencySummary
		}{{"direct", o.Direct}, {"floor", o.Floor}, {"server", o.Server}} {
			for _, e := range t.s.ErrorSamples {
				fmt.Fprintf(w, "  %s error: %s ×%d\n", t.name, e.What, e.Count)
			}
		}
	}
	return nil
}
