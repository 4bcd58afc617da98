package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/sqlite"
)

// stall makes commits block, as a commit stuck in fsync on a frozen file
// system does, until released.
type stall struct {
	on      atomic.Bool
	entered chan struct{} // one send per stalled commit
	release chan struct{}
}

func newStall() *stall {
	return &stall{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (st *stall) fault() error {
	if st.on.Load() {
		st.entered <- struct{}{}
		<-st.release
	}
	return nil
}

// within fails the test unless fn returns within d.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// TestWriteHonoursDeadlineWhileCommitStalls: a caller whose deadline passes
// while its commit is stuck gets an error wrapping ctx.Err() at once; so
// does one whose write is still queued behind it.
func TestWriteHonoursDeadlineWhileCommitStalls(t *testing.T) {
	st := newStall()
	s := MustOpenDB(t, sqlite.WithCommitFault(st.fault))
	mustReconcile(t, s, "install-a", "breakdown", 1)
	st.on.Store(true)
	defer close(st.release)

	for _, name := range []string{"in the stalled commit", "queued behind it"} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		var err error
		start := time.Now()
		within(t, 10*time.Second, "Reconcile "+name, func() {
			_, err = s.Reconcile(ctx, "install-a", "breakdown", 2)
		})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Reconcile %s: %v, want context.DeadlineExceeded", name, err)
		}
		t.Logf("Reconcile %s returned after %v", name, time.Since(start))
		if name == "in the stalled commit" {
			<-st.entered // the commit really is stuck
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var err error
	within(t, 10*time.Second, "Check", func() { err = s.Check(ctx) })
	if !errors.Is(err, offload.ErrStorage) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Check while the commit stalls: %v, want ErrStorage and DeadlineExceeded", err)
	}
}

// TestCloseIsBoundedWhenCommitStalls: Close waits the close timeout, then
// returns an error counting the writes it abandons; calls after it fail at
// once. Once the disk comes back, the writer finishes and stops.
func TestCloseIsBoundedWhenCommitStalls(t *testing.T) {
	st := newStall()
	path := filepath.Join(t.TempDir(), "usage.db")
	s, err := sqlite.Open(context.Background(), path, sqlite.WithCommitFault(st.fault), sqlite.WithCloseTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	st.on.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = s.Reconcile(ctx, "install-stuck", "breakdown", 1) })
	<-st.entered
	for range 3 {
		wg.Go(func() { _, _ = s.Increment(ctx, "install-queued", "breakdown") })
	}
	waitQueued(t, s, 3)

	start := time.Now()
	within(t, 10*time.Second, "Close", func() { err = s.Close() })
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
		t.Errorf("Close returned after %v, before its timeout", elapsed)
	}
	checkStorageErr(t, err, "4 queued write(s) not committed", path, "install-")
	if err2 := s.Close(); err2 != err {
		t.Errorf("second Close = %v, want the first's %v", err2, err)
	}
	_, err = s.Reconcile(context.Background(), "install-late", "breakdown", 1)
	checkStorageErr(t, err, "store closed", "install-late")

	cancel() // the callers stop waiting
	wg.Wait()
	close(st.release)
	select {
	case <-s.WriterDone():
	case <-time.After(10 * time.Second):
		t.Fatal("the writer did not stop once the commit went through")
	}
}
