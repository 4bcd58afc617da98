package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/sqlite"
)

func featureReconcile(install, feature string, n int64) func(*sqlite.Store) (int64, error) {
	return func(s *sqlite.Store) (int64, error) { return s.Reconcile(context.Background(), install, feature, n) }
}

func featureIncrement(install, feature string) func(*sqlite.Store) (int64, error) {
	return func(s *sqlite.Store) (int64, error) { return s.Increment(context.Background(), install, feature) }
}

func reserveCall(install string, quota int64) func(*sqlite.Store) (int64, error) {
	return func(s *sqlite.Store) (int64, error) {
		return s.Reserve(context.Background(), install, "breakdown", quota)
	}
}

func releaseCall(install string) func(*sqlite.Store) (int64, error) {
	return func(s *sqlite.Store) (int64, error) { return 0, s.Release(context.Background(), install, "breakdown") }
}

// TestFeatureCapInOneBatch: the cap is counted inside the batch, so two new
// features of one install queued together at cap-1 get one place between
// them, in queue order; a key repeated in the batch is one feature.
func TestFeatureCapInOneBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path, sqlite.WithMaxFeatures(3))
	mustReconcile(t, s, "install-x", "old-1", 1)
	mustReconcile(t, s, "install-x", "old-2", 2)
	s.Close()

	calls := []func(*sqlite.Store) (int64, error){
		featureReconcile("install-x", "new-1", 5),
		featureReconcile("install-x", "new-2", 6),
		featureReconcile("install-x", "old-1", 9),
		featureReconcile("install-x", "new-1", 7), // the row made above
		featureIncrement("install-x", "counted"),  // never capped
		featureReconcile("install-x", "new-3", 1),
		featureReconcile("install-y", "new-1", 4), // another install
	}
	g := newGate()
	s, release := holdFirstBatch(t, g, path, calls, sqlite.WithMaxFeatures(3))
	out := release()
	checkOutcomes(t, out[1:], []outcome{
		{5, nil}, {0, offload.ErrFeatureLimit}, {9, nil}, {7, nil}, {1, nil}, {0, offload.ErrFeatureLimit}, {4, nil},
	})
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, len(calls)}) {
		t.Errorf("batch sizes %v, want [1 %d]", sizes, len(calls))
	}
	for feature, want := range map[string]int64{"old-1": 9, "old-2": 2, "new-1": 7, "new-2": 0, "new-3": 0, "counted": 1} {
		if got := mustCountOf(t, s, "install-x", feature); got != want {
			t.Errorf("Count(%s) = %d, want %d", feature, got, want)
		}
	}
	if st := s.Stats(); st.Failures != 0 {
		t.Errorf("stats %+v: the cap is not a storage failure", st)
	}
}

// TestFeatureCapAcrossChunks: more new features of one install than one
// statement holds; the count carries from chunk to chunk.
func TestFeatureCapAcrossChunks(t *testing.T) {
	const limit, n = 70, 100
	var calls []func(*sqlite.Store) (int64, error)
	var want []outcome
	for i := range n {
		calls = append(calls, featureReconcile("install-z", fmt.Sprintf("f%03d", i), int64(i)))
		if i < limit {
			want = append(want, outcome{int64(i), nil})
		} else {
			want = append(want, outcome{0, offload.ErrFeatureLimit})
		}
	}
	g := newGate()
	s, release := holdFirstBatch(t, g, filepath.Join(t.TempDir(), "usage.db"), calls, sqlite.WithMaxFeatures(limit))
	checkOutcomes(t, release()[1:], want)
	rows := 0
	if err := s.EachRow(context.Background(), func(r offload.UsageRow) error {
		if r.InstallID == "install-z" {
			rows++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if rows != limit {
		t.Errorf("%d rows for the install, want the cap %d", rows, limit)
	}
}

func TestNoFeatureCap(t *testing.T) {
	s := MustOpenDB(t, sqlite.WithMaxFeatures(0))
	for i := range 3 * sqlite.DefaultMaxFeatures {
		mustReconcile(t, s, "install-a", fmt.Sprintf("f%03d", i), 1)
	}
}

func TestDefaultFeatureCap(t *testing.T) {
	s := MustOpenDB(t)
	for i := range sqlite.DefaultMaxFeatures {
		mustReconcile(t, s, "install-a", fmt.Sprintf("f%03d", i), 1)
	}
	if _, err := s.Reconcile(context.Background(), "install-a", "one-more", 1); !errors.Is(err, offload.ErrFeatureLimit) {
		t.Fatalf("Reconcile past the default cap: %v, want ErrFeatureLimit", err)
	}
}

// TestReserveInOneBatch: reserves queued together at quota-1 let exactly
// the first through; a release in the same batch frees one place.
func TestReserveInOneBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	mustReconcile(t, s, "install-q", "breakdown", 4)
	s.Close()
	var calls []func(*sqlite.Store) (int64, error)
	var want []outcome
	for range 6 {
		calls = append(calls, reserveCall("install-q", 5))
		want = append(want, outcome{0, offload.ErrQuotaExceeded})
	}
	want[0] = outcome{5, nil}
	calls = append(calls, releaseCall("install-q"), reserveCall("install-q", 5), reserveCall("install-q", 5))
	want = append(want, outcome{0, nil}, outcome{5, nil}, outcome{0, offload.ErrQuotaExceeded})
	g := newGate()
	s, release := holdFirstBatch(t, g, path, calls)
	checkOutcomes(t, release()[1:], want)
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, len(calls)}) {
		t.Errorf("batch sizes %v, want [1 %d]", sizes, len(calls))
	}
	if got := mustCount(t, s, "install-q"); got != 5 {
		t.Errorf("Count = %d, want 5", got)
	}
}

// TestEraseIsDurable: erased rows stay gone after a reopen, and the other
// install's rows stay.
func TestEraseIsDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	for _, f := range []string{"a", "b", "c"} {
		mustReconcile(t, s, "install-gone", f, 3)
	}
	mustReconcile(t, s, "install-kept", "a", 4)
	if n, err := s.Erase(context.Background(), "install-gone"); err != nil || n != 3 {
		t.Fatalf("Erase = %d, %v; want 3", n, err)
	}
	s.Close()
	var n int
	if err := rawDB(t, path).QueryRow("SELECT count(*) FROM usage_counts WHERE install_id = 'install-gone'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows of the erased install in the file (%v)", n, err)
	}
	s = MustOpenPath(t, path)
	if got := mustCountOf(t, s, "install-kept", "a"); got != 4 {
		t.Errorf("other install: Count = %d, want 4", got)
	}
}
