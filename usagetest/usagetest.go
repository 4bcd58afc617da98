// Package usagetest is the conformance suite of offload.UsageStore. Every
// implementation (SQLite now, Postgres later) runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		usagetest.Run(t, func(t *testing.T) func() offload.UsageStore {
//			path := filepath.Join(t.TempDir(), "usage.db")
//			return func() offload.UsageStore { return mustOpen(t, path) }
//		})
//	}
//
// Semantics the suite pins down, beyond the interface comments:
//   - Counts are int64 in [0, math.MaxInt64]: a negative local count, and an
//     increment past math.MaxInt64, fail and change nothing.
//   - Total saturates at math.MaxInt64 rather than overflowing.
//   - A call whose context is already done returns an error matching
//     ctx.Err() (errors.Is) and writes nothing.
//   - Install ids and feature names are compared exactly (case, spaces).
//   - Close is idempotent; any call after Close fails with an error wrapping
//     offload.ErrStorage.
//   - Error messages never contain the install id or feature name.
package usagetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/offload-app/offload"
)

// Run runs the suite. newBacking is called once per subtest and returns an
// opener; every call of the opener opens another store on the same backing
// storage (same file, same database), so the suite can test persistence
// across close and reopen and two instances at once. The opener fails the
// test itself if it cannot open. The suite closes every store it opens.
func Run(t *testing.T, newBacking func(t *testing.T) (open func() offload.UsageStore)) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b *backing)
	}{
		{"FirstReconcileStoresCount", testFirstReconcile},
		{"ZeroCountIsStored", testZero},
		{"LowerCountNeverLowers", testLowerNeverLowers},
		{"HigherCountRaises", testHigherRaises},
		{"FeaturesAndInstallsAreIndependent", testIndependent},
		{"KeysAreExact", testKeysExact},
		{"PersistsAcrossCloseAndReopen", testPersists},
		{"TwoInstancesShareOneBacking", testTwoInstances},
		{"ConcurrentReconcilesOnTwoInstances", testConcurrentReconciles},
		{"IncrementCountsFromOne", testIncrement},
		{"IncrementAndReconcileUseMax", testIncrementWithReconcile},
		{"ConcurrentIncrementsAreAtomic", testConcurrentIncrements},
		{"TotalSumsOneInstallOnly", testTotal},
		{"TotalOfUnknownInstallIsZero", testTotalUnknown},
		{"LargeCounts", testLargeCounts},
		{"TotalSaturates", testTotalSaturates},
		{"NegativeCountIsRejected", testNegative},
		{"DoneContextWritesNothing", testDoneContext},
		{"CloseIsIdempotentAndFinal", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, &backing{t: t, open: newBacking(t)})
		})
	}
}

// backing opens stores on one subtest's storage and closes them at its end.
type backing struct {
	t    *testing.T
	open func() offload.UsageStore
}

func (b *backing) store() offload.UsageStore {
	b.t.Helper()
	s := b.open()
	b.t.Cleanup(func() {
		if err := s.Close(); err != nil {
			b.t.Errorf("Close: %v", err)
		}
	})
	return s
}

func reconcile(t *testing.T, s offload.UsageStore, id, feature string, n int64) int64 {
	t.Helper()
	got, err := s.Reconcile(context.Background(), id, feature, n)
	if err != nil {
		t.Fatalf("Reconcile(%d): %v", n, err)
	}
	return got
}

func increment(t *testing.T, s offload.UsageStore, id, feature string) int64 {
	t.Helper()
	got, err := s.Increment(context.Background(), id, feature)
	if err != nil {
		t.Fatalf("Increment: %v", err)
	}
	return got
}

func total(t *testing.T, s offload.UsageStore, id string) int64 {
	t.Helper()
	got, err := s.(interface {
		Total(context.Context, string) (int64, error)
	}).Total(context.Background(), id) // until the suite moves to Count
	if err != nil {
		t.Fatalf("Total: %v", err)
	}
	return got
}

// step is one call and the value it must return.
type step struct {
	op      string // "reconcile", "increment" or "total"
	id, ft  string
	n, want int64
}

