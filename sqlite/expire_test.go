package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/mock"
	"github.com/offload-app/offload/sqlite"
)

func mustExpire(t *testing.T, s *sqlite.Store, before time.Time, limit int) int64 {
	t.Helper()
	n, err := s.Expire(context.Background(), before, limit)
	if err != nil {
		t.Fatalf("Expire: %v", err)
	}
	return n
}

// TestExpireWithFakeClock: rows written by us at known times and rows as the
// Python deployment writes them ('YYYY-MM-DD HH:MM:SS' from
// CURRENT_TIMESTAMP) expire by one rule. The times are on one day, so a
// store that kept RFC 3339 ('…T…Z') beside Python's format would compare
// them wrongly.
func TestExpireWithFakeClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := mock.NewClock(day.Add(11 * time.Hour))
	s := MustOpenPath(t, path, sqlite.WithClock(clock))
	mustReconcile(t, s, "install-go", "at-11", 1)
	clock.Advance(2 * time.Hour)
	mustReconcile(t, s, "install-go", "at-13", 1)
	mustReconcile(t, s, "install-go", "touched", 1) // at 13:00 …
	clock.Advance(2 * time.Hour)
	if _, err := s.Increment(context.Background(), "install-go", "touched"); err != nil { // … and again at 15:00
		t.Fatal(err)
	}

	// The Python deployment's rows: its statement, then the timestamp its
	// CURRENT_TIMESTAMP would have written at 12:00 and at 14:00.
	db := rawDB(t, path)
	for _, r := range []struct{ feature, at string }{{"at-12", "2025-01-01 12:00:00"}, {"at-14", "2025-01-01 14:00:00"}} {
		if _, err := db.Exec(pyReconcileSQL, "install-py", r.feature, 2); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`UPDATE usage_counts SET updated_at = ? WHERE install_id = 'install-py' AND feature = ?`, r.at, r.feature); err != nil {
			t.Fatal(err)
		}
	}
	// And one it writes now, with the real clock.
	if _, err := db.Exec(pyIncrementSQL, "install-py", "now"); err != nil {
		t.Fatal(err)
	}

	left := func() []string {
		t.Helper()
		var keys []string
		if err := s.EachRow(context.Background(), func(r offload.UsageRow) error {
			keys = append(keys, r.InstallID+"/"+r.Feature)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	for _, step := range []struct {
		before time.Time
		want   int64
		left   []string
	}{
		{day.Add(11 * time.Hour), 0, []string{"install-go/at-11", "install-go/at-13", "install-go/touched", "install-py/at-12", "install-py/at-14", "install-py/now"}},
		{day.Add(11*time.Hour + 30*time.Minute), 1, []string{"install-go/at-13", "install-go/touched", "install-py/at-12", "install-py/at-14", "install-py/now"}},
		{day.Add(13*time.Hour + 30*time.Minute), 2, []string{"install-go/touched", "install-py/at-14", "install-py/now"}},
		{day.Add(14*time.Hour + 59*time.Minute), 1, []string{"install-go/touched", "install-py/now"}},
		{time.Now().Add(-time.Hour), 1, []string{"install-py/now"}},
		{time.Now().Add(time.Hour), 1, nil},
	} {
		if n := mustExpire(t, s, step.before, 100); n != step.want {
			t.Errorf("Expire(%v) = %d, want %d", step.before, n, step.want)
		}
		if got := left(); !slices.Equal(got, step.left) {
			t.Fatalf("after Expire(%v): rows %q, want %q", step.before, got, step.left)
		}
	}
}

// TestExpireOldestFirstInBatches: a limit bounds each call, and the oldest
// rows go first.
func TestExpireOldestFirstInBatches(t *testing.T) {
	start := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	clock := mock.NewClock(start)
	s := MustOpenDB(t, sqlite.WithClock(clock), sqlite.WithMaxFeatures(0))
	const rows = 50
	// Written newest first, so the table order is not the age order.
	for i := rows - 1; i >= 0; i-- {
		clock.Advance(time.Minute)
		mustReconcile(t, s, fmt.Sprintf("install-%02d", rows-1-i), "breakdown", 1)
	}
	cut := start.Add(time.Hour)
	var total int64
	for {
		n := mustExpire(t, s, cut, 7)
		if n > 7 {
			t.Fatalf("Expire deleted %d rows with limit 7", n)
		}
		total += n
		if n < 7 {
			break
		}
	}
	if total != rows {
		t.Fatalf("expired %d rows, want %d", total, rows)
	}
	for i := range rows {
		clock.Advance(time.Minute)
		mustReconcile(t, s, fmt.Sprintf("install-%02d", i), "breakdown", 1)
	}
	if n := mustExpire(t, s, clock.Now().Add(-24*time.Minute), 10); n != 10 {
		t.Fatalf("Expire = %d, want 10", n)
	}
	for i := range rows {
		got := mustCount(t, s, fmt.Sprintf("install-%02d", i))
		if want := int64(0); i >= 10 {
			want = 1
			if got != want {
				t.Errorf("install %d: Count %d, want %d (the 10 oldest go first)", i, got, want)
			}
		} else if got != want {
			t.Errorf("install %d: Count %d, want %d (the 10 oldest go first)", i, got, want)
		}
	}
}

// TestExpireUsesIndex: a batch walks the updated_at index instead of
// scanning the table, so its cost is its own rows however large the file.
func TestExpireUsesIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	MustOpenPath(t, path).Close()
	rows, err := rawDB(t, path).Query("EXPLAIN QUERY PLAN "+sqlite.ExpireSQL, "2025-01-01 00:00:00", 100)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	joined := strings.Join(plan, "\n")
	if !strings.Contains(joined, "INDEX usage_counts_updated_at (updated_at<?)") || strings.Contains(joined, "SCAN usage_counts") {
		t.Errorf("plan of Expire:\n%s", joined)
	}
}

// commitMetrics records UsageCommit calls.
type commitMetrics struct {
	offload.NopMetrics
	mu    sync.Mutex
	rows  []int
	spent []time.Duration
}

func (m *commitMetrics) UsageCommit(rows int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows = append(m.rows, rows)
	m.spent = append(m.spent, d)
}

// TestMetricsPerCommit: one UsageCommit per committed batch, with the
// writes it acknowledged; none for a failed commit.
func TestMetricsPerCommit(t *testing.T) {
	m := &commitMetrics{}
	var failing bool
	var mu sync.Mutex
	fault := sqlite.WithCommitFault(func() error {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return errors.New("injected commit failure")
		}
		return nil
	})
	calls := []func(*sqlite.Store) (int64, error){
		featureReconcile("install-m", "a", 1),
		featureReconcile("install-m", "b", 2),
		featureReconcile("install-m", "c", 3), // past the cap of 2: not a write
		featureIncrement("install-m", "a"),
	}
	g := newGate()
	s, release := holdFirstBatch(t, g, filepath.Join(t.TempDir(), "usage.db"), calls, sqlite.WithMetrics(m), sqlite.WithMaxFeatures(2), fault)
	release()
	mu.Lock()
	failing = true
	mu.Unlock()
	if _, err := s.Increment(context.Background(), "install-m", "a"); err == nil {
		t.Fatal("Increment with a failing commit succeeded")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !slices.Equal(m.rows, []int{1, 3}) {
		t.Errorf("UsageCommit rows %v, want [1 3]", m.rows)
	}
	for i, d := range m.spent {
		if d <= 0 {
			t.Errorf("commit %d took %v", i, d)
		}
	}
}

// TestEachRowPages: more rows than a page, each listed once, in order, and
// fn may write to the store while it runs.
func TestEachRowPages(t *testing.T) {
	s := MustOpenDB(t, sqlite.WithMaxFeatures(0))
	const n = 600
	var in []offload.UsageRow
	for i := range n {
		in = append(in, offload.UsageRow{InstallID: fmt.Sprintf("install-%03d", i/3), Feature: fmt.Sprintf("f%d", i%3), Count: int64(i)})
	}
	if err := s.MergeRows(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	i := 0
	if err := s.EachRow(context.Background(), func(r offload.UsageRow) error {
		if r.InstallID != in[i].InstallID || r.Feature != in[i].Feature || r.Count != in[i].Count {
			return fmt.Errorf("row %d = %+v, want %+v", i, r, in[i])
		}
		i++
		_, err := s.Increment(context.Background(), r.InstallID, r.Feature)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("EachRow listed %d rows, want %d", i, n)
	}
	if got := mustCountOf(t, s, "install-199", "f2"); got != n {
		t.Errorf("Count after EachRow's increments = %d, want %d", got, n)
	}
}

// TestMergeRowsTimestamps: merged rows keep their own time, in the stored
// format; a zero time is taken as now.
func TestMergeRowsTimestamps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	clock := mock.NewClock(time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC))
	s := MustOpenPath(t, path, sqlite.WithClock(clock))
	if err := s.MergeRows(context.Background(), []offload.UsageRow{
		{InstallID: "install-a", Feature: "old", Count: 1, UpdatedAt: time.Date(2024, 5, 6, 7, 8, 9, 500, time.FixedZone("X", 7200))},
		{InstallID: "install-a", Feature: "zero", Count: 2},
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got := map[string]string{}
	rows, err := rawDB(t, path).Query("SELECT feature, created_at || '|' || updated_at FROM usage_counts")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var f, v string
		if err := rows.Scan(&f, &v); err != nil {
			t.Fatal(err)
		}
		got[f] = v
	}
	if got["old"] != "2024-05-06 05:08:09|2024-05-06 05:08:09" || got["zero"] != "2026-02-01 10:00:00|2026-02-01 10:00:00" {
		t.Errorf("stored timestamps %q", got)
	}
}

// TestMetricsCountNoProbe: Check's commit reports no usage rows.
func TestMetricsCountNoProbe(t *testing.T) {
	m := &commitMetrics{}
	s := MustOpenDB(t, sqlite.WithMetrics(m))
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !slices.Equal(m.rows, []int{0}) {
		t.Errorf("UsageCommit rows %v after a Check, want [0]", m.rows)
	}
}
