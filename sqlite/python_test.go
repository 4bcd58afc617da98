package sqlite_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/sqlite"
)

// The Python deployment's statements, verbatim, for the tests that run them
// through Go's driver; testdata/python_deployment.py runs the same through
// Python's sqlite3.
const (
	pyReconcileSQL = `INSERT INTO usage_counts (install_id, feature, count) VALUES (?, ?, ?)
ON CONFLICT (install_id, feature) DO UPDATE SET
    count = MAX(usage_counts.count, excluded.count), updated_at = CURRENT_TIMESTAMP`
	pyIncrementSQL = `INSERT INTO usage_counts (install_id, feature, count) VALUES (?, ?, 1)
ON CONFLICT (install_id, feature) DO UPDATE SET
    count = usage_counts.count + 1, updated_at = CURRENT_TIMESTAMP`
	pySelectSQL = `SELECT count FROM usage_counts WHERE install_id = ? AND feature = ?`
)

// python is the Python deployment's SQL running in a python3 process on a
// database file, one connection held open for its whole life.
type python struct {
	t       *testing.T
	stdin   io.WriteCloser
	lines   chan string
	stderr  *bytes.Buffer
	version string
}

// startPython starts testdata/python_deployment.py on path. Without python3
// the test is skipped, except under CI=true, where it fails.
func startPython(t *testing.T, path string) *python {
	t.Helper()
	bin, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is required in CI for the Python deployment compatibility tests")
		}
		t.Skip("python3 not found; install python3 to run the Python deployment compatibility tests")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, filepath.Join("testdata", "python_deployment.py"), path)
	p := &python{t: t, lines: make(chan string), stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		p.stdin.Close() // the script ends at EOF
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("python3 did not exit")
		}
		cancel()
	})
	v, err := p.read()
	if err != nil {
		t.Fatalf("python3 did not start: %v", err)
	}
	p.version = fmt.Sprint(v)
	t.Logf("python3 sqlite3 module on SQLite %s", p.version)
	return p
}

// read waits (bounded) for the next answer.
func (p *python) read() (any, error) {
	p.t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("python3 exited; stderr:\n%s", p.stderr)
		}
		var ans struct {
			OK    any    `json:"ok"`
			Error string `json:"error"`
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(line)))
		dec.UseNumber()
		if err := dec.Decode(&ans); err != nil {
			p.t.Fatalf("python3 answered %q: %v", line, err)
		}
		if ans.Error != "" {
			return nil, errors.New(ans.Error)
		}
		return ans.OK, nil
	case <-time.After(30 * time.Second):
		p.t.Fatalf("python3 did not answer in 30 s; stderr:\n%s", p.stderr)
		return nil, nil
	}
}

// call runs one command and returns its answer.
func (p *python) call(cmd ...any) (any, error) {
	p.t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("write to python3: %v", err)
	}
	return p.read()
}

// count runs a command that answers a count and fails the test unless it
// succeeds with want.
func (p *python) count(want int64, cmd ...any) {
	p.t.Helper()
	got, err := p.call(cmd...)
	if err != nil {
		p.t.Fatalf("python %v: %v", cmd, err)
	}
	if n, ok := got.(json.Number); !ok || n.String() != fmt.Sprint(want) {
		p.t.Fatalf("python %v = %v, want %d", cmd, got, want)
	}
}

func (p *python) mustBe(want string, cmd ...any) {
	p.t.Helper()
	got, err := p.call(cmd...)
	if err != nil || got != want {
		p.t.Fatalf("python %v = %v, %v; want %q", cmd, got, err, want)
	}
}

// previousVersionFS is the migrations our previous release shipped (001 and
// 002), to make a file as it left such a file.
func previousVersionFS(t *testing.T) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, name := range []string{"001_python_table.sql", "002_strict_counts.sql"} {
		b, err := sqliteMigration(name)
		if err != nil {
			t.Fatal(err)
		}
		fsys["migrations/"+name] = &fstest.MapFile{Data: b}
	}
	return fsys
}

