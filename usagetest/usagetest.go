// Package usagetest is the conformance suite of offload.UsageStore (and of
// offload.UsageCopier when the store is one). Every implementation runs it
// from its own tests, on backings opened with a known feature cap:
//
//	func TestConformance(t *testing.T) {
//		usagetest.Run(t, 4, func(t *testing.T) func() offload.UsageStore {
//			path := filepath.Join(t.TempDir(), "usage.db")
//			return func() offload.UsageStore { return mustOpen(t, path, WithMaxFeatures(4)) }
//		})
//	}
//
// Semantics the suite pins down, beyond the interface comments:
//   - Counts are int64 in [0, math.MaxInt64]: a negative local count, and an
//     increment past math.MaxInt64, fail and change nothing.
//   - Reserve at a quota of 0 or less fails with ErrQuotaExceeded and creates
//     no row; Release of an unknown key or of a 0 count changes nothing.
//   - Only Reconcile creating a row is limited by the feature cap: Increment,
//     Reserve and MergeRows are not, and every row they create counts
//     towards the cap.
//   - Expire deletes rows whose last write is before the given time, at most
//     limit of them; a limit of 0 or less deletes nothing.
//   - A call whose context is already done returns an error matching
//     ctx.Err() (errors.Is) and writes nothing.
//   - Install ids and feature names are compared exactly (case, spaces), and
//     EachRow lists them in byte order (Postgres: COLLATE "C").
//   - Every read sees every write acknowledged before it, by any instance on
//     the same backing (no cached counts).
//   - Close is idempotent; any call after Close fails with an error wrapping
//     offload.ErrStorage (Check: any error).
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
	"time"

	"github.com/offload-app/offload"
)

// Run runs the suite. maxFeatures is the feature cap every backing's stores
// are opened with; it must be at least 2. newBacking is called once per
// subtest and returns an opener; every call of the opener opens another
// store on the same backing storage (same file, same database), so the
// suite can test persistence across close and reopen and two instances at
// once. The opener fails the test itself if it cannot open. The suite closes
// every store it opens.
func Run(t *testing.T, maxFeatures int, newBacking func(t *testing.T) (open func() offload.UsageStore)) {
	t.Helper()
	if maxFeatures < 2 {
		t.Fatalf("usagetest.Run: maxFeatures %d, want at least 2", maxFeatures)
	}
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
		{"CountOfUnknownKeyIsZero", testCountUnknown},
		{"LargeCounts", testLargeCounts},
		{"NegativeCountIsRejected", testNegative},
		{"FeatureCap", testFeatureCap},
		{"FeatureCapCountsUncappedRows", testFeatureCapCountsUncapped},
		{"FeatureCapUnderConcurrency", testFeatureCapConcurrent},
		{"ReserveUpToQuota", testReserve},
		{"ReserveAtZeroQuotaCreatesNothing", testReserveZeroQuota},
		{"ConcurrentReservesAtQuotaMinusOne", testReserveConcurrent},
		{"Release", testRelease},
		{"Erase", testErase},
		{"EraseFreesTheFeatureCap", testEraseFreesCap},
		{"ExpireDeletesOldRowsInBatches", testExpire},
		{"Check", testCheck},
		{"EachRowInKeyOrder", testEachRow},
		{"EachRowStopsOnError", testEachRowStops},
		{"MergeRowsTakesTheMax", testMergeRows},
		{"MergeRowsIgnoresTheCap", testMergeIgnoresCap},
		{"MergeRowsIsOneTransaction", testMergeAtomic},
		{"ExpireByUpdateTime", testExpireByUpdateTime},
		{"DoneContextWritesNothing", testDoneContext},
		{"CloseIsIdempotentAndFinal", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, &backing{t: t, open: newBacking(t), cap: maxFeatures})
		})
	}
}

// backing opens stores on one subtest's storage and closes them at its end.
type backing struct {
	t    *testing.T
	open func() offload.UsageStore
	cap  int
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

// copier is the store as an offload.UsageCopier; it skips the test when the
// store is not one.
func copier(t *testing.T, s offload.UsageStore) offload.UsageCopier {
	t.Helper()
	c, ok := s.(offload.UsageCopier)
	if !ok {
		t.Skip("the store is not an offload.UsageCopier")
	}
	return c
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

func count(t *testing.T, s offload.UsageStore, id, feature string) int64 {
	t.Helper()
	got, err := s.Count(context.Background(), id, feature)
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	return got
}

// step is one call and the value it must return.
type step struct {
	op      string // "reconcile", "increment", "reserve" (n is the quota) or "count"
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
		case "reserve":
			var err error
			if got, err = s.Reserve(context.Background(), st.id, st.ft, st.n); err != nil {
				t.Fatalf("step %d: Reserve(quota %d): %v", i, st.n, err)
			}
		case "count":
			got = count(t, s, st.id, st.ft)
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
		{"count", installA, featureF, 0, 5},
	})
}