func runSteps(t *testing.T, s offload.UsageStore, steps []step) {
	t.Helper()
	for i, st := range steps {
		var got int64
		switch st.op {
		case "reconcile":
			got = reconcile(t, s, st.id, st.ft, st.n)
		case "increment":
			got = increment(t, s, st.id, st.ft)
		case "total":
			got = total(t, s, st.id)
		default:
			t.Fatalf("step %d: unknown op %q", i, st.op)
		}
		if got != st.want {
			t.Fatalf("step %d: %s(%q, %q, %d) = %d, want %d", i, st.op, st.id, st.ft, st.n, got, st.want)
		}
	}
}

const (
	installA = "install-aaaaaaaa"
	installB = "install-bbbbbbbb"
	featureF = "breakdown"
	featureG = "other-feature"
)

func testFirstReconcile(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", installA, featureF, 5, 5},
		{"total", installA, "", 0, 5},
	})
}

func testZero(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", installA, featureF, 0, 0},
		{"total", installA, "", 0, 0},
		{"increment", installA, featureF, 0, 1},
	})
}

func testLowerNeverLowers(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", installA, featureF, 10, 10},
		{"reconcile", installA, featureF, 3, 10},
		{"reconcile", installA, featureF, 0, 10},
		{"reconcile", installA, featureF, 9, 10},
		{"reconcile", installA, featureF, 10, 10},
		{"total", installA, "", 0, 10},
	})
}

func testHigherRaises(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", installA, featureF, 3, 3},
		{"reconcile", installA, featureF, 4, 4},
		{"reconcile", installA, featureF, 100, 100},
		{"total", installA, "", 0, 100},
	})
}

func testIndependent(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", installA, featureF, 1, 1},
		{"reconcile", installA, featureG, 20, 20},
		{"reconcile", installB, featureF, 300, 300},
		{"reconcile", installA, featureF, 0, 1},
		{"reconcile", installA, featureG, 0, 20},
		{"reconcile", installB, featureF, 0, 300},
		{"reconcile", installB, featureG, 0, 0},
		{"increment", installB, featureG, 0, 1},
		{"reconcile", installA, featureG, 0, 20},
		{"total", installA, "", 0, 21},
		{"total", installB, "", 0, 301},
	})
}

func testKeysExact(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", "install-abc", "feature", 1, 1},
		{"reconcile", "INSTALL-ABC", "feature", 2, 2},
		{"reconcile", "install-abc ", "feature", 3, 3},
		{"reconcile", "install-abc", "Feature", 4, 4},
		{"reconcile", "install-é✓日本", "feature", 5, 5},
		{"total", "install-abc", "", 0, 5},
		{"total", "INSTALL-ABC", "", 0, 2},
		{"total", "install-abc ", "", 0, 3},
		{"total", "install-é✓日本", "", 0, 5},
		{"total", "install-", "", 0, 0},
	})
}

func testPersists(t *testing.T, b *backing) {
	s1 := b.open()
	runSteps(t, s1, []step{
		{"reconcile", installA, featureF, 42, 42},
		{"increment", installA, featureG, 0, 1},
		{"reconcile", installB, featureF, 7, 7},
	})
	if err := s1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	runSteps(t, b.store(), []step{
		{"total", installA, "", 0, 43},
		{"total", installB, "", 0, 7},
		{"reconcile", installA, featureF, 0, 42},
		{"increment", installA, featureG, 0, 2},
	})
}

func testTwoInstances(t *testing.T, b *backing) {
	s1, s2 := b.store(), b.store()
	runSteps(t, s1, []step{{"reconcile", installA, featureF, 5, 5}})
	runSteps(t, s2, []step{
		{"total", installA, "", 0, 5},
		{"reconcile", installA, featureF, 3, 5},
		{"increment", installA, featureF, 0, 6},
	})
	runSteps(t, s1, []step{
		{"total", installA, "", 0, 6},
		{"increment", installA, featureF, 0, 7},
	})
}

