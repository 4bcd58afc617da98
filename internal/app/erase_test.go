package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/mock"
)

// TestEraseThroughTheServer erases one install's counts through the real
// handler on every store: its rows are gone from the store itself, other
// installs are untouched, and its count starts again from 0.
func TestEraseThroughTheServer(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			in := newInstance(t, b.env)
			a, other := in.token("install-erase-a"), in.token("install-erase-b")
			for _, f := range []string{"breakdown", "export", "share"} {
				if code, out := in.reconcile(a, "install-erase-a", f, 5); code != 200 {
					t.Fatalf("reconcile: %d %v", code, out)
				}
			}
			in.reconcile(other, "install-erase-b", "breakdown", 9)
			if n := b.rows(t, "install-erase-a"); n != 3 {
				t.Fatalf("%d rows before the erase", n)
			}
			code, out := in.call("DELETE", "/v1/usage", a, nil)
			if code != 200 || out["deleted"] != float64(3) {
				t.Fatalf("erase: %d %v", code, out)
			}
			if _, err := time.Parse(time.RFC3339, out["erased_at"].(string)); err != nil {
				t.Errorf("erased_at %v", out["erased_at"])
			}
			if n := b.rows(t, "install-erase-a"); n != 0 {
				t.Errorf("%d rows left in the store after the erase", n)
			}
			if n := b.rows(t, "install-erase-b"); n != 1 {
				t.Errorf("another install lost its rows (%d left)", n)
			}
			if code, out := in.call("DELETE", "/v1/usage", a, nil); code != 200 || out["deleted"] != float64(0) {
				t.Errorf("second erase: %d %v", code, out)
			}
			if _, out := in.reconcile(a, "install-erase-a", "breakdown", 0); out["server_count"] != float64(0) {
				t.Errorf("count after erase %v", out)
			}
			if _, out := in.reconcile(other, "install-erase-b", "breakdown", 0); out["server_count"] != float64(9) {
				t.Errorf("other install's count %v", out)
			}
		})
	}
}

// TestRetentionPass drives one retention pass with a fake clock: rows idle
// for longer than the retention go, fresher ones stay.
func TestRetentionPass(t *testing.T) {
	clock := mock.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			env := map[string]string{"OFFLOAD_USAGE_RETENTION_DAYS": "30"}
			for k, v := range b.env {
				env[k] = v
			}
			in := newInstance(t, env, app.WithClock(clock))
			if code, _ := in.reconcile(in.token("install-old-1"), "install-old-1", "breakdown", 3); code != 200 {
				t.Fatalf("reconcile: %d", code)
			}
			clock.Advance(20 * 24 * time.Hour)
			if code, _ := in.reconcile(in.token("install-fresh-1"), "install-fresh-1", "breakdown", 4); code != 200 {
				t.Fatalf("reconcile: %d", code)
			}
			clock.Advance(11 * 24 * time.Hour) // old: 31 days idle, fresh: 11
			if n := in.app.ExpireOnce(context.Background(), 0); n != 1 {
				t.Errorf("expired %d rows, want 1", n)
			}
			if b.rows(t, "install-old-1") != 0 || b.rows(t, "install-fresh-1") != 1 {
				t.Errorf("rows after the pass: old %d fresh %d", b.rows(t, "install-old-1"), b.rows(t, "install-fresh-1"))
			}
		})
	}
}
