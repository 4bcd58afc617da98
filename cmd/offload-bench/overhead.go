package main

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"
)

// The gateway overhead, measured the way LLM gateways publish theirs: the
// same breakdown requests sent straight to the (fake) upstream and through
// a server, the overhead being the difference of the latency quantiles.
// The floor is measured the same way, as the one-hop cost any proxy pays.
//
//   - overhead: sequential (one request at a time, the three targets in
//     turn, so machine noise hits them alike);
//   - overhead-open: open loop at -rate requests per second (default 1,000),
//     one phase per target; latency counts from each request's scheduled
//     start, so a server falling behind cannot hide it (no coordinated
//     omission).
//
// Latencies are recorded minus the upstream's fixed delay: the histogram's
// buckets are 1.6% of the value wide, which at 100 ms would be wider than
// the overhead being measured.

// latencySummary is one target's side of an overhead run.
type latencySummary struct {
	Requests uint64  `json:"requests"`
	Errors   uint64  `json:"errors"`
	RPS      float64 `json:"requests_per_second"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	// ServerCPUPerRequestUs is the server process's CPU per request
	// (-server child only; the direct target has no server).
	ServerCPUPerRequestUs float64       `json:"server_cpu_us_per_request,omitempty"`
	ErrorSamples          []errorSample `json:"error_samples,omitempty"`
}

// overheadResult is one overhead run.
type overheadResult struct {
	Endpoint        string         `json:"endpoint"`
	Mode            string         `json:"mode"` // "sequential" or "open-loop"
	RatePerSecond   float64        `json:"rate_per_second,omitempty"`
	UpstreamDelayMs float64        `json:"upstream_delay_ms"`
	Direct          latencySummary `json:"direct"`
	Floor           latencySummary `json:"floor"`
	Server          latencySummary `json:"server"`
	// Server minus direct, and floor minus direct, per quantile.
	OverheadP50Ms      float64 `json:"overhead_p50_ms"`
	OverheadP99Ms      float64 `json:"overhead_p99_ms"`
	FloorOverheadP50Ms float64 `json:"floor_overhead_p50_ms"`
	FloorOverheadP99Ms float64 `json:"floor_overhead_p99_ms"`
}

func (r *overheadResult) errors() uint64 { return r.Direct.Errors + r.Floor.Errors + r.Server.Errors }

// overheadTargets are the three ends an overhead run compares.
type overheadTargets struct {
	direct func() (*plan, error) // straight to the upstream
	floor  func() (*plan, error)
	server func() (*plan, error)
}

// directPlan is the upstream call the server makes, sent by the bench:
// the captured body and headers (less those the client sets itself).
func directPlan(ctx context.Context, upstreamURL string, call *capturedRequest) (*plan, error) {
	h := http.Header{}
	for k, v := range call.header {
		switch k {
		case "Content-Length", "Host", "User-Agent", "Accept-Encoding", "Connection":
			continue
		}
		h[k] = v
	}
	return newPlan(ctx, http.MethodPost, upstreamURL+"/chat/completions", call.body, h)
}

// summarize turns a run's result into a latencySummary, adding back the
// upstream delay subtracted when recording.
func summarize(res loadResult, delay time.Duration) latencySummary {
	q := func(v time.Duration) float64 { return ms(v + delay) }
	s := latencySummary{
		Requests:     res.requests,
		Errors:       res.errors,
		P50Ms:        q(res.hist.quantile(0.50)),
		P90Ms:        q(res.hist.quantile(0.90)),
		P99Ms:        q(res.hist.quantile(0.99)),
		MaxMs:        q(res.hist.max),
		ErrorSamples: res.samples,
	}
	if res.elapsed > 0 {
		s.RPS = float64(res.requests) / res.elapsed.Seconds()
	}
	return s
}

func (r *overheadResult) diff() {
	r.OverheadP50Ms = r.Server.P50Ms - r.Direct.P50Ms
	r.OverheadP99Ms = r.Server.P99Ms - r.Direct.P99Ms
	r.FloorOverheadP50Ms = r.Floor.P50Ms - r.Direct.P50Ms
	r.FloorOverheadP99Ms = r.Floor.P99Ms - r.Direct.P99Ms
}

// sequentialOverhead sends one request at a time for warmup+d, cycling
// through direct, floor and server (starting each cycle at the next one).
// cpu, if set, reads the server's and the floor's CPU time.
func sequentialOverhead(ctx context.Context, o options, newSender func(*plan) sender, t overheadTargets, cpu func() (server, floor time.Duration)) (overheadResult, error) {
	r := overheadResult{Endpoint: epOverhead, Mode: "sequential", UpstreamDelayMs: float64(o.upstreamDelay.Microseconds()) / 1000}
	var plans [3]*plan
	for i, f := range []func() (*plan, error){t.direct, t.floor, t.server} {
		p, err := f()
		if err != nil {
			return r, err
		}
		plans[i] = p
	}
	var (
		senders [3]sender
		states  [3]workerState
	)
	for i, p := range plans {
		senders[i] = newSender(p)
		defer closeSender(senders[i])
	}
	start := time.Now()
	mStart, mEnd := start.Add(o.warmup), start.Add(o.warmup+o.duration)
	var cpu0s, cpu0f, cpu1s, cpu1f time.Duration
	measuring := false
	for i := 0; ctx.Err() == nil; i++ {
		now := time.Now()
		if !now.Before(mEnd) {
			break
		}
		if !measuring && !now.Before(mStart) {
			measuring = true
			if cpu != nil {
				cpu0s, cpu0f = cpu()
			}
		}
		for j := range 3 {
			k := (i + j) % 3
			t0 := time.Now()
			failure := senders[k].send(plans[k], &states[k])
			t1 := time.Now()
			if failure != "" {
				states[k].sample(failure)
			}
			if !measuring {
				continue
			}
			states[k].hist.record(t1.Sub(t0) - o.upstreamDelay)
			if failure != "" {
				states[k].errors++
			}
		}
	}
	if cpu != nil {
		cpu1s, cpu1f = cpu()
	}
	elapsed := o.duration
	sums := [3]*latencySummary{&r.Direct, &r.Floor, &r.Server}
	for k := range 3 {
		res := loadResult{hist: states[k].hist, requests: states[k].hist.n, errors: states[k].errors, elapsed: elapsed, samples: sortedSamples(states[k].samples)}
		*sums[k] = summarize(res, o.upstreamDelay)
	}
	if cpu != nil {
		perReq(&r.Server, cpu1s-cpu0s)
		perReq(&r.Floor, cpu1f-cpu0f)
	}
	r.diff()
	return r, ctx.Err()
}

func perReq(s *latencySummary, cpu time.Duration) {
	if s.Requests > 0 && cpu > 0 {
		s.ServerCPUPerRequestUs = float64(cpu.Microseconds()) / float64(s.Requests)
	}
}

func sortedSamples(m map[string]uint64) []errorSample {
	var out []errorSample
	for k, v := range m {
		out = append(out, errorSample{What: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Count > out[j].Count || out[i].Count == out[j].Count && out[i].What < out[j].What
	})
	return out
}

// openLoopOverhead runs the three targets one after the other, each open
// loop at o.rate for warmup+d. cpu, if set, reads the CPU time of the
// server behind a target ("floor" or "server").
func openLoopOverhead(ctx context.Context, o options, newSender func(*plan) sender, t overheadTargets, cpu func(target string) time.Duration) (overheadResult, error) {
	r := overheadResult{Endpoint: epOverheadOpen, Mode: "open-loop", RatePerSecond: o.rate, UpstreamDelayMs: float64(o.upstreamDelay.Microseconds()) / 1000}
	phases := []struct {
		name string
		mk   func() (*plan, error)
		dst  *latencySummary
	}{{"direct", t.direct, &r.Direct}, {"floor", t.floor, &r.Floor}, {"server", t.server, &r.Server}}
	for _, ph := range phases {
		var c0, c1 time.Duration
		var onMeasure func(bool)
		if cpu != nil && ph.name != "direct" {
			onMeasure = func(starting bool) {
				if starting {
					c0 = cpu(ph.name)
				} else {
					c1 = cpu(ph.name)
				}
			}
		}
		res, err := openLoop(ctx, o.rate, o.warmup, o.duration, o.upstreamDelay, func() (*plan, sender, error) {
			p, err := ph.mk()
			if err != nil {
				return nil, nil, err
			}
			return p, newSender(p), nil
		}, onMeasure)
		if err != nil {
			return r, err
		}
		*ph.dst = summarize(res, o.upstreamDelay)
		if onMeasure != nil {
			perReq(ph.dst, c1-c0)
		}
	}
	r.diff()
	return r, ctx.Err()
}

// openLoop starts a request every 1/rate seconds for warmup+d, whether or
// not earlier ones have been answered, each on an idle connection of a pool
// that grows as needed. Requests scheduled inside the measured window are
// recorded, from their scheduled start, minus offset.
func openLoop(ctx context.Context, rate float64, warmup, d, offset time.Duration, newPair func() (*plan, sender, error), onMeasure func(starting bool)) (loadResult, error) {
	type pair struct {
		p   *plan
		snd sender
		st  workerState
	}
	var (
		mu      sync.Mutex
		idle    []*pair
		all     []*pair
		pairErr error
	)
	get := func() *pair {
		mu.Lock()
		defer mu.Unlock()
		if n := len(idle); n > 0 {
			pr := idle[n-1]
			idle = idle[:n-1]
			return pr
		}
		p, s, err := newPair()
		if err != nil {
			pairErr = err
			return nil
		}
		pr := &pair{p: p, snd: s}
		all = append(all, pr)
		return pr
	}
	put := func(pr *pair) {
		mu.Lock()
		idle = append(idle, pr)
		mu.Unlock()
	}

	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	mStart, mEnd := start.Add(warmup), start.Add(warmup+d)
	var wg sync.WaitGroup
	if onMeasure != nil {
		wg.Go(func() {
			sleepUntil(ctx, mStart)
			onMeasure(true)
			sleepUntil(ctx, mEnd)
			onMeasure(false)
		})
	}
	for i := 0; ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(mEnd) {
			break
		}
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		measured := !at.Before(mStart)
		wg.Go(func() {
			pr := get()
			if pr == nil {
				return
			}
			failure := pr.snd.send(pr.p, &pr.st)
			t1 := time.Now()
			if failure != "" {
				pr.st.sample(failure)
			}
			if measured {
				pr.st.hist.record(t1.Sub(at) - offset)
				if failure != "" {
					pr.st.errors++
				}
			}
			put(pr)
		})
	}
	wg.Wait()
	res := loadResult{elapsed: d}
	merged := map[string]uint64{}
	for _, pr := range all {
		closeSender(pr.snd)
		res.hist.merge(&pr.st.hist)
		res.errors += pr.st.errors
		for k, v := range pr.st.samples {
			merged[k] += v
		}
	}
	res.requests = res.hist.n
	res.samples = sortedSamples(merged)
	if len(res.samples) > maxErrorSamples {
		res.samples = res.samples[:maxErrorSamples]
	}
	return res, pairErr
}
