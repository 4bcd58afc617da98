package ratelimit

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"
)

// MemoryReport is the heap cost of limiters filled with distinct keys, as
// measured by MeasureMemory.
type MemoryReport struct {
	Keys      int         // distinct keys per limiter
	InstallID Measurement // keys shaped like install ids (36-char UUID strings)
	IPv4      Measurement // keys shaped like client IPs ("203.0.113.7")
}

// Measurement is one limiter's heap use. Heap figures are HeapAlloc after a
// forced GC, relative to the heap before the limiter was made.
type Measurement struct {
	LiveBytes       int64 // with every key in the current window
	AfterEvictBytes int64 // after the window passed and a sweep ran
	LiveKeys        int   // Len() when full (below Keys only on a hash collision)
	KeysAfterEvict  int   // Len() after the sweep; 0 unless eviction is broken
}

// LiveMiB and AfterEvictMiB return the figures in MiB, for reports.
func (m Measurement) LiveMiB() float64       { return float64(m.LiveBytes) / (1 << 20) }
func (m Measurement) AfterEvictMiB() float64 { return float64(m.AfterEvictBytes) / (1 << 20) }

// MeasureMemory fills a limiter with keys distinct install ids, measures the
// heap, lets the window pass on a fake clock, sweeps and measures again; then
// does the same with keys distinct IPv4 strings. It forces garbage
// collections and takes a few seconds at a million keys; it is meant for
// benchmarks and the offload-bench command, not for request paths. Run it
// while nothing else allocates, or the figures include that too.
func MeasureMemory(keys int) (MemoryReport, error) {
	if keys < 1 {
		return MemoryReport{}, errors.New("ratelimit: MeasureMemory needs at least one key")
	}
	r := MemoryReport{Keys: keys}
	var err error
	if r.InstallID, err = measure(keys, installIDKeys()); err != nil {
		return r, fmt.Errorf("install id keys: %w", err)
	}
	if r.IPv4, err = measure(keys, ipv4Keys()); err != nil {
		return r, fmt.Errorf("ipv4 keys: %w", err)
	}
	return r, nil
}

func measure(keys int, next func() string) (Measurement, error) {
	const window = time.Minute
	clock := &steppedClock{}
	base := heapAlloc()

	l := NewFixedWindow(1, window, clock)
	for range keys {
		// Each key string is garbage as soon as Allow returns: only the
		// limiter's own memory survives the GC in heapAlloc.
		l.Allow(next())
	}
	var m Measurement
	m.LiveBytes = heapAlloc() - base
	m.LiveKeys = l.Len()

	clock.advance(window)
	l.Sweep()
	m.AfterEvictBytes = heapAlloc() - base
	m.KeysAfterEvict = l.Len()
	runtime.KeepAlive(l)
	if m.KeysAfterEvict != 0 {
		return m, fmt.Errorf("%d keys left after the window passed and a sweep ran", m.KeysAfterEvict)
	}
	return m, nil
}

func heapAlloc() int64 {
	// Two cycles: the first may leave objects freed by finalizers or
	// swept late; the second settles HeapAlloc.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// installIDKeys returns a generator of random version-4 UUID strings, the
// shape of the app's install ids. A fixed seed keeps runs comparable.
func installIDKeys() func() string {
	rng := rand.New(rand.NewPCG(1, 2))
	var b [16]byte
	var s [36]byte
	return func() string {
		for i := 0; i < 16; i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		hex.Encode(s[0:8], b[0:4])
		s[8] = '-'
		hex.Encode(s[9:13], b[4:6])
		s[13] = '-'
		hex.Encode(s[14:18], b[6:8])
		s[18] = '-'
		hex.Encode(s[19:23], b[8:10])
		s[23] = '-'
		hex.Encode(s[24:36], b[10:16])
		return string(s[:])
	}
}

// ipv4Keys returns a generator of distinct IPv4 address strings, counting up
// from 10.0.0.0 (16,777,216 before they repeat).
func ipv4Keys() func() string {
	var n uint32
	return func() string {
		a := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
		n++
		return a.String()
	}
}

// steppedClock is a clock that only moves when told to; it lets
// MeasureMemory pass a window without waiting for it.
type steppedClock struct {
	offset atomic.Int64
}

// stepEpochUnix is an arbitrary fixed instant (2025-01-01) for steppedClock.
const stepEpochUnix = 1735689600

func (c *steppedClock) Now() time.Time {
	return time.Unix(stepEpochUnix, c.offset.Load())
}
func (c *steppedClock) advance(d time.Duration) { c.offset.Add(int64(d)) }
