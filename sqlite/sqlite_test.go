package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/mock"
	"github.com/offload-app/offload/sqlite"
	"github.com/offload-app/offload/usagetest"
)

// MustOpenDB opens a store on a new file in a temporary folder and closes it
// when the test ends.
func MustOpenDB(tb testing.TB, opts ...sqlite.Option) *sqlite.Store {
	tb.Helper()
	return MustOpenPath(tb, filepath.Join(tb.TempDir(), "usage.db"), opts...)
}

// MustOpenPath opens a store on path and closes it when the test ends.
func MustOpenPath(tb testing.TB, path string, opts ...sqlite.Option) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), path, opts...)
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

func TestConformance(t *testing.T) {
	usagetest.Run(t, 4, func(t *testing.T) func() offload.UsageStore {
		path := filepath.Join(t.TempDir(), "usage.db")
		return func() offload.UsageStore {
			s, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		}
	})
}

// gate holds the writer in its first batch until released, so a test can
// queue requests behind it and know they form the next batch. It records the
// size of every batch.
type gate struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	sizes   []int
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) hook(size int) {
	g.mu.Lock()
	g.sizes = append(g.sizes, size)
	first := len(g.sizes) == 1
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.release
	}
}

func (g *gate) batchSizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.sizes)
}

// waitQueued waits until n writes are queued behind the held writer.
func waitQueued(t *testing.T, s *sqlite.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", s.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type outcome struct {
	count int64
	err   error
}

// holdFirstBatch opens a store whose writer is held in a first batch of one
// reconcile, then starts calls one after the other, each once the previous
// one is queued, so they are queued in the order given, and returns the store, a function that releases the writer and collects every
// outcome (the held reconcile's first).
func holdFirstBatch(t *testing.T, g *gate, path string, calls []func(*sqlite.Store) (int64, error), opts ...sqlite.Option) (*sqlite.Store, func() []outcome) {
	t.Helper()
	s := MustOpenPath(t, path, append(opts, sqlite.WithBatchHook(g.hook))...)
	out := make([]outcome, len(calls)+1)
	var wg sync.WaitGroup
	wg.Go(func() {
		n, err := s.Reconcile(context.Background(), "install-held-0000", "breakdown", 1)
		out[0] = outcome{n, err}
	})
	<-g.entered
	for i, call := range calls {
		wg.Go(func() {
			n, err := call(s)
			out[i+1] = outcome{n, err}
		})
		waitQueued(t, s, i+1)
	}
	return s, func() []outcome {
		close(g.release)
		wg.Wait()
		return out
	}
}

func reconcileCall(install string, n int64) func(*sqlite.Store) (int64, error) {
	return func(s *sqlite.Store) (int64, error) {
		return s.Reconcile(context.Background(), install, "breakdown", n)
	}
}

func incrementCall(install string) func(*sqlite.Store) (int64, error) {
	return func(s *sqlite.Store) (int64, error) {
		return s.Increment(context.Background(), install, "breakdown")
	}
}

func mustTotal(t *testing.T, s *sqlite.Store, install string) int64 {
	t.Helper()
	n, err := s.Total(context.Background(), install)
	if err != nil {
		t.Fatalf("Total: %v", err)
	}
	return n
}

