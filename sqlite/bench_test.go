package sqlite_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkReconcileParallel measures reconciles through the group commit at
// 1, 16 and 64 concurrent callers with synchronous=FULL. Every call sends a
// higher local count for its caller's install, so every one is a real write.
// It starts exactly that many goroutines itself instead of RunParallel,
// whose goroutine count is a multiple of GOMAXPROCS.
func BenchmarkReconcileParallel(b *testing.B) {
	for _, callers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := MustOpenDB(b)
			ctx := context.Background()
			before := s.Stats()
			var next atomic.Int64
			lat := make([][]time.Duration, callers)
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			start := time.Now()
			for c := range callers {
				install := fmt.Sprintf("bench-install-%04d", c)
				wg.Go(func() {
					var count int64
					for next.Add(1) <= int64(b.N) {
						count++
						t0 := time.Now()
						if _, err := s.Reconcile(ctx, install, "breakdown", count); err != nil {
							b.Error(err)
							return
						}
						lat[c] = append(lat[c], time.Since(t0))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			cpu := processCPU() - cpu0
			b.StopTimer()
			after := s.Stats()
			all := slices.Concat(lat...)
			slices.Sort(all)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reconciles/s")
			if cpu > 0 {
				// Callers and writer together; steadier than reconciles/s on
				// a shared machine.
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			}
			commits := after.Commits - before.Commits
			if commits > 0 {
				b.ReportMetric(float64(after.Writes-before.Writes)/float64(commits), "writes/commit")
			}
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}
