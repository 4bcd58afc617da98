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
	Date            string           `json:"date"`
	GoVersion       string           `json:"go_version"`
	CPUs            int              `json:"cpus"`
	Mode            string           `json:"mode"` // "in-process" or "target"
	Target          string           `json:"target,omitempty"`
	Concurrency     int              `json:"concurrency"`
	DurationMs      int64            `json:"duration_ms"`
	WarmupMs        int64            `json:"warmup_ms"`
	UpstreamDelayMs float64          `json:"upstream_delay_ms"`
	Client          string           `json:"client"` // load generator client
	Endpoints       []endpointResult `json:"endpoints"`
	Skipped         []skipped        `json:"skipped,omitempty"`
	PeakHeapBytes   uint64           `json:"peak_heap_bytes"` // whole process during the HTTP runs
	PeakRSSBytes    uint64           `json:"peak_rss_bytes"`  // VmHWM after the HTTP runs
	Limiter         *limiterResult   `json:"limiter,omitempty"`
	Targets         []targetCheck    `json:"targets,omitempty"`
	Summary         string           `json:"summary"`
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

// checkTargets evaluates the targets of issue 6 that apply to this run's
// settings; the absolute ones only hold at the concurrency they name.
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
	if r.UpstreamDelayMs == 0 {
		ratio(epGenerate, 0.30)
		if e := r.endpoint(epGenerate); e != nil && r.Concurrency <= 50 {
			add("generate p99 < 25 ms at -c 50", fmt.Sprintf("%.2f ms", e.P99Ms), e.P99Ms < 25)
		}
	}
	if e := r.endpoint(epGenerate); e != nil && r.UpstreamDelayMs > 0 && r.Concurrency >= 200 {
		add("generate ≥ 3,000 req/s with upstream delay at -c 200", fmt.Sprintf("%.0f req/s", e.RPS), e.RPS >= 3000)
	}
	ratio(epSession, 0.50)
	ratio(epHealth, 0.50)
	if e := r.endpoint(epReconcile); e != nil {
		if r.Concurrency >= 64 {
			add("reconcile ≥ 10,000/s at -c 64", fmt.Sprintf("%.0f/s", e.RPS), e.RPS >= 10000)
		}
		if e.Durability != nil {
			add("no acknowledged count lost", fmt.Sprintf("%d of %d installs lost", e.Durability.Lost, e.Durability.Installs), e.Durability.ok())
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
		if e.VsCeiling != nil && e.Endpoint != epCeiling {
			s += fmt.Sprintf(" (%.0f%%)", *e.VsCeiling*100)
		}
		s += fmt.Sprintf(" p99 %.1fms", e.P99Ms)
		if e.Errors > 0 {
			s += fmt.Sprintf(" %d errors", e.Errors)
		}
		parts = append(parts, s)
	}
	if len(r.Endpoints) > 0 {
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
	r.Summary = fmt.Sprintf("offload-bench %s -client %s -c %d: %s", r.Date, r.Client, r.Concurrency, strings.Join(parts, "; "))
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
	fmt.Fprintln(w, "load generator and server share this machine's cores")

	if len(r.Endpoints) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "endpoint\tconc\trequests\treq/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\tvs ceiling\tcpu µs/req\tcpu vs ceiling\tcores\tmachine\tpeak heap\t")
		for _, e := range r.Endpoints {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%s\t%.0f\t%s\t%.2f\t%.2f\t%s\t\n",
				e.Endpoint, e.Concurrency, e.Requests, e.RPS, e.P50Ms, e.P95Ms, e.P99Ms, e.MaxMs, e.Errors, percent(e.VsCeiling),
				e.CPUPerRequestUs, percent(e.CPUVsCeiling), e.CPUCores, e.MachineCores, mib(e.PeakHeapBytes))
		}
		if err := tw.Flush(); err != nil {
			return err
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
		fmt.Fprintf(w, "  peak heap %s, peak RSS %s (whole process)\n", mib(r.PeakHeapBytes), mib(r.PeakRSSBytes))
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "  skipped %s: %s\n", s.Endpoint, s.Reason)
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