// checkStorageErr fails unless err wraps offload.ErrStorage, says want, and
// carries none of the caller's values.
func checkStorageErr(t *testing.T, err error, want string, values ...string) {
	t.Helper()
	if !errors.Is(err, offload.ErrStorage) {
		t.Fatalf("error %v, want one wrapping offload.ErrStorage", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	for _, v := range values {
		if strings.Contains(err.Error(), v) {
			t.Errorf("error %q contains a caller value", err)
		}
	}
	if strings.Contains(err.Error(), "database is locked") {
		t.Errorf("error %q surfaces SQLite's lock message", err)
	}
}

// rawDB opens the file directly, bypassing the store, for inspection and
// for setting up damaged files.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPragmasOnEveryConnection(t *testing.T) {
	s := MustOpenDB(t)
	for _, tc := range []struct {
		pragma, writer, reader string
	}{
		{"journal_mode", "wal", "wal"},
		{"synchronous", "2", "2"}, // FULL
		{"busy_timeout", "5000", "5000"},
		{"query_only", "0", "1"},
	} {
		w, rs, err := s.ReadPragma(tc.pragma, sqlite.DefaultReadConns)
		if err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if w != tc.writer {
			t.Errorf("writer PRAGMA %s = %q, want %q", tc.pragma, w, tc.writer)
		}
		for i, r := range rs {
			if r != tc.reader {
				t.Errorf("reader %d PRAGMA %s = %q, want %q", i, tc.pragma, r, tc.reader)
			}
		}
	}
}

func TestBusyTimeoutOption(t *testing.T) {
	s := MustOpenDB(t, sqlite.WithBusyTimeout(1234*time.Millisecond))
	w, rs, err := s.ReadPragma("busy_timeout", 1)
	if err != nil {
		t.Fatal(err)
	}
	if w != "1234" || rs[0] != "1234" {
		t.Errorf("busy_timeout = %q/%q, want 1234", w, rs[0])
	}
}

func TestOpenCreatesPrivateFolderAndFile(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "a", "b", "usage.sqlite3")
	s := MustOpenPath(t, path)
	if _, err := s.Reconcile(context.Background(), "install-00000001", "breakdown", 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode fs.FileMode
	}{
		{filepath.Join(root, "a"), fs.ModeDir | 0o700},
		{filepath.Join(root, "a", "b"), fs.ModeDir | 0o700},
		{path, 0o600},
		{path + "-wal", 0o600},
		{path + "-shm", 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
}

func TestOpenOddPath(t *testing.T) {
	// The driver would cut a plain DSN at '?'; a file: URI keeps the path whole.
	path := filepath.Join(t.TempDir(), "dir with space", "usage?x=1#frag%20.db")
	s := MustOpenPath(t, path)
	if _, err := s.Reconcile(context.Background(), "install-00000001", "breakdown", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
}

func TestMigrationsSetUserVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != 2 {
		t.Fatalf("user_version = %d, want 2", v)
	}
	var ddl string
	if err := db.QueryRow("SELECT sql FROM sqlite_schema WHERE name = 'usage_counts'").Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"STRICT", "WITHOUT ROWID", "CHECK (count >= 0)"} {
		if !strings.Contains(ddl, want) {
			t.Errorf("table definition lacks %q:\n%s", want, ddl)
		}
	}
	// Opening again applies nothing and keeps the data.
	db.Close()
	s = MustOpenPath(t, path)
	if got := mustTotal(t, s, "nobody-00000000"); got != 0 {
		t.Fatalf("Total = %d", got)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	s.Close()
	db := rawDB(t, path)
	if _, err := db.Exec("PRAGMA user_version = 3"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := sqlite.Open(context.Background(), path)
	checkStorageErr(t, err, "database schema version 3 is newer than the 2 this binary knows")
}

func TestOpenAdoptsPythonDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.sqlite3")
	legacy, err := os.ReadFile(filepath.Join("testdata", "python_v0.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	if _, err := db.Exec(string(legacy)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	clock := mock.NewClock(time.Date(2026, 2, 16, 12, 2, 0, 0, time.UTC))
	s := MustOpenPath(t, path, sqlite.WithClock(clock))
	if got := mustTotal(t, s, "install-python-1"); got != 20 {
		t.Errorf("Total(install-python-1) = %d, want 20", got)
	}
	if got, err := s.Reconcile(context.Background(), "install-python-2", "breakdown", 10); err != nil || got != 250 {
		t.Errorf("Reconcile lower = %d, %v; want 250", got, err)
	}
	s.Close()
	db = rawDB(t, path)
	var created, updated string
	if err := db.QueryRow(`SELECT created_at, updated_at FROM usage_counts
		WHERE install_id = 'install-python-1' AND feature = 'breakdown'`).Scan(&created, &updated); err != nil {
		t.Fatal(err)
	}
	if created != "2025-11-02T08:15:30Z" || updated != created {
		t.Errorf("converted timestamps %q, %q; want 2025-11-02T08:15:30Z", created, updated)
	}
}

func TestTimestamps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	clock := mock.NewClock(time.Date(2026, 2, 16, 12, 2, 0, 999, time.FixedZone("X", 3600)))
	s := MustOpenPath(t, path, sqlite.WithClock(clock))
	ctx := context.Background()
	if _, err := s.Reconcile(ctx, "install-00000001", "breakdown", 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(90 * time.Second)
	if _, err := s.Increment(ctx, "install-00000001", "breakdown"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var created, updated string
	if err := rawDB(t, path).QueryRow("SELECT created_at, updated_at FROM usage_counts").Scan(&created, &updated); err != nil {
		t.Fatal(err)
	}
	if created != "2026-02-16T11:02:00Z" || updated != "2026-02-16T11:03:30Z" {
		t.Errorf("created_at %q, updated_at %q", created, updated)
	}
}

// TestFileHoldsOnlyCounts: the schema has one table of ids, counts and
// timestamps, so nothing else can be stored.
func TestFileHoldsOnlyCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	if _, err := s.Reconcile(context.Background(), "install-00000001", "breakdown", 4); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := rawDB(t, path)
	rows, err := db.Query("SELECT type, name FROM sqlite_schema ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	var objects []string
	for rows.Next() {
		var typ, name string
		if err := rows.Scan(&typ, &name); err != nil {
			t.Fatal(err)
		}
		objects = append(objects, typ+" "+name)
	}
	if want := []string{"table usage_counts"}; !slices.Equal(objects, want) {
		t.Errorf("schema objects %q, want %q", objects, want)
	}
	rows, err = db.Query("SELECT name, type FROM pragma_table_info('usage_counts') ORDER BY cid")
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, name+" "+typ)
	}
	want := []string{"install_id TEXT", "feature TEXT", "count INTEGER", "created_at TEXT", "updated_at TEXT"}
	if !slices.Equal(cols, want) {
		t.Errorf("columns %q, want %q", cols, want)
	}
}

// writeFile writes data at path with the given mode, failing the test on error.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// damagedDB makes a real database of several pages and overwrites its table
// pages with garbage, leaving the header intact, so only a check of the
// b-tree finds the damage.
func damagedDB(t *testing.T, path string) {
	t.Helper()
	s := MustOpenPath(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	if _, err := db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
		INSERT INTO usage_counts SELECT printf('install-%0120d', i), 'breakdown', i, 'x', 'x' FROM n`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 4*4096 {
		t.Fatalf("database of %d bytes is too small to damage", len(data))
	}
	for i := 2 * 4096; i < len(data); i++ {
		data[i] = byte(i*7 + 13)
	}
	writeFile(t, path, data)
}

func TestOpenFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the path to open
		want  string
	}{
		{"EmptyPath", func(t *testing.T, dir string) string { return "" }, "path is empty"},
		{"PathIsDirectory", func(t *testing.T, dir string) string { return dir }, "cannot open the usage database file"},
		{"ParentIsFile", func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, "file"), []byte("x"))
			return filepath.Join(dir, "file", "usage.db")
		}, "cannot create the folder"},
		{"Garbage", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "usage.db")
			writeFile(t, path, bytes.Repeat([]byte("not a database, just text. "), 400))
			return path
		}, "corrupt or is not a SQLite database"},
		{"DamagedPages", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "usage.db")
			damagedDB(t, path)
			return path
		}, "corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.setup(t, t.TempDir())
			s, err := sqlite.Open(context.Background(), path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			checkStorageErr(t, err, tc.want)
			t.Log(err)
		})
	}
}

// TestCommitFailureFailsEveryMember: when COMMIT fails, every write of the
// batch gets a storage error and none of them is kept.
func TestCommitFailureFailsEveryMember(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	var failing atomic.Bool
	failing.Store(true)
	fault := sqlite.WithCommitFault(func() error {
		if failing.Load() {
			return errors.New("injected commit failure")
		}
		return nil
	})
	var calls []func(*sqlite.Store) (int64, error)
	for i := range 5 {
		calls = append(calls, reconcileCall(fmt.Sprintf("install-%08d", i), 7), incrementCall(fmt.Sprintf("install-%08d", i)))
	}
	g := newGate()
	s, release := holdFirstBatch(t, g, path, calls, fault)
	out := release()
	for i, o := range out {
		if o.err == nil {
			t.Errorf("call %d succeeded with %d", i, o.count)
			continue
		}
		checkStorageErr(t, o.err, "commit", "install-", "breakdown")
	}
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, 10}) {
		t.Errorf("batch sizes %v, want [1 10]", sizes)
	}
	if st := s.Stats(); st.Failures != 2 || st.Commits != 0 || st.Writes != 0 {
		t.Errorf("stats %+v, want 2 failures and no commits", st)
	}
	failing.Store(false)
	for i := range 5 {
		if got := mustTotal(t, s, fmt.Sprintf("install-%08d", i)); got != 0 {
			t.Errorf("install %d: Total %d after a failed commit, want 0", i, got)
		}
	}
	// The store recovers once commits work again.
	if got, err := s.Increment(context.Background(), "install-00000000", "breakdown"); err != nil || got != 1 {
		t.Errorf("Increment after recovery = %d, %v; want 1", got, err)
	}
}

// TestDiskFullFailsBatch fills the database (max_page_count stands in for a
// full disk, and works as root) and checks that the batch holding the write
// that does not fit fails as a whole with a storage error.
func TestDiskFullFailsBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	if _, err := s.Reconcile(context.Background(), "install-existing", "breakdown", 5); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var pages int
	if err := rawDB(t, path).QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 1000)
	var calls []func(*sqlite.Store) (int64, error)
	calls = append(calls, reconcileCall("install-existing", 6))
	for i := range 20 { // ~20 kB of new rows: more than the pages left
		calls = append(calls, reconcileCall(fmt.Sprintf("install-%04d-%s", i, long), 1))
	}
	g := newGate()
	s, release := holdFirstBatch(t, g, path, calls, sqlite.WithWriterPragma(fmt.Sprintf("max_page_count = %d", pages+1)))
	out := release()
	if out[0].err != nil {
		t.Fatalf("held write: %v", out[0].err)
	}
	for i, o := range out[1:] {
		if o.err == nil {
			t.Errorf("call %d succeeded with %d on a full database", i, o.count)
			continue
		}
		checkStorageErr(t, o.err, "full", long)
	}
	if got := mustTotal(t, s, "install-existing"); got != 5 {
		t.Errorf("Total = %d, want 5: the failed batch must leave nothing", got)
	}
}

// TestReadOnlyStorage: query_only makes the writer's connection refuse to
// write, as a read-only file would (chmod does not stop root).
func TestReadOnlyStorage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	if _, err := s.Reconcile(context.Background(), "install-00000001", "breakdown", 5); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = MustOpenPath(t, path, sqlite.WithWriterPragma("query_only = 1"))
	_, err := s.Reconcile(context.Background(), "install-00000001", "breakdown", 9)
	checkStorageErr(t, err, "read-only", "install-00000001", "breakdown")
	_, err = s.Increment(context.Background(), "install-00000001", "breakdown")
	checkStorageErr(t, err, "read-only", "install-00000001", "breakdown")
	if got := mustTotal(t, s, "install-00000001"); got != 5 {
		t.Errorf("Total = %d, want 5", got)
	}
}

// TestBusyIsRetried: another connection holds the write lock; the store keeps
// retrying instead of failing with "database is locked", and succeeds once
// the lock is free.
func TestBusyIsRetried(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path, sqlite.WithBusyTimeout(time.Millisecond))
	other := lockDB(t, path)
	done := make(chan outcome)
	go func() {
		n, err := s.Reconcile(context.Background(), "install-00000001", "breakdown", 5)
		done <- outcome{n, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().BusyRetries < 3 {
		if time.Now().After(deadline) {
			t.Fatal("writer never retried")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := other.ExecContext(context.Background(), "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if o := <-done; o.err != nil || o.count != 5 {
		t.Fatalf("Reconcile = %d, %v; want 5", o.count, o.err)
	}
}

// TestBusyTooLong: a lock held past the retry bound fails the write with a
// storage error that does not pass SQLite's message on.
func TestBusyTooLong(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path, sqlite.WithBusyTimeout(time.Millisecond), sqlite.WithBusyRetry(20*time.Millisecond))
	other := lockDB(t, path)
	_, err := s.Reconcile(context.Background(), "install-00000001", "breakdown", 5)
	checkStorageErr(t, err, "locked by another writer", "install-00000001")
	if _, err := other.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Reconcile(context.Background(), "install-00000001", "breakdown", 6); err != nil || n != 6 {
		t.Fatalf("Reconcile after the lock was freed = %d, %v", n, err)
	}
}

// lockDB takes the write lock of the database at path on a connection of
// its own and returns that connection.
func lockDB(t *testing.T, path string) *sql.Conn {
	t.Helper()
	c, err := rawDB(t, path).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCloseFlushesQueuedWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	const n = 50
	var calls []func(*sqlite.Store) (int64, error)
	for i := range n {
		calls = append(calls, reconcileCall(fmt.Sprintf("install-%08d", i), int64(i+1)))
	}
	g := newGate()
	s, release := holdFirstBatch(t, g, path, calls)
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	out := release()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, o := range out {
		if o.err != nil {
			t.Errorf("call %d: %v", i, o.err)
		}
	}
	s = MustOpenPath(t, path)
	for i := range n {
		if got := mustTotal(t, s, fmt.Sprintf("install-%08d", i)); got != int64(i+1) {
			t.Errorf("install %d: Total %d after reopen, want %d", i, got, i+1)
		}
	}
}

// TestGroupCommit: writes queued while a commit is in progress go into the
// next transaction together, and each caller gets its own value.
func TestGroupCommit(t *testing.T) {
	const n = 63
	var calls []func(*sqlite.Store) (int64, error)
	for i := range n {
		calls = append(calls, reconcileCall(fmt.Sprintf("install-%08d", i), int64(100+i)))
	}
	g := newGate()
	s, release := holdFirstBatch(t, g, filepath.Join(t.TempDir(), "usage.db"), calls)
	out := release()
	for i, o := range out[1:] {
		if o.err != nil || o.count != int64(100+i) {
			t.Errorf("call %d = %d, %v; want %d", i, o.count, o.err, 100+i)
		}
	}
	st := s.Stats()
	if st.Commits != 2 || st.Writes != n+1 || st.MaxBatch != n || st.WritesPerCommit() != 32 {
		t.Errorf("stats %+v (%.1f writes/commit), want 2 commits of 64 writes, max batch %d", st, st.WritesPerCommit(), n)
	}
}

func TestMaxBatchCapsTransactions(t *testing.T) {
	var calls []func(*sqlite.Store) (int64, error)
	for i := range 8 {
		calls = append(calls, reconcileCall(fmt.Sprintf("install-%08d", i), 1))
	}
	g := newGate()
	_, release := holdFirstBatch(t, g, filepath.Join(t.TempDir(), "usage.db"), calls, sqlite.WithMaxBatch(4))
	for i, o := range release() {
		if o.err != nil {
			t.Errorf("call %d: %v", i, o.err)
		}
	}
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, 4, 4}) {
		t.Errorf("batch sizes %v, want [1 4 4]", sizes)
	}
}

// TestStatsUnderConcurrency: with many callers and no help from a gate,
// commits still carry more than one write on average.
func TestStatsUnderConcurrency(t *testing.T) {
	s := MustOpenDB(t)
	const callers, each = 32, 10
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Reconcile(context.Background(), fmt.Sprintf("install-%08d", c), "breakdown", int64(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.Writes != callers*each || st.WritesPerCommit() <= 1 || st.MaxBatch <= 1 {
		t.Errorf("stats %+v (%.1f writes/commit), want %d writes batched", st, st.WritesPerCommit(), callers*each)
	}
}

// TestOverflowFailsAlone: an increment that cannot be stored fails on its
// own; the rest of its batch commits.
func TestOverflowFailsAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	if _, err := s.Reconcile(context.Background(), "install-full", "breakdown", math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	s.Close()
	calls := []func(*sqlite.Store) (int64, error){
		reconcileCall("install-00000001", 3),
		incrementCall("install-full"),
		incrementCall("install-00000002"),
		reconcileCall("install-00000003", 9),
	}
	g := newGate()
	s, release := holdFirstBatch(t, g, path, calls)
	out := release()
	want := []outcome{{1, nil}, {3, nil}, {0, sqlite.ErrCountRange}, {1, nil}, {9, nil}}
	for i, o := range out {
		if o.count != want[i].count || !errors.Is(o.err, want[i].err) || (want[i].err == nil) != (o.err == nil) {
			t.Errorf("call %d = %d, %v; want %d, %v", i, o.count, o.err, want[i].count, want[i].err)
		}
	}
	if errors.Is(out[2].err, offload.ErrStorage) {
		t.Errorf("overflow reported as a storage failure: %v", out[2].err)
	}
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, 4}) {
		t.Errorf("batch sizes %v, want [1 4]", sizes)
	}
	if got := mustTotal(t, s, "install-full"); got != math.MaxInt64 {
		t.Errorf("Total = %d, want MaxInt64", got)
	}
}

// TestCallerGivesUpAfterQueueing: a caller whose context ends while its
// write is queued gets ctx.Err() at once; the write still commits.
func TestCallerGivesUpAfterQueueing(t *testing.T) {
	g := newGate()
	s, release := holdFirstBatch(t, g, filepath.Join(t.TempDir(), "usage.db"), nil)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan outcome)
	go func() {
		n, err := s.Reconcile(ctx, "install-00000001", "breakdown", 8)
		res <- outcome{n, err}
	}()
	waitQueued(t, s, 1)
	cancel()
	// The writer is still held, so only the cancellation can end the call.
	if o := <-res; !errors.Is(o.err, context.Canceled) {
		t.Errorf("cancelled caller got %d, %v; want context.Canceled", o.count, o.err)
	}
	if o := release(); o[0].err != nil {
		t.Fatal(o[0].err)
	}
	// Writes commit in queue order: once this one is back, so is the other.
	if _, err := s.Increment(context.Background(), "install-00000002", "breakdown"); err != nil {
		t.Fatal(err)
	}
	if got := mustTotal(t, s, "install-00000001"); got != 8 {
		t.Errorf("Total = %d, want 8: a queued write still commits", got)
	}
}

// FuzzKeys: any install id and feature name, including NUL bytes, invalid
// UTF-8, SQL and URI metacharacters, is stored and found exactly as given.
func FuzzKeys(f *testing.F) {
	for _, seed := range []struct {
		id, feature string
		n           int64
	}{
		{"install-00000001", "breakdown", 3},
		{"", "", 0},
		{"a\x00b", "\x00", 1},
		{"\xff\xfe\xfd", "feature\xc3", 2},
		{"'; DROP TABLE usage_counts; --", "?_pragma=query_only(1)", 5},
		{"install-é✓日本", "%41%00", math.MaxInt64},
		{strings.Repeat("x", 128), strings.Repeat("y", 64), 1 << 53},
	} {
		f.Add(seed.id, seed.feature, seed.n)
	}
	s := MustOpenDB(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, id, feature string, n int64) {
		if n < 0 {
			if _, err := s.Reconcile(ctx, id, feature, n); !errors.Is(err, sqlite.ErrCountRange) {
				t.Fatalf("Reconcile(%d): %v, want ErrCountRange", n, err)
			}
			return
		}
		got, err := s.Reconcile(ctx, id, feature, n)
		if err != nil {
			t.Fatal(err)
		}
		if got < n {
			t.Fatalf("Reconcile(%d) = %d", n, got)
		}
		if again, err := s.Reconcile(ctx, id, feature, 0); err != nil || again != got {
			t.Fatalf("Reconcile(0) = %d, %v; want %d", again, err, got)
		}
		total, err := s.Total(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if total < got {
			t.Fatalf("Total = %d, below the feature's %d", total, got)
		}
	})
}
