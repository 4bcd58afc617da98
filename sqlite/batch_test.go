package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/sqlite"
)

// The writer puts the requests of one kind in a batch into shared multi-row
// upserts, reconciles before increments, and starts a new statement when a
// key repeats. These tests queue one batch in a known order and check every
// caller's own value.

func featureCall(install, feature string, n int64) func(*sqlite.Store) (int64, error) {
	return func(s *sqlite.Store) (int64, error) {
		if n < 0 {
			return s.Increment(context.Background(), install, feature)
		}
		return s.Reconcile(context.Background(), install, feature, n)
	}
}

func checkOutcomes(t *testing.T, got, want []outcome) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d outcomes, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.count != w.count || (g.err == nil) != (w.err == nil) || !errors.Is(g.err, w.err) {
			t.Errorf("call %d = %d, %v; want %d, %v", i, g.count, g.err, w.count, w.err)
		}
	}
}

// TestBatchSameKey: one key several times in a batch, mixed with increments
// and another feature of the same install. Each caller gets the count right
// after its own write, as if the batch ran reconciles in queue order, then
// increments.
func TestBatchSameKey(t *testing.T) {
	const inc = -1
	calls := []func(*sqlite.Store) (int64, error){
		featureCall("install-a", "breakdown", 5),
		featureCall("install-a", "breakdown", 3),
		featureCall("install-a", "breakdown", inc),
		featureCall("install-a", "breakdown", 9),
		featureCall("install-a", "summary", 2),
		featureCall("install-a", "breakdown", 4),
		featureCall("install-a", "summary", inc),
		featureCall("install-a", "breakdown", inc),
	}
	g := newGate()
	s, release := holdFirstBatch(t, g, filepath.Join(t.TempDir(), "usage.db"), calls)
	out := release()
	checkOutcomes(t, out[1:], []outcome{{5, nil}, {5, nil}, {10, nil}, {9, nil}, {2, nil}, {9, nil}, {3, nil}, {11, nil}})
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, len(calls)}) {
		t.Errorf("batch sizes %v, want [1 %d]", sizes, len(calls))
	}
	if got := mustCount(t, s, "install-a"); got != 11 {
		t.Errorf("Count = %d, want 11", got)
	}
	if got := mustCountOf(t, s, "install-a", "summary"); got != 3 {
		t.Errorf("Count(summary) = %d, want 3", got)
	}
}

// TestBatchChunks: a batch larger than one statement's rows, of both kinds,
// on keys new and old, with a key that repeats across a chunk boundary.
func TestBatchChunks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	// Odd installs start at 50, so their increments return 51 and their
	// reconciles below 50 return 50.
	for i := 1; i < 200; i += 2 {
		if _, err := s.Reconcile(context.Background(), fmt.Sprintf("install-%08d", i), "breakdown", 50); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	var calls []func(*sqlite.Store) (int64, error)
	var want []outcome
	for i := range 200 {
		id := fmt.Sprintf("install-%08d", i)
		base := int64(0)
		if i%2 == 1 {
			base = 50
		}
		if i%3 == 0 {
			calls = append(calls, incrementCall(id))
			want = append(want, outcome{base + 1, nil})
			continue
		}
		n := int64(i % 100)
		calls = append(calls, reconcileCall(id, n))
		want = append(want, outcome{max(base, n), nil})
	}
	// install 1 again, after 65 other reconciles: in a later statement.
	calls = append(calls, reconcileCall("install-00000001", 70))
	want = append(want, outcome{70, nil})

	g := newGate()
	s, release := holdFirstBatch(t, g, path, calls)
	out := release()
	checkOutcomes(t, out[1:], want)
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, len(calls)}) {
		t.Errorf("batch sizes %v, want [1 %d]", sizes, len(calls))
	}
	for i := range 200 {
		w := want[i].count
		if i == 1 {
			w = 70
		}
		if got := mustCount(t, s, fmt.Sprintf("install-%08d", i)); got != w {
			t.Errorf("install %d: Count %d, want %d", i, got, w)
		}
	}
}

// TestOverflowInLargeStatement: an overflowing increment among many others
// and reconciles fails alone, and the statement it broke leaves no partial
// writes behind: every other increment adds exactly one.
func TestOverflowInLargeStatement(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	ctx := context.Background()
	if _, err := s.Reconcile(ctx, "install-full", "breakdown", math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := s.Reconcile(ctx, fmt.Sprintf("install-%08d", i), "breakdown", 5); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	var calls []func(*sqlite.Store) (int64, error)
	var want []outcome
	for i := range 20 {
		if i == 13 {
			calls = append(calls, incrementCall("install-full"))
			want = append(want, outcome{0, sqlite.ErrCountRange})
		}
		calls = append(calls, incrementCall(fmt.Sprintf("install-%08d", i)), reconcileCall(fmt.Sprintf("install-r%07d", i), int64(i)))
		want = append(want, outcome{6, nil}, outcome{int64(i), nil})
	}
	g := newGate()
	s, release := holdFirstBatch(t, g, path, calls)
	out := release()
	checkOutcomes(t, out[1:], want)
	for _, o := range out {
		if errors.Is(o.err, offload.ErrStorage) {
			t.Errorf("overflow reported as a storage failure: %v", o.err)
		}
	}
	if st := s.Stats(); st.Failures != 0 || st.Writes != uint64(len(calls)) {
		t.Errorf("stats %+v, want %d writes and no failure", st, len(calls))
	}
	for i := range 20 {
		if got := mustCount(t, s, fmt.Sprintf("install-%08d", i)); got != 6 {
			t.Errorf("install %d: Count %d, want 6", i, got)
		}
	}
	if got := mustCount(t, s, "install-full"); got != math.MaxInt64 {
		t.Errorf("Count = %d, want MaxInt64", got)
	}
}
