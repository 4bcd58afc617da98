package sqlite_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/sqlite"
)

// tick sends two ticks to the watcher: once the second is taken, the check
// of the first is done.
func tick(t *testing.T, ticks chan time.Time) {
	t.Helper()
	for range 2 {
		select {
		case ticks <- time.Time{}:
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher does not take ticks")
		}
	}
}

// checkNoPath fails unless err is a storage error saying the file was
// replaced, without the path or any folder of it.
func checkNoPath(t *testing.T, err error, path string) {
	t.Helper()
	checkStorageErr(t, err, "deleted or replaced", "install-")
	for p := path; p != "/" && p != "."; p = filepath.Dir(p) {
		if strings.Contains(err.Error(), p) {
			t.Errorf("error %q names the path %q", err, p)
		}
	}
}

// TestWatcherNoticesFileGone: once the path no longer names the open file
// (deleted, or replaced by another), writes and reads fail with a storage
// error and Check reports it, instead of counts going into a file that
// the next start will not open.
func TestWatcherNoticesFileGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		gone func(t *testing.T, path string)
	}{
		{"Deleted", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"Replaced", func(t *testing.T, path string) {
			other := filepath.Join(filepath.Dir(path), "other.db")
			o := MustOpenPath(t, other)
			mustReconcile(t, o, "install-other", "breakdown", 1)
			o.Close()
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ticks := make(chan time.Time)
			path := filepath.Join(t.TempDir(), "data", "usage.db")
			s := MustOpenPath(t, path, sqlite.WithWatchTicks(ticks))
			ctx := context.Background()
			mustReconcile(t, s, "install-a", "breakdown", 3)
			tick(t, ticks)
			if err := s.Check(ctx); err != nil {
				t.Fatalf("Check before: %v", err)
			}
			mustReconcile(t, s, "install-a", "breakdown", 4)

			tc.gone(t, path)
			tick(t, ticks)
			_, err := s.Reconcile(ctx, "install-a", "breakdown", 5)
			checkNoPath(t, err, path)
			_, err = s.Increment(ctx, "install-a", "breakdown")
			checkNoPath(t, err, path)
			_, err = s.Count(ctx, "install-a", "breakdown")
			checkNoPath(t, err, path)
			checkNoPath(t, s.Check(ctx), path)
		})
	}
}

// TestCheckNoticesFileGone: Check looks at the file itself, without
// waiting for the watcher, and from then on writes fail.
func TestCheckNoticesFileGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path, sqlite.WithWatchInterval(0))
	ctx := context.Background()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	mustReconcile(t, s, "install-a", "breakdown", 1) // nobody has looked yet
	checkNoPath(t, s.Check(ctx), path)
	_, err := s.Reconcile(ctx, "install-a", "breakdown", 2)
	checkNoPath(t, err, path)
}

// TestWatcherRunsOnItsOwn: with a short interval and no ticks from the
// test, the watcher alone fails the writes.
func TestWatcherRunsOnItsOwn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path, sqlite.WithWatchInterval(time.Millisecond))
	mustReconcile(t, s, "install-a", "breakdown", 1)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Reconcile(context.Background(), "install-a", "breakdown", 2)
		if errors.Is(err, offload.ErrStorage) {
			checkNoPath(t, err, path)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still go through 10 s after the file was deleted (last: %v)", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCheckNeedsACommit: Check is ready only when a write really commits,
// so a read-only file, a write lock another process keeps, or a failing
// commit all make it fail.
func TestCheckNeedsACommit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []sqlite.Option
		after func(t *testing.T, path string) // once the store is open
		want  string
	}{
		{"ReadOnly", []sqlite.Option{sqlite.WithWriterPragma("query_only = 1")}, nil, "read-only"},
		{"LockedByAnotherWriter", []sqlite.Option{sqlite.WithBusyTimeout(time.Millisecond), sqlite.WithBusyRetry(20 * time.Millisecond)},
			func(t *testing.T, path string) { lockDB(t, path) }, "locked by another writer"},
		{"CommitFails", []sqlite.Option{sqlite.WithCommitFault(func() error { return errors.New("injected") })}, nil, "commit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "usage.db")
			s := MustOpenPath(t, path, tc.opts...)
			if tc.after != nil {
				tc.after(t, path)
			}
			err := s.Check(context.Background())
			checkStorageErr(t, err, tc.want)
			if strings.Contains(err.Error(), path) {
				t.Errorf("Check's error %q names the path", err)
			}
		})
	}
}

// TestCheckWritesToTheDisk: Check's commit is a real one (an empty COMMIT
// writes and syncs nothing, so it would pass on a frozen disk): another
// connection sees the database change.
func TestCheckWritesToTheDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s := MustOpenPath(t, path)
	c, err := rawDB(t, path).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	version := func() int64 {
		t.Helper()
		var v int64
		if err := c.QueryRowContext(context.Background(), "PRAGMA data_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := version()
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := version(); after == before {
		t.Errorf("data_version %d unchanged by Check: it committed nothing", after)
	}
	var uv int
	if err := c.QueryRowContext(context.Background(), "PRAGMA user_version").Scan(&uv); err != nil || uv != 3 {
		t.Errorf("user_version = %d, %v after Check; want 3", uv, err)
	}
}
