package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offload-app/offload"
	"github.com/offload-app/offload/postgres"
	"github.com/offload-app/offload/postgres/pgtest"
	"github.com/offload-app/offload/usagetest"
)

// mustOpen opens a store on url and closes it when the test ends.
func mustOpen(tb testing.TB, url string, opts ...postgres.Option) *postgres.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, url, opts...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// newStore is a store on a fresh schema of a fresh database.
func newStore(tb testing.TB, opts ...postgres.Option) (*postgres.Store, string) {
	tb.Helper()
	url := pgtest.Schema(tb, pgtest.Database(tb))
	return mustOpen(tb, url, opts...), url
}

func TestConformance(t *testing.T) {
	db := pgtest.Database(t)
	usagetest.Run(t, 4, func(t *testing.T) func() offload.UsageStore {
		url := pgtest.Schema(t, db)
		return func() offload.UsageStore {
			s, err := postgres.Open(context.Background(), url, postgres.WithMaxFeatures(4))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		}
	})
}

// sql runs statements on url outside the store, for setting up and reading
// back what the store cannot be asked.
func sql(tb testing.TB, url, stmt string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, stmt, args...); err != nil {
		tb.Fatalf("%s: %v", stmt, err)
	}
}

func queryInt(tb testing.TB, url, q string, args ...any) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	var n int64
	if err := c.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
	return n
}

func checkContentFree(t *testing.T, err error, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && strings.Contains(err.Error(), v) {
			t.Errorf("error %q contains %q", err, v)
		}
	}
}

func TestOpenRefusesACommitThatIsNotDurable(t *testing.T) {
	url := pgtest.Schema(t, pgtest.Database(t))
	for _, param := range []string{"synchronous_commit=off"} {
		_, err := postgres.Open(context.Background(), url+"&"+param)
		if !errors.Is(err, offload.ErrStorage) || !strings.Contains(err.Error(), "synchronous_commit") {
			t.Errorf("Open with %s: %v, want a storage error naming synchronous_commit", param, err)
		}
	}
	// Accepted: every value that flushes locally before the commit returns.
	for _, param := range []string{"synchronous_commit=on", "synchronous_commit=local", "synchronous_commit=remote_apply"} {
		s := mustOpen(t, url+"&"+param)
		if _, err := s.Reconcile(context.Background(), "install-1", "f", 1); err != nil {
			t.Errorf("with %s: Reconcile: %v", param, err)
		}
	}
}

func TestOpenErrorsNameNoSecret(t *testing.T) {
	const secret = "s3cr3t-pass"
	for _, url := range []string{
		"postgres://alice:" + secret + "@127.0.0.1:1/db?connect_timeout=2",
		"postgres://alice:" + secret + "@127.0.0.1:1/db?sslmode=bogus",
		"host=127.0.0.1 port=1 user=alice password=" + secret + " connect_timeout=2",
		"postgres://alice:" + secret + "@[::1",
		pgtest.AdminURL() + "&password=" + secret + "&dbname=offload_no_such_db_" + secret,
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := postgres.Open(ctx, url)
		cancel()
		if !errors.Is(err, offload.ErrStorage) {
			t.Errorf("Open: %v, want a storage error", err)
			continue
		}
		checkContentFree(t, err, secret, "alice")
		t.Logf("Open: %v", err)
	}
}

func TestMigrationsAreSafeFromTwoInstancesAtOnce(t *testing.T) {
	url := pgtest.Schema(t, pgtest.Database(t))
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			s, err := postgres.Open(context.Background(), url)
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Open/Close: %v", err)
		}
	}
	if got := queryInt(t, url, "SELECT count(*) FROM schema_migrations"); got != 1 {
		t.Errorf("schema_migrations has %d rows, want 1", got)
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	s, url := newStore(t)
	_ = s
	sql(t, url, "INSERT INTO schema_migrations (version, name) VALUES (99, '099_future.sql')")
	_, err := postgres.Open(context.Background(), url)
	if !errors.Is(err, offload.ErrStorage) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open on a newer schema: %v", err)
	}
}