func sqliteMigration(name string) ([]byte, error) {
	f, err := sqlite.MigrationFiles.Open("migrations/" + name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

var currentTimestamp = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)

// TestPythonDeploymentSharesTheFile runs the Python deployment's own SQL,
// through python3's sqlite3 module in its own process, on a file our store
// has opened, migrated and is serving (WAL, both writing at once), then
// after our store has closed. Each side sees the other's writes on its next
// call, and the file stays sound.
func TestPythonDeploymentSharesTheFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, path string, py *python)
	}{
		{"FileOfThePythonDeployment", func(t *testing.T, path string, py *python) {
			py.mustBe("started", "startup")
			py.count(5, "reconcile", "install-py-old", "breakdown", 5)
			py.count(1, "increment", "install-py-old", "braindump")
		}},
		{"FileOfOurPreviousVersion", func(t *testing.T, path string, py *python) {
			s := MustOpenPath(t, path, sqlite.WithMigrations(previousVersionFS(t)))
			mustReconcile(t, s, "install-py-old", "breakdown", 5)
			mustReconcile(t, s, "install-py-old", "braindump", 1)
			s.Close()
			// What issue 9 found: the Python insert fails on such a file.
			if _, err := py.call("reconcile", "install-py-new", "breakdown", 1); err == nil {
				t.Fatal("the Python insert worked on a file at version 2: the test does not test what it should")
			}
		}},
		{"NewFileOfOurs", func(t *testing.T, path string, py *python) {
			s := MustOpenPath(t, path)
			mustReconcile(t, s, "install-py-old", "breakdown", 5)
			mustReconcile(t, s, "install-py-old", "braindump", 1)
			s.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "usage.sqlite3")
			py := startPython(t, path)
			tc.setup(t, path, py)
			testSharedFile(t, path, py)
		})
	}
}

func mustReconcile(t *testing.T, s *sqlite.Store, id, feature string, n int64) int64 {
	t.Helper()
	got, err := s.Reconcile(context.Background(), id, feature, n)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return got
}

