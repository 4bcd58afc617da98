package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/offload-app/offload/postgres/pgtest"
)

// plainUpsertSQL is the baseline of issue 12 (postgres/testdata/
// reconcile_upsert.sql for pgbench): one single-statement upsert per
// reconcile, one transaction each.
const plainUpsertSQL = `INSERT INTO usage_counts (install_id, feature, count, created_at, updated_at)
VALUES ($1, 'breakdown', $2, now(), now())
ON CONFLICT (install_id, feature) DO UPDATE
SET count = GREATEST(usage_counts.count, EXCLUDED.count), updated_at = EXCLUDED.updated_at
RETURNING count`

// BenchmarkReconcileParallel measures the store's grouped reconciles at 1,
// 16 and 64 concurrent callers, each on its own install with a growing
// count (every call a real write, as offload-bench's reconcile workload),
// beside the plain upsert baseline driven the same way through a pool of as
// many connections as callers. It starts exactly that many goroutines
// itself instead of RunParallel, whose goroutine count is a multiple of
// GOMAXPROCS.
func BenchmarkReconcileParallel(b *testing.B) {
	db := pgtest.Database(b)
	for _, callers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("store/callers=%d", callers), func(b *testing.B) {
			s := mustOpen(b, pgtest.Schema(b, db))
			before := s.Stats()
			call := func(ctx context.Context, install string, n int64) error {
				_, err := s.Reconcile(ctx, install, "breakdown", n)
				return err
			}
			runCallers(b, callers, call)
			after := s.Stats()
			if c := after.Commits - before.Commits; c > 0 {
				b.ReportMetric(float64(after.Writes-before.Writes)/float64(c), "writes/commit")
			}
		})
		b.Run(fmt.Sprintf("plain-upsert/callers=%d", callers), func(b *testing.B) {
			url := pgtest.Schema(b, db)
			mustOpen(b, url) // creates the schema
			cfg, err := pgxpool.ParseConfig(url)
			if err != nil {
				b.Fatal(err)
			}
			cfg.MaxConns = int32(callers)
			pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			call := func(ctx context.Context, install string, n int64) error {
				var got int64
				return pool.QueryRow(ctx, plainUpsertSQL, install, n).Scan(&got)
			}
			runCallers(b, callers, call)
		})
	}
}

func runCallers(b *testing.B, callers int, call func(ctx context.Context, install string, n int64) error) {
	ctx := context.Background()
	// One write per caller first, so every measured call updates a row.
	for c := range callers {
		if err := call(ctx, fmt.Sprintf("bench-install-%04d", c), 0); err != nil {
			b.Fatal(err)
		}
	}
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
				if err := call(ctx, install, count); err != nil {
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
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reconciles/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "go-cpu-µs/op")
	}
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// processCPU is this process's user+system CPU time (the server's is not
// in it).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