func TestSchemaHoldsOnlyCounts(t *testing.T) {
	_, url := newStore(t)
	cols := queryInt(t, url, `SELECT count(*) FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'usage_counts'`)
	if cols != 5 {
		t.Errorf("usage_counts has %d columns, want install_id, feature, count, created_at, updated_at", cols)
	}
	if n := queryInt(t, url, `SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()
		AND tablename = 'usage_counts' AND indexdef LIKE '%(updated_at)%'`); n != 1 {
		t.Errorf("no index on updated_at")
	}
}

func TestFeatureCap(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, postgres.WithMaxFeatures(3))
	for i, f := range []string{"a", "b", "c"} {
		if got, err := s.Reconcile(ctx, "install-1", f, int64(i+1)); err != nil || got != int64(i+1) {
			t.Fatalf("Reconcile(%s) = %d, %v", f, got, err)
		}
	}
	_, err := s.Reconcile(ctx, "install-1", "d", 5)
	if !errors.Is(err, offload.ErrFeatureLimit) {
		t.Fatalf("fourth feature: %v, want ErrFeatureLimit", err)
	}
	checkContentFree(t, err, "install-1")
	if got, err := s.Reconcile(ctx, "install-1", "a", 9); err != nil || got != 9 {
		t.Errorf("existing feature at the cap: %d, %v", got, err)
	}
	if got, err := s.Reconcile(ctx, "install-2", "d", 5); err != nil || got != 5 {
		t.Errorf("another install: %d, %v", got, err)
	}
	// The server's own counting is never capped.
	if got, err := s.Increment(ctx, "install-1", offload.FeatureBreakdown); err != nil || got != 1 {
		t.Errorf("Increment at the cap: %d, %v", got, err)
	}
	if got, err := s.Reserve(ctx, "install-1", "reserved", 10); err != nil || got != 1 {
		t.Errorf("Reserve at the cap: %d, %v", got, err)
	}
	// A row created by Increment counts; erasing frees the install.
	if _, err := s.Reconcile(ctx, "install-1", "e", 1); !errors.Is(err, offload.ErrFeatureLimit) {
		t.Errorf("over the cap after increments: %v", err)
	}
	if n, err := s.Erase(ctx, "install-1"); err != nil || n != 5 {
		t.Fatalf("Erase = %d, %v; want 5", n, err)
	}
	if got, err := s.Reconcile(ctx, "install-1", "e", 1); err != nil || got != 1 {
		t.Errorf("after Erase: %d, %v", got, err)
	}
}

// twoStores are two instances (two pools) on one database, with a writer
// count small enough that their groups really interleave.
func twoStores(t *testing.T, opts ...postgres.Option) ([2]*postgres.Store, string) {
	url := pgtest.Schema(t, pgtest.Database(t))
	return [2]*postgres.Store{mustOpen(t, url, opts...), mustOpen(t, url, opts...)}, url
}