func testSharedFile(t *testing.T, path string, py *python) {
	ctx := context.Background()
	s := MustOpenPath(t, path)
	py.mustBe("started", "startup") // the deployment's start on our file
	py.mustBe("wal", "journal_mode")

	// Python's writes, new rows and old, are what we read on the next call.
	py.count(7, "reconcile", "install-py-new", "breakdown", 7)
	py.count(5, "reconcile", "install-py-old", "breakdown", 3)
	py.count(2, "increment", "install-py-old", "braindump")
	for _, c := range []struct {
		id, feature string
		want        int64
	}{
		{"install-py-new", "breakdown", 7},
		{"install-py-old", "breakdown", 5},
		{"install-py-old", "braindump", 2},
	} {
		if got := mustCountOf(t, s, c.id, c.feature); got != c.want {
			t.Errorf("our Count(%s, %s) = %d after Python's write, want %d", c.id, c.feature, got, c.want)
		}
	}
	// Ours are what Python reads.
	mustReconcile(t, s, "install-go", "breakdown", 11)
	py.count(11, "count", "install-go", "breakdown")
	if n, err := s.Increment(ctx, "install-py-new", "breakdown"); err != nil || n != 8 {
		t.Fatalf("our Increment of Python's row = %d, %v; want 8", n, err)
	}
	py.count(8, "count", "install-py-new", "breakdown")
	py.count(12, "increment", "install-go", "breakdown")
	if got := mustCount(t, s, "install-go"); got != 12 {
		t.Errorf("our Count = %d after Python's increment, want 12", got)
	}
	if n, err := s.Reserve(ctx, "install-py-new", "breakdown", 9); err != nil || n != 9 {
		t.Fatalf("our Reserve = %d, %v; want 9", n, err)
	}
	py.count(9, "count", "install-py-new", "breakdown")

	// Both at once on one key: no increment is lost, none counted twice.
	const goroutines, each, pyIncrements = 4, 50, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Go(func() {
			for range each {
				if _, err := s.Increment(ctx, "install-both", "breakdown"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	_, pyErr := py.call("increments", "install-both", "breakdown", pyIncrements)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("our Increment beside Python: %v", err)
	}
	if pyErr != nil {
		t.Fatalf("Python's increments beside ours: %v", pyErr)
	}
	const both = goroutines*each + pyIncrements
	py.count(both, "count", "install-both", "breakdown")
	if got := mustCount(t, s, "install-both"); got != both {
		t.Errorf("our Count = %d after both incremented, want %d", got, both)
	}
	py.mustBe("ok", "integrity")

	// Every row, Python's and ours, has one timestamp format.
	var n int
	if err := s.EachRow(ctx, func(r offload.UsageRow) error {
		n++
		return nil
	}); err != nil {
		t.Fatalf("EachRow over Python's rows: %v", err)
	}
	if n != 5 {
		t.Errorf("EachRow listed %d rows, want 5", n)
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check: %v", err)
	}

	// After our store has closed, Python goes on alone (rolling back).
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	py.count(both+1, "increment", "install-both", "breakdown")
	py.count(3, "reconcile", "install-after-us", "breakdown", 3)
	py.mustBe("ok", "integrity")

	var stamps []string
	rows, err := rawDB(t, path).Query("SELECT created_at || '|' || updated_at FROM usage_counts")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		stamps = append(stamps, v)
	}
	if len(stamps) != 6 {
		t.Errorf("%d rows, want 6", len(stamps))
	}
	for _, v := range stamps {
		for _, ts := range []string{v[:19], v[20:]} {
			if !currentTimestamp.MatchString(ts) {
				t.Errorf("timestamp %q is not in CURRENT_TIMESTAMP's format", ts)
			}
		}
	}

	// And we take over again.
	s = MustOpenPath(t, path)
	if got := mustCount(t, s, "install-both"); got != both+1 {
		t.Errorf("our Count after reopening = %d, want %d", got, both+1)
	}
	if got := mustCount(t, s, "install-after-us"); got != 3 {
		t.Errorf("our Count after reopening = %d, want 3", got)
	}

	// Retention reads Python's CURRENT_TIMESTAMP like our own timestamps:
	// nothing is an hour old, everything is older than an hour ahead.
	if n, err := s.Expire(ctx, time.Now().Add(-time.Hour), 100); err != nil || n != 0 {
		t.Errorf("Expire(an hour ago) = %d, %v; want 0", n, err)
	}
	if n, err := s.Expire(ctx, time.Now().Add(time.Hour), 100); err != nil || n != 6 {
		t.Errorf("Expire(an hour ahead) = %d, %v; want 6", n, err)
	}
	if got, err := py.call("count", "install-after-us", "breakdown"); err != nil || got != nil {
		t.Errorf("Python reads %v, %v after the rows expired; want no row", got, err)
	}
	py.mustBe("ok", "integrity")
}

// TestFailedMigrationLeavesFileUntouched: a migration that fails half way
// is rolled back with all the ones before it, so the Python deployment's
// file is exactly as it was and its statements still work.
func TestFailedMigrationLeavesFileUntouched(t *testing.T) {
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

	fsys := fstest.MapFS{
		// 004 makes a table, then fails.
		"migrations/004_broken.sql": &fstest.MapFile{Data: []byte("CREATE TABLE half_done (x INTEGER); INSERT INTO no_such_table VALUES (1);")},
	}
	for _, name := range []string{"001_python_table.sql", "002_strict_counts.sql", "003_python_compatible.sql"} {
		b, err := sqliteMigration(name)
		if err != nil {
			t.Fatal(err)
		}
		fsys["migrations/"+name] = &fstest.MapFile{Data: b}
	}
	s, err := sqlite.Open(context.Background(), path, sqlite.WithMigrations(fsys))
	if err == nil {
		s.Close()
		t.Fatal("Open with a failing migration succeeded")
	}
	checkStorageErr(t, err, "migrate schema")

	db = rawDB(t, path)
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 0 {
		t.Fatalf("user_version = %d, %v; want 0", v, err)
	}
	var objects []string
	rows, err := db.Query("SELECT name FROM sqlite_schema ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		objects = append(objects, name)
	}
	if want := []string{"sqlite_autoindex_usage_counts_1", "usage_counts"}; !slices.Equal(objects, want) {
		t.Errorf("schema objects %q, want the Python deployment's %q", objects, want)
	}
	var updated string
	if err := db.QueryRow(`SELECT updated_at FROM usage_counts WHERE install_id = 'install-python-1' AND feature = 'breakdown'`).Scan(&updated); err != nil || updated != "2025-11-02 08:15:30" {
		t.Errorf("row after the failed migration: %q, %v", updated, err)
	}
	if _, err := db.Exec(pyReconcileSQL, "install-python-3", "breakdown", 4); err != nil {
		t.Fatalf("Python's reconcile after the failed migration: %v", err)
	}
	db.Close()

	s = MustOpenPath(t, path)
	if got := mustCount(t, s, "install-python-3"); got != 4 {
		t.Errorf("Count after the real migrations = %d, want 4", got)
	}
}
