package main

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/ratelimit"
)

// limiterResult is the memory of the session limiters after a flood of
// distinct keys: as if n sessions were issued, each from a new install id
// and a new client IP.
type limiterResult struct {
	Keys int `json:"keys"` // distinct keys per limiter
	// HeapAlloc after runtime.GC(), in bytes: before the flood, with both
	// limiters full, and after the window passed and eviction ran.
	BaselineBytes uint64 `json:"baseline_heap_bytes"`
	InstallBytes  uint64 `json:"install_limiter_bytes"` // growth from the install-id limiter alone
	IPBytes       uint64 `json:"ip_limiter_bytes"`      // growth from the IP limiter alone
	LiveBytes     uint64 `json:"live_heap_bytes"`
	EvictedBytes  uint64 `json:"after_eviction_heap_bytes"`
	LiveKeys      int    `json:"live_keys"`    // Len of both limiters, full
	KeysAfter     int    `json:"keys_after"`   // Len of both after eviction
	Evicted       int    `json:"evicted"`      // what Sweep reported
	NsPerAllow    int64  `json:"ns_per_allow"` // single goroutine, fill phase
	DurationMs    int64  `json:"duration_ms"`
}

// fakeClock is a settable clock for the limiters: the window passes by
// setting it, not by waiting.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

var _ offload.Clock = (*fakeClock)(nil)

// heapAfterGC is HeapAlloc once the collector has run, i.e. live bytes.
func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func benchLimiter(n int) limiterResult {
	const window = 60 * time.Second
	began := time.Now()
	clk := &fakeClock{}
	clk.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	r := limiterResult{Keys: n}

	r.BaselineBytes = heapAfterGC()
	// Defaults of the session route: 4 per install, 8 per IP per minute.
	install := ratelimit.NewFixedWindow(4, window, clk)
	ip := ratelimit.NewFixedWindow(8, window, clk)

	buf := make([]byte, 0, 64)
	fill := time.Now()
	for i := range n {
		// A UUID-shaped install id, as the app sends.
		buf = append(buf[:0], "5f0c1d2e-0000-4000-8000-"...)
		buf = appendPadded(buf, uint64(i), 12)
		install.Allow(string(buf))
	}
	afterInstall := heapAfterGC()
	for i := range n {
		buf = append(buf[:0], "10."...)
		buf = strconv.AppendUint(buf, uint64(i>>16&255), 10)
		buf = append(buf, '.')
		buf = strconv.AppendUint(buf, uint64(i>>8&255), 10)
		buf = append(buf, '.')
		buf = strconv.AppendUint(buf, uint64(i&255), 10)
		ip.Allow(string(buf))
	}
	if n > 0 {
		r.NsPerAllow = time.Since(fill).Nanoseconds() / int64(2*n)
	}
	r.LiveBytes = heapAfterGC()
	r.InstallBytes = afterInstall - min(afterInstall, r.BaselineBytes)
	r.IPBytes = r.LiveBytes - min(r.LiveBytes, afterInstall)
	r.LiveKeys = install.Len() + ip.Len()

	clk.ns.Add(int64(window + time.Second))
	r.Evicted = install.Sweep() + ip.Sweep()
	r.EvictedBytes = heapAfterGC()
	r.KeysAfter = install.Len() + ip.Len()
	// The limiters must stay reachable until the last measurement, or the
	// collector would free them and flatter the after-eviction figure.
	runtime.KeepAlive(install)
	runtime.KeepAlive(ip)
	r.DurationMs = time.Since(began).Milliseconds()
	return r
}

// appendPadded appends v in hex, zero-padded to width digits.
func appendPadded(buf []byte, v uint64, width int) []byte {
	var tmp [16]byte
	s := strconv.AppendUint(tmp[:0], v, 16)
	for range width - len(s) {
		buf = append(buf, '0')
	}
	return append(buf, s...)
}
