package ratelimit

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// benchKeys returns n install-id-shaped keys, made before the timer starts so
// the benchmarks measure Allow, not key formatting.
func benchKeys(n int) []string {
	next := installIDKeys()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = next()
	}
	return keys
}

// BenchmarkAllowOneKey is the per-install case: one key, mostly denied once
// over the limit (both paths take the lock and one map lookup).
func BenchmarkAllowOneKey(b *testing.B) {
	l := NewFixedWindow(1<<30, time.Minute, &fakeClock{})
	key := benchKeys(1)[0]
	for b.Loop() {
		l.Allow(key)
	}
}

// BenchmarkAllowDistinctKeys cycles through n live keys spread over the
// shards, the per-IP case; at 100,000 keys the maps outgrow the CPU caches and
// each call pays a memory miss.
func BenchmarkAllowDistinctKeys(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			l := NewFixedWindow(1<<30, time.Minute, &fakeClock{})
			keys := benchKeys(n)
			for _, k := range keys {
				l.Allow(k) // warm the maps so the loop measures the steady state
			}
			i := 0
			for b.Loop() {
				l.Allow(keys[i])
				i++
				if i == len(keys) {
					i = 0
				}
			}
		})
	}
}

// BenchmarkAllowSystemClock is the cache-warm case with the real clock,
// which is what the server pays.
func BenchmarkAllowSystemClock(b *testing.B) {
	l := NewFixedWindow(1<<30, time.Hour, nil)
	keys := benchKeys(1000)
	for _, k := range keys {
		l.Allow(k)
	}
	i := 0
	for b.Loop() {
		l.Allow(keys[i])
		i++
		if i == len(keys) {
			i = 0
		}
	}
}

// BenchmarkAllowParallel runs Allow from GOMAXPROCS×p goroutines, like 50–200
// concurrent requests, on distinct keys (per-IP) and on one shared key
// (per-install id hot spot). 1,000 keys keep the tables in cache, so the
// figure is about lock contention, not memory latency.
func BenchmarkAllowParallel(b *testing.B) {
	keys := benchKeys(1000)
	for _, tc := range []struct {
		name string
		key  func(i int) string
	}{
		{"distinct", func(i int) string { return keys[i%len(keys)] }},
		{"onekey", func(int) string { return keys[0] }},
	} {
		for _, p := range []int{25, 100} {
			b.Run(tc.name+"/p"+strconv.Itoa(p), func(b *testing.B) {
				l := NewFixedWindow(1<<30, time.Minute, &fakeClock{})
				for _, k := range keys {
					l.Allow(k)
				}
				var start atomic.Int64
				b.SetParallelism(p)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := int(start.Add(7919))
					for pb.Next() {
						l.Allow(tc.key(i))
						i++
					}
				})
			})
		}
	}
}

// BenchmarkAllowWindowTurnover measures Allow when the window rolls over
// every 1,000 calls, so the amortised sweep and map re-creation are included.
func BenchmarkAllowWindowTurnover(b *testing.B) {
	clock := &fakeClock{}
	l := NewFixedWindow(1<<30, time.Second, clock)
	keys := benchKeys(1000)
	i := 0
	for b.Loop() {
		l.Allow(keys[i])
		i++
		if i == len(keys) {
			i = 0
			clock.Advance(time.Second)
		}
	}
}

// BenchmarkMemory reports the heap held by a limiter with 1,000,000 live
// keys and after the window passed and eviction ran. Its ns/op is the time of
// the whole measurement and is not interesting.
func BenchmarkMemory(b *testing.B) {
	const keys = 1_000_000
	var r MemoryReport
	for b.Loop() {
		var err error
		if r, err = MeasureMemory(keys); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(r.InstallID.LiveMiB(), "MiB-live-uuid")
	b.ReportMetric(r.InstallID.AfterEvictMiB(), "MiB-after-evict-uuid")
	b.ReportMetric(r.IPv4.LiveMiB(), "MiB-live-ipv4")
	b.ReportMetric(r.IPv4.AfterEvictMiB(), "MiB-after-evict-ipv4")
}