// testConcurrentReconciles is the race: 16 goroutines on each of two
// instances reconcile every value 0..199, each in its own order, for one key.
// No call may fail, each answer must be at least the value sent and never
// below an answer the same goroutine got before, and the end value is 199.
func testConcurrentReconciles(t *testing.T, b *backing) {
	const goroutines, top = 16, 199
	stores := []offload.UsageStore{b.store(), b.store()}
	var wg sync.WaitGroup
	errs := make(chan error, len(stores)*goroutines)
	for si, s := range stores {
		for g := range goroutines {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(si), uint64(g)))
				var last int64
				for _, n := range rng.Perm(top + 1) {
					got, err := s.Reconcile(context.Background(), installA, featureF, int64(n))
					if err != nil {
						errs <- fmt.Errorf("store %d goroutine %d: Reconcile(%d): %w", si, g, n, err)
						return
					}
					if got < int64(n) || got < last || got > top {
						errs <- fmt.Errorf("store %d goroutine %d: Reconcile(%d) = %d after %d", si, g, n, got, last)
						return
					}
					last = got
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, s := range stores {
		if got := total(t, s, installA); got != top {
			t.Errorf("store %d: Total = %d, want %d", i, got, top)
		}
	}
	runSteps(t, b.store(), []step{{"reconcile", installA, featureF, 0, top}})
}

func testIncrement(t *testing.T, b *backing) {
	s := b.store()
	for want := int64(1); want <= 5; want++ {
		if got := increment(t, s, installA, featureF); got != want {
			t.Fatalf("Increment #%d = %d", want, got)
		}
	}
	runSteps(t, s, []step{
		{"increment", installA, featureG, 0, 1},
		{"total", installA, "", 0, 6},
	})
}

func testIncrementWithReconcile(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", installA, featureF, 10, 10},
		{"increment", installA, featureF, 0, 11},
		{"reconcile", installA, featureF, 11, 11},
		{"increment", installB, featureF, 0, 1},
		{"increment", installB, featureF, 0, 2},
		{"reconcile", installB, featureF, 1, 2},
		{"reconcile", installB, featureF, 5, 5},
		{"increment", installB, featureF, 0, 6},
	})
}

// testConcurrentIncrements checks that increments are atomic read-modify-
// writes across goroutines and instances: the answers are exactly 1..n.
func testConcurrentIncrements(t *testing.T, b *backing) {
	const goroutines, each = 8, 25
	stores := []offload.UsageStore{b.store(), b.store()}
	var mu sync.Mutex
	var got []int64
	var wg sync.WaitGroup
	for _, s := range stores {
		for range goroutines {
			wg.Go(func() {
				for range each {
					n, err := s.Increment(context.Background(), installA, featureF)
					if err != nil {
						t.Errorf("Increment: %v", err)
						return
					}
					mu.Lock()
					got = append(got, n)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	const n = 2 * goroutines * each
	slices.Sort(got)
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("answers sorted: [%d] = %d, want 1..%d each once", i, v, n)
		}
	}
	if len(got) != n {
		t.Fatalf("%d answers, want %d", len(got), n)
	}
	runSteps(t, stores[0], []step{{"total", installA, "", 0, n}})
}

func testTotal(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", installA, featureF, 3, 3},
		{"reconcile", installA, featureG, 4, 4},
		{"increment", installA, "third", 0, 1},
		{"reconcile", installB, featureF, 100, 100},
		{"total", installA, "", 0, 8},
		{"total", installB, "", 0, 100},
	})
}

func testTotalUnknown(t *testing.T, b *backing) {
	s := b.store()
	runSteps(t, s, []step{{"total", installA, "", 0, 0}})
	runSteps(t, s, []step{
		{"reconcile", installB, featureF, 1, 1},
		{"total", installA, "", 0, 0},
	})
}

// testLargeCounts: 1<<53+1 has no exact float64, so it catches a store that
// passes counts through floating point; math.MaxInt64 is the top.
func testLargeCounts(t *testing.T, b *backing) {
	const big = 1<<53 + 1
	s := b.store()
	runSteps(t, s, []step{
		{"reconcile", installA, featureF, big, big},
		{"increment", installA, featureF, 0, big + 1},
		{"reconcile", installA, featureG, math.MaxInt64 - 1, math.MaxInt64 - 1},
		{"increment", installA, featureG, 0, math.MaxInt64},
		{"reconcile", installB, featureF, math.MaxInt64, math.MaxInt64},
		{"reconcile", installB, featureF, big, math.MaxInt64},
	})
	if n, err := s.Increment(context.Background(), installB, featureF); err == nil {
		t.Fatalf("Increment past math.MaxInt64 = %d, want an error", n)
	} else {
		checkContentFree(t, err, installB, featureF)
	}
	runSteps(t, s, []step{
		{"reconcile", installB, featureF, 0, math.MaxInt64},
		{"reconcile", installA, featureF, 0, big + 1},
	})
}

func testTotalSaturates(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", installA, featureF, math.MaxInt64, math.MaxInt64},
		{"reconcile", installA, featureG, math.MaxInt64 - 5, math.MaxInt64 - 5},
		{"increment", installA, "third", 0, 1},
		{"total", installA, "", 0, math.MaxInt64},
	})
}