func TestFeatureCapIsExactAcrossInstances(t *testing.T) {
	const capN, features = 16, 80
	db := pgtest.Database(t)
	for round := range 3 {
		url := pgtest.Schema(t, db)
		stores := [2]*postgres.Store{
			mustOpen(t, url, postgres.WithMaxFeatures(capN)),
			mustOpen(t, url, postgres.WithMaxFeatures(capN)),
		}
		ctx := context.Background()
		install := fmt.Sprintf("install-cap-%d", round)
		// Two features exist already; they keep working past the cap.
		for _, f := range []string{"old-1", "old-2"} {
			if _, err := stores[0].Reconcile(ctx, install, f, 1); err != nil {
				t.Fatal(err)
			}
		}
		var ok, refused atomic.Int64
		var wg sync.WaitGroup
		for i := range features {
			wg.Go(func() {
				s := stores[i%2]
				_, err := s.Reconcile(ctx, install, fmt.Sprintf("feature-%03d", i), int64(i))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, offload.ErrFeatureLimit):
					refused.Add(1)
				default:
					t.Errorf("Reconcile: %v", err)
				}
				if _, err := s.Reconcile(ctx, install, "old-1", int64(i)); err != nil {
					t.Errorf("existing feature: %v", err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != capN-2 || refused.Load() != features-(capN-2) {
			t.Errorf("round %d: %d created, %d refused; want %d and %d", round, ok.Load(), refused.Load(), capN-2, features-(capN-2))
		}
		if rows := queryInt(t, url, "SELECT count(*) FROM usage_counts WHERE install_id = $1", install); rows != capN {
			t.Errorf("round %d: %d rows, want %d", round, rows, capN)
		}
		if got, _ := stores[0].Count(ctx, install, "old-1"); got != features-1 {
			t.Errorf("old-1 = %d, want %d", got, features-1)
		}
	}
}

// TestReconcilesThroughTwoInstancesKeepTheMax is the test: 200
// concurrent reconciles through both instances keep the max.
func TestReconcilesThroughTwoInstancesKeepTheMax(t *testing.T) {
	stores, _ := twoStores(t)
	ctx := context.Background()
	values := rand.Perm(200)
	var wg sync.WaitGroup
	for i, v := range values {
		wg.Go(func() {
			n := int64(v + 1)
			got, err := stores[i%2].Reconcile(ctx, "install-max", "breakdown", n)
			if err != nil {
				t.Errorf("Reconcile(%d): %v", n, err)
				return
			}
			if got < n || got > 200 {
				t.Errorf("Reconcile(%d) = %d", n, got)
			}
		})
	}
	wg.Wait()
	for i, s := range stores {
		if got, err := s.Count(ctx, "install-max", "breakdown"); err != nil || got != 200 {
			t.Errorf("store %d: Count = %d, %v; want 200", i, got, err)
		}
	}
}

func TestIncrementsThroughTwoInstancesAddUp(t *testing.T) {
	stores, _ := twoStores(t)
	ctx := context.Background()
	const n = 200
	answers := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got, err := stores[i%2].Increment(ctx, "install-inc", offload.FeatureBreakdown)
			if err != nil {
				t.Errorf("Increment: %v", err)
			}
			answers[i] = got
		})
	}
	wg.Wait()
	slices.Sort(answers)
	for i, a := range answers {
		if a != int64(i+1) {
			t.Fatalf("answers sorted [%d] = %d, want 1..%d each once", i, a, n)
		}
	}
}