func testZero(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", installA, featureF, 0, 0},
		{"count", installA, featureF, 0, 0},
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
		{"count", installA, featureF, 0, 10},
	})
}

func testHigherRaises(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", installA, featureF, 3, 3},
		{"reconcile", installA, featureF, 4, 4},
		{"reconcile", installA, featureF, 100, 100},
		{"count", installA, featureF, 0, 100},
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
		{"count", installA, featureF, 0, 1},
		{"count", installA, featureG, 0, 20},
		{"count", installB, featureF, 0, 300},
		{"count", installB, featureG, 0, 1},
	})
}

func testKeysExact(t *testing.T, b *backing) {
	runSteps(t, b.store(), []step{
		{"reconcile", "install-abc", "feature", 1, 1},
		{"reconcile", "INSTALL-ABC", "feature", 2, 2},
		{"reconcile", "install-abc ", "feature", 3, 3},
		{"reconcile", "install-abc", "Feature", 4, 4},
		{"reconcile", "install-é✓日本", "feature", 5, 5},
		{"count", "install-abc", "feature", 0, 1},
		{"count", "INSTALL-ABC", "feature", 0, 2},
		{"count", "install-abc ", "feature", 0, 3},
		{"count", "install-abc", "Feature", 0, 4},
		{"count", "install-abc", "feature ", 0, 0},
		{"count", "install-é✓日本", "feature", 0, 5},
		{"count", "install-", "feature", 0, 0},
	})
}

func testPersists(t *testing.T, b *backing) {
	s1 := b.open()
	runSteps(t, s1, []step{
		{"reconcile", installA, featureF, 42, 42},
		{"increment", installA, featureG, 0, 1},
		{"reconcile", installB, featureF, 7, 7},
		{"reserve", installB, featureG, 5, 1},
	})
	if err := s1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	runSteps(t, b.store(), []step{
		{"count", installA, featureF, 0, 42},
		{"count", installA, featureG, 0, 1},
		{"count", installB, featureF, 0, 7},
		{"count", installB, featureG, 0, 1},
		{"reconcile", installA, featureF, 0, 42},
		{"increment", installA, featureG, 0, 2},
	})
}