func testNegative(t *testing.T, b *backing) {
	s := b.store()
	for _, n := range []int64{-1, math.MinInt64} {
		if got, err := s.Reconcile(context.Background(), installA, featureF, n); err == nil {
			t.Fatalf("Reconcile(%d) = %d, want an error", n, got)
		} else {
			checkContentFree(t, err, installA, featureF)
		}
	}
	runSteps(t, s, []step{
		{"total", installA, "", 0, 0},
		{"reconcile", installA, featureF, 2, 2},
	})
	if _, err := s.Reconcile(context.Background(), installA, featureF, -1); err == nil {
		t.Fatal("Reconcile(-1) on a stored count: want an error")
	}
	runSteps(t, s, []step{{"total", installA, "", 0, 2}})
}

func testDoneContext(t *testing.T, b *backing) {
	s := b.store()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), -1)
	defer cancel2()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"cancelled", cancelled, context.Canceled},
		{"deadline", expired, context.DeadlineExceeded},
	} {
		calls := map[string]func() (int64, error){
			"Reconcile": func() (int64, error) { return s.Reconcile(c.ctx, installA, featureF, 5) },
			"Increment": func() (int64, error) { return s.Increment(c.ctx, installA, featureF) },
			"Count":     func() (int64, error) { return s.Count(c.ctx, installA, featureF) },
		}
		for name, call := range calls {
			if _, err := call(); !errors.Is(err, c.want) {
				t.Errorf("%s with a %s context: error %v, want %v", name, c.name, err, c.want)
			}
		}
	}
	runSteps(t, s, []step{{"total", installA, "", 0, 0}})
}

func testClose(t *testing.T, b *backing) {
	s := b.open()
	runSteps(t, s, []step{{"reconcile", installA, featureF, 1, 1}})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	calls := map[string]func() (int64, error){
		"Reconcile": func() (int64, error) { return s.Reconcile(context.Background(), installA, featureF, 5) },
		"Increment": func() (int64, error) { return s.Increment(context.Background(), installA, featureF) },
		"Count":     func() (int64, error) { return s.Count(context.Background(), installA, featureF) },
	}
	for name, call := range calls {
		_, err := call()
		if !errors.Is(err, offload.ErrStorage) {
			t.Errorf("%s after Close: error %v, want one wrapping offload.ErrStorage", name, err)
		}
		checkContentFree(t, err, installA, featureF)
	}
	runSteps(t, b.store(), []step{{"total", installA, "", 0, 1}})
}

// checkContentFree fails if err's message carries any of the given values:
// errors are logged, and install ids and feature names must not be.
func checkContentFree(t *testing.T, err error, values ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, v := range values {
		if strings.Contains(err.Error(), v) {
			t.Errorf("error message %q contains a caller value", err.Error())
		}
	}
}