// TestReserveIsAtomicAcrossInstances: at quota-1, exactly one of many
// concurrent reserves through both instances gets through.
func TestReserveIsAtomicAcrossInstances(t *testing.T) {
	stores, _ := twoStores(t)
	ctx := context.Background()
	const quota = 10
	if _, err := stores[0].Reconcile(ctx, "install-q", "breakdown", quota-1); err != nil {
		t.Fatal(err)
	}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			got, err := stores[i%2].Reserve(ctx, "install-q", "breakdown", quota)
			switch {
			case err == nil && got == quota:
				ok.Add(1)
			case errors.Is(err, offload.ErrQuotaExceeded):
				refused.Add(1)
			default:
				t.Errorf("Reserve = %d, %v", got, err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || refused.Load() != 59 {
		t.Errorf("%d reserved, %d refused; want 1 and 59", ok.Load(), refused.Load())
	}
	if err := stores[1].Release(ctx, "install-q", "breakdown"); err != nil {
		t.Fatal(err)
	}
	if got, err := stores[0].Reserve(ctx, "install-q", "breakdown", quota); err != nil || got != quota {
		t.Errorf("Reserve after Release = %d, %v", got, err)
	}
}

func TestReserveAndRelease(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	steps := []struct {
		op    string
		quota int64
		want  int64
		err   error
	}{
		{"reserve", 0, 0, offload.ErrQuotaExceeded},
		{"reserve", 2, 1, nil},
		{"reserve", 2, 2, nil},
		{"reserve", 2, 0, offload.ErrQuotaExceeded},
		{"count", 0, 2, nil},
		{"release", 0, 0, nil},
		{"count", 0, 1, nil},
		{"release", 0, 0, nil},
		{"release", 0, 0, nil}, // floor 0
		{"count", 0, 0, nil},
		{"reserve", 1, 1, nil},
		{"reserve", -5, 0, offload.ErrQuotaExceeded},
	}
	for i, st := range steps {
		var got int64
		var err error
		switch st.op {
		case "reserve":
			got, err = s.Reserve(ctx, "install-r", "breakdown", st.quota)
		case "release":
			err = s.Release(ctx, "install-r", "breakdown")
		case "count":
			got, err = s.Count(ctx, "install-r", "breakdown")
		}
		if got != st.want || !errors.Is(err, st.err) || (st.err == nil && err != nil) {
			t.Fatalf("step %d %s(%d) = %d, %v; want %d, %v", i, st.op, st.quota, got, err, st.want, st.err)
		}
	}
	if err := s.Release(ctx, "install-unknown", "breakdown"); err != nil {
		t.Errorf("Release of an unknown key: %v", err)
	}
	if n, _ := s.Count(ctx, "install-unknown", "breakdown"); n != 0 {
		t.Errorf("Release created a row: %d", n)
	}
	// Reserve never passes math.MaxInt64: the quota bounds it.
	if _, err := s.Reconcile(ctx, "install-big", "f", math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, "install-big", "f", math.MaxInt64); !errors.Is(err, offload.ErrQuotaExceeded) {
		t.Errorf("Reserve at math.MaxInt64: %v", err)
	}
}

func TestEraseIsPerInstallAndStartsAgain(t *testing.T) {
	ctx := context.Background()
	s, url := newStore(t)
	for _, f := range []string{"a", "b", "c"} {
		if _, err := s.Reconcile(ctx, "install-e", f, 5); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reconcile(ctx, "install-other", "a", 7); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Erase(ctx, "install-e"); err != nil || n != 3 {
		t.Fatalf("Erase = %d, %v; want 3", n, err)
	}
	if n, err := s.Erase(ctx, "install-e"); err != nil || n != 0 {
		t.Fatalf("second Erase = %d, %v; want 0", n, err)
	}
	if got := queryInt(t, url, "SELECT count(*) FROM usage_counts WHERE install_id = 'install-e'"); got != 0 {
		t.Errorf("%d rows left in the table", got)
	}
	if got, _ := s.Count(ctx, "install-other", "a"); got != 7 {
		t.Errorf("other install: %d", got)
	}
	if got, err := s.Reconcile(ctx, "install-e", "a", 1); err != nil || got != 1 {
		t.Errorf("after Erase: %d, %v", got, err)
	}
	if got, err := s.Increment(ctx, "install-e", "b"); err != nil || got != 1 {
		t.Errorf("Increment after Erase: %d, %v", got, err)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestExpireDeletesIdleRowsInBatches(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0}
	s, url := newStore(t, postgres.WithClock(clk))
	for i := range 25 {
		if _, err := s.Reconcile(ctx, fmt.Sprintf("install-old-%02d", i), "f", 1); err != nil {
			t.Fatal(err)
		}
	}
	clk.Set(t0.Add(48 * time.Hour))
	if _, err := s.Increment(ctx, "install-new", "f"); err != nil {
		t.Fatal(err)
	}
	// An old row written again is not idle any more.
	if _, err := s.Reconcile(ctx, "install-old-00", "f", 0); err != nil {
		t.Fatal(err)
	}
	before := t0.Add(24 * time.Hour)
	var got []int64
	for {
		n, err := s.Expire(ctx, before, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
		if n < 10 {
			break
		}
	}
	if !slices.Equal(got, []int64{10, 10, 4}) {
		t.Errorf("Expire batches = %v, want [10 10 4]", got)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM usage_counts"); n != 2 {
		t.Errorf("%d rows left, want 2", n)
	}
	if n, err := s.Expire(ctx, before, 0); err != nil || n != 0 {
		t.Errorf("Expire(limit 0) = %d, %v", n, err)
	}
	// Timestamps are stored at second precision, in UTC.
	if n := queryInt(t, url, "SELECT count(*) FROM usage_counts WHERE updated_at = $1", t0.Add(48*time.Hour)); n != 2 {
		t.Errorf("updated_at not the clock's time: %d rows match", n)
	}
}

func TestEachRowAndMergeRows(t *testing.T) {
	ctx := context.Background()
	src, _ := newStore(t)
	dst, _ := newStore(t, postgres.WithMaxFeatures(1))
	t1 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	var rows []offload.UsageRow
	for i := range 2500 {
		rows = append(rows, offload.UsageRow{
			InstallID: fmt.Sprintf("install-%05d", 2500-i), Feature: fmt.Sprintf("f%d", i%3), Count: int64(i), UpdatedAt: t1,
		})
	}
	rows = append(rows, offload.UsageRow{InstallID: "Zé", Feature: "b", Count: 1, UpdatedAt: t1},
		offload.UsageRow{InstallID: "Zé", Feature: "B", Count: 2, UpdatedAt: t1})
	if err := src.MergeRows(ctx, rows); err != nil {
		t.Fatal(err)
	}
	var listed []offload.UsageRow
	if err := src.EachRow(ctx, func(r offload.UsageRow) error { listed = append(listed, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != len(rows) {
		t.Fatalf("EachRow listed %d rows, want %d", len(listed), len(rows))
	}
	if !slices.IsSortedFunc(listed, func(a, b offload.UsageRow) int {
		return strings.Compare(a.InstallID+"\x00"+a.Feature, b.InstallID+"\x00"+b.Feature)
	}) {
		t.Error("EachRow not in byte order")
	}
	for _, r := range listed {
		if !r.UpdatedAt.Equal(t1) || r.UpdatedAt.Location() != time.UTC {
			t.Fatalf("row updated_at %v, want %v UTC", r.UpdatedAt, t1)
		}
	}

	// Merge into a store with rows of its own, past its feature cap.
	if _, err := dst.Reconcile(ctx, "install-00001", "f0", 1_000_000); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Reconcile(ctx, "install-00002", "f2", 0); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		for b := range slices.Chunk(listed, 500) {
			if err := dst.MergeRows(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, r := range listed {
		got, err := dst.Count(ctx, r.InstallID, r.Feature)
		if err != nil {
			t.Fatal(err)
		}
		want := r.Count
		if r.InstallID == "install-00001" && r.Feature == "f0" {
			want = 1_000_000
		}
		if got != want {
			t.Fatalf("%s/%s = %d, want %d", r.InstallID, r.Feature, got, want)
		}
	}
	// A later updated_at wins, an earlier one does not; repeated keys merge.
	k := offload.UsageRow{InstallID: "install-00003", Feature: "f2"}
	if err := dst.MergeRows(ctx, []offload.UsageRow{
		{InstallID: k.InstallID, Feature: k.Feature, Count: 1, UpdatedAt: t2},
		{InstallID: k.InstallID, Feature: k.Feature, Count: 1 << 40, UpdatedAt: t1},
	}); err != nil {
		t.Fatal(err)
	}
	var seen offload.UsageRow
	_ = dst.EachRow(ctx, func(r offload.UsageRow) error {
		if r.InstallID == k.InstallID && r.Feature == k.Feature {
			seen = r
		}
		return nil
	})
	if seen.Count != 1<<40 || !seen.UpdatedAt.Equal(t2) {
		t.Errorf("merged row = %+v, want count 1<<40 at %v", seen, t2)
	}
	// Bad rows write nothing.
	for _, bad := range []offload.UsageRow{
		{InstallID: "install-x", Feature: "f", Count: -1},
		{InstallID: "install-x", Feature: "f\x00", Count: 1},
		{InstallID: "install-\xff", Feature: "f", Count: 1},
	} {
		if err := dst.MergeRows(ctx, []offload.UsageRow{{InstallID: "install-x", Feature: "ok", Count: 1}, bad}); err == nil {
			t.Errorf("MergeRows(%q) accepted", bad.Feature)
		}
	}
	if n, _ := dst.Count(ctx, "install-x", "ok"); n != 0 {
		t.Error("a refused merge wrote rows")
	}
	// fn's error stops the walk.
	stop := errors.New("stop")
	calls := 0
	if err := src.EachRow(ctx, func(offload.UsageRow) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("EachRow with a failing fn: %v after %d calls", err, calls)
	}
}

func TestKeysPostgresCannotHoldFailAlone(t *testing.T) {
	ctx := context.Background()
	gate := make(chan struct{})
	var once sync.Once
	s, _ := newStore(t, postgres.WithWriters(1), postgres.WithBatchHook(func(int) {
		once.Do(func() { <-gate })
	}))
	// The first reconcile holds the writer; the rest queue behind it and
	// form one group.
	first := make(chan error, 1)
	go func() { _, err := s.Reconcile(ctx, "install-k", "first", 1); first <- err }()
	type answer struct {
		n   int64
		err error
	}
	var wg sync.WaitGroup
	answers := make([]answer, 4)
	keys := [][2]string{{"install-k", "good"}, {"install-k", "bad\x00"}, {"install-\xff", "f"}, {"install-k", "good"}}
	for i, k := range keys {
		wg.Go(func() {
			n, err := s.Reconcile(ctx, k[0], k[1], int64(i+1))
			answers[i] = answer{n, err}
		})
	}
	time.Sleep(50 * time.Millisecond) // let them queue; the result does not depend on it
	close(gate)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if answers[1].err != postgres.ErrKey || answers[2].err != postgres.ErrKey {
		t.Errorf("bad keys: %v, %v; want ErrKey", answers[1].err, answers[2].err)
	}
	if answers[0].err != nil || answers[3].err != nil || answers[3].n != 4 || answers[0].n < 1 {
		t.Errorf("good keys: %+v, %+v", answers[0], answers[3])
	}
	if _, err := s.Increment(ctx, "install-k", "\x00"); err != postgres.ErrKey {
		t.Errorf("Increment of a NUL feature: %v", err)
	}
}

// TestGroupMergesRepeatedKeys: members of one group that share a key all
// get the stored max, whatever their order.
func TestGroupMergesRepeatedKeys(t *testing.T) {
	ctx := context.Background()
	gate := make(chan struct{})
	var sizes []int
	var mu sync.Mutex
	s, _ := newStore(t, postgres.WithWriters(1), postgres.WithBatchHook(func(n int) {
		mu.Lock()
		sizes = append(sizes, n)
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-gate
		}
	}))
	go func() { _, _ = s.Reconcile(ctx, "install-g", "hold", 1) }()
	for {
		mu.Lock()
		n := len(sizes)
		mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	got := make([]int64, 10)
	for i := range 10 {
		wg.Go(func() {
			n, err := s.Reconcile(ctx, "install-g", "f", int64(i*7%10))
			if err != nil {
				t.Error(err)
			}
			got[i] = n
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Queued() < 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	for i, n := range got {
		if n != 9 {
			t.Errorf("member %d got %d, want 9", i, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[1] != 10 {
		t.Errorf("group sizes %v, want [1 10]", sizes)
	}
}

func TestCheck(t *testing.T) {
	s, url := newStore(t)
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Check(done); err == nil {
		t.Error("Check with a done context passed")
	}
	// A server that cannot commit (read-only here, as a standby is) fails
	// the check, with a content-free message.
	dbName := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	sql(t, pgtest.AdminURL(), "ALTER DATABASE "+dbName+" SET default_transaction_read_only = on")
	sql(t, pgtest.AdminURL(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", dbName)
	var err error
	for range 3 { // the first may meet a connection the terminate just killed
		if err = s.Check(context.Background()); err != nil && strings.Contains(err.Error(), "read-only") {
			break
		}
	}
	if !errors.Is(err, offload.ErrStorage) || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("Check on a read-only server: %v", err)
	}
	checkContentFree(t, err, dbName)
	// Writes fail too, as storage errors naming no key.
	if _, err := s.Reconcile(context.Background(), "install-ro", "feature-ro", 1); !errors.Is(err, offload.ErrStorage) {
		t.Errorf("Reconcile on a read-only server: %v", err)
	} else {
		checkContentFree(t, err, "install-ro", "feature-ro")
	}
	sql(t, pgtest.AdminURL(), "ALTER DATABASE "+dbName+" RESET default_transaction_read_only")
	sql(t, pgtest.AdminURL(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", dbName)
	if err := s.Check(context.Background()); err != nil {
		// One retry: a pooled connection may have been terminated.
		if err := s.Check(context.Background()); err != nil {
			t.Errorf("Check after the server is writable again: %v", err)
		}
	}
}

// TestCloseIsBoundedWhenTheServerStalls: with the table locked by another
// session, reconciles hang in the server; Close still returns within its
// timeout (plus the moment it gives cancelled statements), and the caller
// gets an error.
func TestCloseIsBoundedWhenTheServerStalls(t *testing.T) {
	url := pgtest.Schema(t, pgtest.Database(t))
	s, err := postgres.Open(context.Background(), url, postgres.WithCloseTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Reconcile(ctx, "install-c", "f", 1); err != nil {
		t.Fatal(err)
	}
	locker, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE usage_counts IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		_, err := s.Reconcile(ctx, "install-c", "f", 2)
		answered <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it reach the server; not needed for correctness
	start := time.Now()
	err = s.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
	if !errors.Is(err, offload.ErrStorage) {
		t.Errorf("Close of a stalled store: %v, want a storage error saying what was abandoned", err)
	}
	select {
	case err := <-answered:
		if !errors.Is(err, offload.ErrStorage) {
			t.Errorf("stalled Reconcile: %v, want a storage error", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the stalled Reconcile was never answered")
	}
	if _, err := s.Count(ctx, "install-c", "f"); !errors.Is(err, offload.ErrStorage) {
		t.Errorf("Count after Close: %v", err)
	}
}

func TestWriteTimeoutFailsTheGroup(t *testing.T) {
	url := pgtest.Schema(t, pgtest.Database(t))
	s := mustOpen(t, url, postgres.WithWriteTimeout(200*time.Millisecond))
	ctx := context.Background()
	if _, err := s.Reconcile(ctx, "install-w", "f", 1); err != nil {
		t.Fatal(err)
	}
	locker, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE usage_counts IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Reconcile(ctx, "install-w", "f", 2)
	if !errors.Is(err, offload.ErrStorage) {
		t.Errorf("Reconcile past the write timeout: %v", err)
	} else {
		checkContentFree(t, err, "install-w")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Reconcile(ctx, "install-w", "f", 3); err != nil || got != 3 {
		t.Errorf("after the stall: %d, %v", got, err)
	}
}

type countingMetrics struct {
	offload.NopMetrics
	rows atomic.Int64
}

func (m *countingMetrics) UsageCommit(rows int, _ time.Duration) { m.rows.Add(int64(rows)) }

func TestMetricsCountCommittedRows(t *testing.T) {
	m := &countingMetrics{}
	s, _ := newStore(t, postgres.WithMetrics(m))
	ctx := context.Background()
	if _, err := s.Reconcile(ctx, "install-m", "a", 1); err != nil { // a new row
		t.Fatal(err)
	}
	if _, err := s.Reconcile(ctx, "install-m", "a", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Increment(ctx, "install-m", "b"); err != nil {
		t.Fatal(err)
	}
	if got := m.rows.Load(); got != 3 {
		t.Errorf("UsageCommit rows = %d, want 3", got)
	}
}

// TestGroupsSharingKeysDoNotDeadlock: many callers on two instances reconcile
// the same few keys in random orders; groups lock rows in key order, so no
// statement ever meets a deadlock (which PostgreSQL would break after a
// second, and the store would retry).
func TestGroupsSharingKeysDoNotDeadlock(t *testing.T) {
	stores, _ := twoStores(t)
	ctx := context.Background()
	keys := []string{"a", "b", "c", "d", "e", "f"}
	for _, k := range keys {
		if _, err := stores[0].Reconcile(ctx, "install-dl", k, 0); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 48 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range 60 {
				k := keys[rng.IntN(len(keys))]
				if _, err := stores[g%2].Reconcile(ctx, "install-dl", k, int64(i)); err != nil {
					t.Errorf("Reconcile: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, s := range stores {
		if st := s.Stats(); st.Retries != 0 || st.Failures != 0 {
			t.Errorf("store %d: %d retries, %d failures; want none", i, st.Retries, st.Failures)
		}
	}
}