// testTwoInstances: each instance sees the other's writes on its next call,
// so neither may cache a count.
func testTwoInstances(t *testing.T, b *backing) {
	s1, s2 := b.store(), b.store()
	runSteps(t, s1, []step{
		{"count", installA, featureF, 0, 0},
		{"reconcile", installA, featureF, 5, 5},
	})
	runSteps(t, s2, []step{
		{"count", installA, featureF, 0, 5},
		{"reconcile", installA, featureF, 3, 5},
		{"increment", installA, featureF, 0, 6},
	})
	runSteps(t, s1, []step{
		{"count", installA, featureF, 0, 6},
		{"increment", installA, featureF, 0, 7},
		{"reserve", installA, featureF, 100, 8},
	})
	runSteps(t, s2, []step{{"count", installA, featureF, 0, 8}})
	if err := s2.Release(context.Background(), installA, featureF); err != nil {
		t.Fatalf("Release: %v", err)
	}
	runSteps(t, s1, []step{{"count", installA, featureF, 0, 7}})
	if _, err := s1.Erase(context.Background(), installA); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	runSteps(t, s2, []step{{"count", installA, featureF, 0, 0}})
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
		if got := count(t, s, installA, featureF); got != top {
			t.Errorf("store %d: Count = %d, want %d", i, got, top)
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
		{"count", installA, featureF, 0, 5},
		{"count", installA, featureG, 0, 1},
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

// collect runs fn from goroutines on each of the stores and returns every
// answer and error; fn's answers come back unsorted.
func collect(stores []offload.UsageStore, perStore, each int, fn func(s offload.UsageStore, g, i int) (int64, error)) ([]int64, []error) {
	var mu sync.Mutex
	var got []int64
	var errs []error
	var wg sync.WaitGroup
	for si, s := range stores {
		for g := range perStore {
			wg.Go(func() {
				for i := range each {
					n, err := fn(s, si*perStore+g, i)
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else {
						got = append(got, n)
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return got, errs
}

// testConcurrentIncrements checks that increments are atomic read-modify-
// writes across goroutines and instances: the answers are exactly 1..n.
func testConcurrentIncrements(t *testing.T, b *backing) {
	const goroutines, each = 8, 25
	stores := []offload.UsageStore{b.store(), b.store()}
	got, errs := collect(stores, goroutines, each, func(s offload.UsageStore, _, _ int) (int64, error) {
		return s.Increment(context.Background(), installA, featureF)
	})
	for _, err := range errs {
		t.Errorf("Increment: %v", err)
	}
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
	runSteps(t, stores[1], []step{{"count", installA, featureF, 0, n}})
}

func testCountUnknown(t *testing.T, b *backing) {
	s := b.store()
	runSteps(t, s, []step{
		{"count", installA, featureF, 0, 0},
		{"reconcile", installB, featureF, 1, 1},
		{"count", installA, featureF, 0, 0},
		{"count", installB, featureG, 0, 0},
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
		{"reconcile", installB, featureG, math.MaxInt64 - 1, math.MaxInt64 - 1},
		{"reserve", installB, featureG, math.MaxInt64, math.MaxInt64},
	})
	if n, err := s.Increment(context.Background(), installB, featureF); err == nil {
		t.Fatalf("Increment past math.MaxInt64 = %d, want an error", n)
	} else {
		checkContentFree(t, err, installB, featureF)
	}
	if n, err := s.Reserve(context.Background(), installB, featureG, math.MaxInt64); !errors.Is(err, offload.ErrQuotaExceeded) {
		t.Fatalf("Reserve at math.MaxInt64 = %d, %v; want ErrQuotaExceeded", n, err)
	}
	runSteps(t, s, []step{
		{"reconcile", installB, featureF, 0, math.MaxInt64},
		{"count", installB, featureG, 0, math.MaxInt64},
		{"reconcile", installA, featureF, 0, big + 1},
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
		{"count", installA, featureF, 0, 0},
		{"reconcile", installA, featureF, 2, 2},
	})
	if _, err := s.Reconcile(context.Background(), installA, featureF, -1); err == nil {
		t.Fatal("Reconcile(-1) on a stored count: want an error")
	}
	runSteps(t, s, []step{{"count", installA, featureF, 0, 2}})
}

func feature(i int) string { return fmt.Sprintf("feature-%03d", i) }

// wantFeatureLimit fails unless a reconcile of a new feature is refused
// with ErrFeatureLimit, and leaves no row behind.
func wantFeatureLimit(t *testing.T, s offload.UsageStore, id, ft string) {
	t.Helper()
	n, err := s.Reconcile(context.Background(), id, ft, 3)
	if !errors.Is(err, offload.ErrFeatureLimit) {
		t.Fatalf("Reconcile of a new feature past the cap = %d, %v; want ErrFeatureLimit", n, err)
	}
	if errors.Is(err, offload.ErrStorage) {
		t.Errorf("the cap reported as a storage failure: %v", err)
	}
	checkContentFree(t, err, id, ft)
	if got := count(t, s, id, ft); got != 0 {
		t.Fatalf("a refused feature has count %d", got)
	}
}

func testFeatureCap(t *testing.T, b *backing) {
	s := b.store()
	for i := range b.cap {
		if got := reconcile(t, s, installA, feature(i), int64(i)); got != int64(i) {
			t.Fatalf("Reconcile of feature %d = %d", i, got)
		}
	}
	wantFeatureLimit(t, s, installA, feature(b.cap))
	wantFeatureLimit(t, b.store(), installA, "yet-another")
	// Existing features keep reconciling, up and (not) down.
	for i := range b.cap {
		if got := reconcile(t, s, installA, feature(i), 50); got != 50 {
			t.Fatalf("Reconcile of existing feature %d = %d", i, got)
		}
		if got := reconcile(t, s, installA, feature(i), 1); got != 50 {
			t.Fatalf("lower Reconcile of existing feature %d = %d", i, got)
		}
	}
	// The cap is per install.
	runSteps(t, s, []step{{"reconcile", installB, feature(b.cap), 9, 9}})
	// The server's own counting is never capped.
	runSteps(t, s, []step{
		{"increment", installA, "counted-by-server", 0, 1},
		{"reserve", installA, "reserved-by-server", 10, 1},
		{"reconcile", installA, "counted-by-server", 7, 7},
		{"reconcile", installA, "reserved-by-server", 7, 7},
	})
	wantFeatureLimit(t, s, installA, feature(b.cap))
}

// testFeatureCapCountsUncapped: rows made by Increment count towards the
// cap even though Increment itself is not refused.
func testFeatureCapCountsUncapped(t *testing.T, b *backing) {
	s := b.store()
	for i := range b.cap - 1 {
		increment(t, s, installA, feature(i))
	}
	runSteps(t, s, []step{{"reconcile", installA, "last-one", 4, 4}})
	wantFeatureLimit(t, s, installA, "one-too-many")
}

// testFeatureCapConcurrent: many goroutines on two instances each reconcile
// a distinct new feature of one install; exactly cap of them get a row.
func testFeatureCapConcurrent(t *testing.T, b *backing) {
	const perStore = 8
	stores := []offload.UsageStore{b.store(), b.store()}
	// cap-1 rows already, so the race is for the last place, plus more.
	for i := range b.cap - 1 {
		reconcile(t, stores[0], installA, feature(i), 1)
	}
	got, errs := collect(stores, perStore, 2, func(s offload.UsageStore, g, i int) (int64, error) {
		return s.Reconcile(context.Background(), installA, fmt.Sprintf("racer-%02d-%d", g, i), 5)
	})
	for _, err := range errs {
		if !errors.Is(err, offload.ErrFeatureLimit) {
			t.Errorf("Reconcile: %v, want ErrFeatureLimit or success", err)
		}
	}
	if len(got) != 1 {
		t.Errorf("%d new features stored at cap-1, want exactly 1", len(got))
	}
	stored := 0
	for g := range 2 * perStore {
		for i := range 2 {
			if n := count(t, stores[1], installA, fmt.Sprintf("racer-%02d-%d", g, i)); n != 0 {
				stored++
			}
		}
	}
	if stored != 1 {
		t.Errorf("%d racing features have a count, want 1", stored)
	}
	// From nothing: exactly cap of many distinct features get in.
	got, errs = collect(stores, perStore, 2, func(s offload.UsageStore, g, i int) (int64, error) {
		return s.Reconcile(context.Background(), installB, fmt.Sprintf("racer-%02d-%d", g, i), 1)
	})
	for _, err := range errs {
		if !errors.Is(err, offload.ErrFeatureLimit) {
			t.Errorf("Reconcile: %v, want ErrFeatureLimit or success", err)
		}
	}
	if len(got) != b.cap {
		t.Errorf("%d features stored from nothing, want the cap %d", len(got), b.cap)
	}
}

func testReserve(t *testing.T, b *backing) {
	s := b.store()
	runSteps(t, s, []step{
		{"reserve", installA, featureF, 3, 1},
		{"reserve", installA, featureF, 3, 2},
		{"reserve", installA, featureF, 3, 3},
	})
	for range 2 {
		n, err := s.Reserve(context.Background(), installA, featureF, 3)
		if !errors.Is(err, offload.ErrQuotaExceeded) {
			t.Fatalf("Reserve at the quota = %d, %v; want ErrQuotaExceeded", n, err)
		}
		if errors.Is(err, offload.ErrStorage) {
			t.Errorf("quota reported as a storage failure: %v", err)
		}
		checkContentFree(t, err, installA, featureF)
	}
	runSteps(t, s, []step{
		{"count", installA, featureF, 0, 3},
		{"reserve", installA, featureF, 4, 4}, // a higher quota lets one more in
		{"reconcile", installB, featureF, 10, 10},
	})
	if _, err := s.Reserve(context.Background(), installB, featureF, 5); !errors.Is(err, offload.ErrQuotaExceeded) {
		t.Fatalf("Reserve over the quota: %v, want ErrQuotaExceeded", err)
	}
	runSteps(t, s, []step{
		{"count", installB, featureF, 0, 10},
		{"reserve", installB, featureG, 1, 1}, // per feature
		{"increment", installA, featureF, 0, 5},
	})
}

// testReserveZeroQuota: a refused Reserve creates no row; the cap shows it.
func testReserveZeroQuota(t *testing.T, b *backing) {
	s := b.store()
	for i := range b.cap - 1 {
		reconcile(t, s, installA, feature(i), 1)
	}
	for _, q := range []int64{0, -1, math.MinInt64} {
		if n, err := s.Reserve(context.Background(), installA, "not-there", q); !errors.Is(err, offload.ErrQuotaExceeded) {
			t.Fatalf("Reserve(quota %d) = %d, %v; want ErrQuotaExceeded", q, n, err)
		}
	}
	runSteps(t, s, []step{
		{"count", installA, "not-there", 0, 0},
		{"reconcile", installA, "fits", 1, 1},
	})
}

// testReserveConcurrent is the quota race: at quota-1, exactly one of many
// concurrent reserves on two instances gets through.
func testReserveConcurrent(t *testing.T, b *backing) {
	const quota, perStore = 10, 8
	stores := []offload.UsageStore{b.store(), b.store()}
	reconcile(t, stores[0], installA, featureF, quota-1)
	got, errs := collect(stores, perStore, 3, func(s offload.UsageStore, _, _ int) (int64, error) {
		return s.Reserve(context.Background(), installA, featureF, quota)
	})
	for _, err := range errs {
		if !errors.Is(err, offload.ErrQuotaExceeded) {
			t.Errorf("Reserve: %v, want ErrQuotaExceeded or success", err)
		}
	}
	if len(got) != 1 || got[0] != quota {
		t.Errorf("successful reserves %v, want exactly one answering %d", got, quota)
	}
	runSteps(t, stores[1], []step{{"count", installA, featureF, 0, quota}})
	// From 0, concurrent reserves hand out exactly 1..quota.
	got, _ = collect(stores, perStore, 3, func(s offload.UsageStore, _, _ int) (int64, error) {
		return s.Reserve(context.Background(), installB, featureF, quota)
	})
	slices.Sort(got)
	if want := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(got, want) {
		t.Errorf("reserves from 0 answered %v, want %v", got, want)
	}
}

func testRelease(t *testing.T, b *backing) {
	s := b.store()
	release := func(id, ft string) {
		t.Helper()
		if err := s.Release(context.Background(), id, ft); err != nil {
			t.Fatalf("Release: %v", err)
		}
	}
	runSteps(t, s, []step{
		{"reserve", installA, featureF, 2, 1},
		{"reserve", installA, featureF, 2, 2},
	})
	release(installA, featureF)
	runSteps(t, s, []step{
		{"count", installA, featureF, 0, 1},
		{"reserve", installA, featureF, 2, 2}, // the released place is free again
	})
	release(installA, featureF)
	release(installA, featureF)
	release(installA, featureF) // never below 0
	runSteps(t, s, []step{{"count", installA, featureF, 0, 0}})
	// Release of an unknown key creates no row (the cap shows it).
	for i := range b.cap {
		release(installB, feature(i))
	}
	for i := range b.cap {
		reconcile(t, s, installB, fmt.Sprintf("real-%d", i), 1)
	}
	runSteps(t, s, []step{{"count", installB, feature(0), 0, 0}})
}

func testErase(t *testing.T, b *backing) {
	s := b.store()
	runSteps(t, s, []step{
		{"reconcile", installA, featureF, 5, 5},
		{"increment", installA, featureG, 0, 1},
		{"reserve", installA, "third", 10, 1},
		{"reconcile", installB, featureF, 7, 7},
		{"reconcile", strings.ToUpper(installA), featureF, 8, 8},
		{"reconcile", installA + "x", featureF, 9, 9},
	})
	erase := func(s offload.UsageStore, id string, want int64) {
		t.Helper()
		n, err := s.Erase(context.Background(), id)
		if err != nil {
			t.Fatalf("Erase: %v", err)
		}
		if n != want {
			t.Fatalf("Erase(%q) = %d rows, want %d", id, n, want)
		}
	}
	erase(s, "install-", 0)
	erase(s, installA, 3)
	erase(s, installA, 0) // idempotent
	erase(b.store(), installA, 0)
	runSteps(t, s, []step{
		{"count", installA, featureF, 0, 0},
		{"count", installA, featureG, 0, 0},
		{"count", installA, "third", 0, 0},
		{"count", installB, featureF, 0, 7},
		{"count", strings.ToUpper(installA), featureF, 0, 8},
		{"count", installA + "x", featureF, 0, 9},
		// The count starts again from 0.
		{"increment", installA, featureF, 0, 1},
		{"reconcile", installA, featureG, 0, 0},
	})
	erase(s, "never-seen", 0)
}

func testEraseFreesCap(t *testing.T, b *backing) {
	s := b.store()
	for i := range b.cap {
		reconcile(t, s, installA, feature(i), 1)
	}
	wantFeatureLimit(t, s, installA, "new")
	if n, err := s.Erase(context.Background(), installA); err != nil || n != int64(b.cap) {
		t.Fatalf("Erase = %d, %v; want %d", n, err, b.cap)
	}
	runSteps(t, s, []step{{"reconcile", installA, "new", 3, 3}})
}

func expire(t *testing.T, s offload.UsageStore, before time.Time, limit int, want int64) {
	t.Helper()
	n, err := s.Expire(context.Background(), before, limit)
	if err != nil {
		t.Fatalf("Expire: %v", err)
	}
	if n != want {
		t.Fatalf("Expire(%v, %d) = %d rows, want %d", before, limit, n, want)
	}
}

// testExpire uses the store's own clock: every row was written "now", so
// none is older than an hour ago and all are older than an hour ahead.
func testExpire(t *testing.T, b *backing) {
	s := b.store()
	runSteps(t, s, []step{
		{"reconcile", installA, featureF, 5, 5},
		{"increment", installA, featureG, 0, 1},
		{"reserve", installB, featureF, 3, 1},
		{"reconcile", installB, featureG, 0, 0},
		{"reconcile", "install-c", featureF, 2, 2},
	})
	now := time.Now()
	expire(t, s, now.Add(-time.Hour), 100, 0)
	expire(t, s, now.Add(time.Hour), 0, 0)
	expire(t, s, now.Add(time.Hour), -1, 0)
	runSteps(t, s, []step{{"count", installA, featureF, 0, 5}})
	expire(t, s, now.Add(time.Hour), 2, 2)
	expire(t, s, now.Add(time.Hour), 2, 2)
	expire(t, s, now.Add(time.Hour), 2, 1)
	expire(t, s, now.Add(time.Hour), 2, 0)
	runSteps(t, b.store(), []step{
		{"count", installA, featureF, 0, 0},
		{"count", installB, featureF, 0, 0},
		{"count", "install-c", featureF, 0, 0},
		{"increment", installA, featureF, 0, 1},
	})
}

// testExpireByUpdateTime puts rows with old update times in through
// MergeRows, so it needs no control of the store's clock.
func testExpireByUpdateTime(t *testing.T, b *backing) {
	s := b.store()
	c := copier(t, s)
	old := time.Date(2020, 3, 1, 12, 0, 0, 0, time.UTC)
	older := time.Date(2019, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := c.MergeRows(context.Background(), []offload.UsageRow{
		{InstallID: installA, Feature: featureF, Count: 4, UpdatedAt: older},
		{InstallID: installA, Feature: featureG, Count: 5, UpdatedAt: old},
		{InstallID: installB, Feature: featureF, Count: 6, UpdatedAt: old},
		{InstallID: installB, Feature: featureG, Count: 7, UpdatedAt: older},
	}); err != nil {
		t.Fatalf("MergeRows: %v", err)
	}
	runSteps(t, s, []step{
		{"reconcile", installB, featureG, 0, 7}, // written now: no longer old
		{"reconcile", "install-c", featureF, 1, 1},
	})
	expire(t, s, older, 100, 0) // strictly before
	expire(t, s, older.Add(time.Second), 100, 1)
	runSteps(t, s, []step{
		{"count", installA, featureF, 0, 0},
		{"count", installB, featureG, 0, 7},
	})
	expire(t, s, old.Add(24*time.Hour), 100, 2)
	runSteps(t, s, []step{
		{"count", installA, featureG, 0, 0},
		{"count", installB, featureF, 0, 0},
		{"count", installB, featureG, 0, 7},
		{"count", "install-c", featureF, 0, 1},
	})
}

func testCheck(t *testing.T, b *backing) {
	s := b.store()
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check on a healthy store: %v", err)
	}
	runSteps(t, s, []step{{"reconcile", installA, featureF, 3, 3}})
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check after a write: %v", err)
	}
	runSteps(t, s, []step{{"count", installA, featureF, 0, 3}})
}

func rows(t *testing.T, c offload.UsageCopier) []offload.UsageRow {
	t.Helper()
	var out []offload.UsageRow
	if err := c.EachRow(context.Background(), func(r offload.UsageRow) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("EachRow: %v", err)
	}
	return out
}

func testEachRow(t *testing.T, b *backing) {
	s := b.store()
	c := copier(t, s)
	if got := rows(t, c); len(got) != 0 {
		t.Fatalf("EachRow on an empty store: %v", got)
	}
	start := time.Now().Add(-time.Second)
	type kv struct{ id, ft string }
	var keys []kv
	for i := range 3 * b.cap {
		keys = append(keys, kv{fmt.Sprintf("install-%02d", i%7), fmt.Sprintf("f%03d", i)})
	}
	keys = append(keys, kv{"install-0", "z"}, kv{"install-00", "a"}, kv{"Install-00", "a"}, kv{"install-00", "A"})
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	want := map[kv]int64{}
	for i, k := range keys {
		if _, err := s.Increment(context.Background(), k.id, k.ft); err != nil {
			t.Fatal(err)
		}
		want[k] = int64(i + 1)
		reconcile(t, s, k.id, k.ft, int64(i+1))
	}
	end := time.Now().Add(time.Second)
	got := rows(t, copier(t, b.store()))
	if len(got) != len(keys) {
		t.Fatalf("EachRow listed %d rows, want %d", len(got), len(keys))
	}
	for i, r := range got {
		if i > 0 {
			p := got[i-1]
			if p.InstallID > r.InstallID || (p.InstallID == r.InstallID && p.Feature >= r.Feature) {
				t.Errorf("row %d (%q, %q) after (%q, %q): not in byte order", i, r.InstallID, r.Feature, p.InstallID, p.Feature)
			}
		}
		if w, ok := want[kv{r.InstallID, r.Feature}]; !ok || r.Count != w {
			t.Errorf("row (%q, %q) count %d, want %d (known %v)", r.InstallID, r.Feature, r.Count, w, ok)
		}
		if r.UpdatedAt.Location() != time.UTC || r.UpdatedAt.Nanosecond() != 0 ||
			r.UpdatedAt.Before(start.Truncate(time.Second)) || r.UpdatedAt.After(end) {
			t.Errorf("row %d UpdatedAt %v, want UTC, whole seconds, between %v and %v", i, r.UpdatedAt, start, end)
		}
	}
}

func testEachRowStops(t *testing.T, b *backing) {
	s := b.store()
	c := copier(t, s)
	for i := range 5 {
		reconcile(t, s, fmt.Sprintf("install-%d", i), featureF, 1)
	}
	stop := errors.New("stop here")
	calls := 0
	err := c.EachRow(context.Background(), func(offload.UsageRow) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Fatalf("EachRow = %v after %d calls; want fn's error after 2", err, calls)
	}
}

func testMergeRows(t *testing.T, b *backing) {
	s := b.store()
	c := copier(t, s)
	runSteps(t, s, []step{
		{"reconcile", installA, featureF, 10, 10},
		{"reconcile", installA, featureG, 3, 3},
	})
	before := rows(t, c)
	if len(before) != 2 || before[1].Feature != featureG {
		t.Fatalf("rows before the merge: %v", before)
	}
	past := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	future := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Second)
	if err := c.MergeRows(context.Background(), []offload.UsageRow{
		{InstallID: installA, Feature: featureF, Count: 4, UpdatedAt: future}, // lower count, later time
		{InstallID: installA, Feature: featureG, Count: 8, UpdatedAt: past},   // higher count, earlier time
		{InstallID: installB, Feature: featureF, Count: 6, UpdatedAt: past},   // new row
	}); err != nil {
		t.Fatalf("MergeRows: %v", err)
	}
	if err := c.MergeRows(context.Background(), nil); err != nil {
		t.Fatalf("MergeRows(nil): %v", err)
	}
	got := rows(t, copier(t, b.store()))
	want := []offload.UsageRow{
		{InstallID: installA, Feature: featureG, Count: 8, UpdatedAt: before[1].UpdatedAt},
		{InstallID: installA, Feature: featureF, Count: 10, UpdatedAt: future},
		{InstallID: installB, Feature: featureF, Count: 6, UpdatedAt: past},
	}
	slices.SortFunc(want, func(a, b offload.UsageRow) int {
		return strings.Compare(a.InstallID+"\x00"+a.Feature, b.InstallID+"\x00"+b.Feature)
	})
	if !slices.EqualFunc(got, want, func(a, b offload.UsageRow) bool {
		return a.InstallID == b.InstallID && a.Feature == b.Feature && a.Count == b.Count && a.UpdatedAt.Equal(b.UpdatedAt)
	}) {
		t.Errorf("rows after the merge:\n%v\nwant\n%v", got, want)
	}
	runSteps(t, s, []step{{"increment", installB, featureF, 0, 7}})
}

func testMergeIgnoresCap(t *testing.T, b *backing) {
	s := b.store()
	c := copier(t, s)
	var in []offload.UsageRow
	for i := range b.cap + 3 {
		in = append(in, offload.UsageRow{InstallID: installA, Feature: feature(i), Count: int64(i), UpdatedAt: time.Now()})
	}
	if err := c.MergeRows(context.Background(), in); err != nil {
		t.Fatalf("MergeRows past the cap: %v", err)
	}
	if got := rows(t, c); len(got) != b.cap+3 {
		t.Fatalf("%d rows after merging %d", len(got), b.cap+3)
	}
	runSteps(t, s, []step{{"reconcile", installA, feature(b.cap + 2), 100, 100}})
	wantFeatureLimit(t, s, installA, "one-more")
}

// testMergeAtomic: a merge with an invalid row changes nothing at all.
func testMergeAtomic(t *testing.T, b *backing) {
	s := b.store()
	c := copier(t, s)
	runSteps(t, s, []step{{"reconcile", installA, featureF, 2, 2}})
	err := c.MergeRows(context.Background(), []offload.UsageRow{
		{InstallID: installA, Feature: featureF, Count: 50, UpdatedAt: time.Now()},
		{InstallID: installB, Feature: featureF, Count: 5, UpdatedAt: time.Now()},
		{InstallID: installB, Feature: featureG, Count: -1, UpdatedAt: time.Now()},
	})
	if err == nil {
		t.Fatal("MergeRows with a negative count succeeded")
	}
	checkContentFree(t, err, installA, installB, featureF, featureG)
	runSteps(t, s, []step{
		{"count", installA, featureF, 0, 2},
		{"count", installB, featureF, 0, 0},
	})
}

// calls are every method of a store (and copier) with ctx, each returning
// its error only.
func calls(s offload.UsageStore, ctx context.Context) map[string]func() error {
	m := map[string]func() error{
		"Reconcile": func() error { _, err := s.Reconcile(ctx, installA, featureF, 5); return err },
		"Increment": func() error { _, err := s.Increment(ctx, installA, featureF); return err },
		"Reserve":   func() error { _, err := s.Reserve(ctx, installA, featureF, 100); return err },
		"Release":   func() error { return s.Release(ctx, installA, featureF) },
		"Count":     func() error { _, err := s.Count(ctx, installA, featureF); return err },
		"Erase":     func() error { _, err := s.Erase(ctx, installA); return err },
		"Expire":    func() error { _, err := s.Expire(ctx, time.Now().Add(time.Hour), 10); return err },
	}
	if c, ok := s.(offload.UsageCopier); ok {
		m["EachRow"] = func() error { return c.EachRow(ctx, func(offload.UsageRow) error { return nil }) }
		m["MergeRows"] = func() error {
			return c.MergeRows(ctx, []offload.UsageRow{{InstallID: installA, Feature: featureF, Count: 9, UpdatedAt: time.Now()}})
		}
	}
	return m
}

func testDoneContext(t *testing.T, b *backing) {
	s := b.store()
	runSteps(t, s, []step{{"reconcile", installA, featureF, 3, 3}})
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
		for name, call := range calls(s, c.ctx) {
			if err := call(); !errors.Is(err, c.want) {
				t.Errorf("%s with a %s context: error %v, want %v", name, c.name, err, c.want)
			}
		}
		if err := s.Check(c.ctx); err == nil {
			t.Errorf("Check with a %s context: nil error", c.name)
		}
	}
	runSteps(t, s, []step{{"count", installA, featureF, 0, 3}})
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
	for name, call := range calls(s, context.Background()) {
		err := call()
		if !errors.Is(err, offload.ErrStorage) {
			t.Errorf("%s after Close: error %v, want one wrapping offload.ErrStorage", name, err)
		}
		checkContentFree(t, err, installA, featureF)
	}
	if err := s.Check(context.Background()); err == nil {
		t.Error("Check after Close: nil error")
	}
	runSteps(t, b.store(), []step{{"count", installA, featureF, 0, 1}})
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
