package client

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func openTestState(t *testing.T) *State {
	t.Helper()
	st, err := OpenState(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestOpenStateModesAndInstallID(t *testing.T) {
	st := openTestState(t)
	if _, err := uuid.Parse(st.InstallID); err != nil {
		t.Fatalf("install id %q is not a UUID", st.InstallID)
	}
	if m := mode(t, st.Dir); m != 0o700 {
		t.Fatalf("state dir mode = %o, want 700", m)
	}
	if err := st.Tokens.Save(Session{Token: "tok", ExpiresAt: time.Now(), InstallID: st.InstallID}); err != nil {
		t.Fatal(err)
	}
	if err := st.Consent.SetCloudEnabled(true); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Usage.Increment("breakdown"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{InstallIDFile, SessionFile, ConsentFile, UsageFile} {
		if m := mode(t, filepath.Join(st.Dir, f)); m != 0o600 {
			t.Errorf("%s mode = %o, want 600", f, m)
		}
	}
	again, err := OpenState(st.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.InstallID != st.InstallID {
		t.Fatalf("install id changed: %q → %q", st.InstallID, again.InstallID)
	}
}

func TestInstallIDCreatedOnceUnderRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), InstallIDFile)
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			id, err := LoadOrCreateInstallID(path)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || id == "" {
			t.Fatalf("ids differ: %q", ids)
		}
	}
}

func TestFileStoresRoundTrip(t *testing.T) {
	st := openTestState(t)

	if _, ok, err := st.Tokens.Load(); ok || err != nil {
		t.Fatalf("empty token store: ok=%v err=%v", ok, err)
	}
	exp := time.Date(2026, 2, 16, 13, 0, 0, 0, time.UTC)
	want := Session{Token: "tok-1", ExpiresAt: exp, InstallID: st.InstallID}
	if err := st.Tokens.Save(want); err != nil {
		t.Fatal(err)
	}
	// A second store on the same file, as a second process would see it.
	got, ok, err := NewFileTokenStore(st.Tokens.Path()).Load()
	if err != nil || !ok || got != want {
		t.Fatalf("Load = %+v %v %v, want %+v", got, ok, err, want)
	}
	if err := st.Tokens.Clear(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Tokens.Load(); ok {
		t.Fatal("session survived Clear")
	}
	if err := st.Tokens.Clear(); err != nil {
		t.Fatalf("second Clear: %v", err)
	}

	if on, err := st.Consent.CloudEnabled(); on || err != nil {
		t.Fatalf("consent default = %v %v, want off", on, err)
	}
	for _, v := range []bool{true, false, true} {
		if err := st.Consent.SetCloudEnabled(v); err != nil {
			t.Fatal(err)
		}
		if on, err := NewFileConsentStore(st.Consent.Path()).CloudEnabled(); on != v || err != nil {
			t.Fatalf("consent = %v %v, want %v", on, err, v)
		}
	}
}

func TestUsageCounters(t *testing.T) {
	counters := map[string]func(t *testing.T) UsageCounter{
		"memory": func(*testing.T) UsageCounter { return &MemoryUsageCounter{} },
		"file":   func(t *testing.T) UsageCounter { return openTestState(t).Usage },
	}
	for name, mk := range counters {
		t.Run(name, func(t *testing.T) {
			u := mk(t)
			for range 3 {
				if _, err := u.Increment("breakdown"); err != nil {
					t.Fatal(err)
				}
			}
			if g, _ := u.Get("breakdown"); !g.Pending() {
				t.Fatalf("%+v: three counts never reconciled are pending", g)
			}
			if _, ok := (FeatureUsage{Local: 3}).EffectiveRemaining(); ok {
				t.Fatal("remaining known before any reconcile")
			}
			t0 := time.Date(2026, 2, 16, 12, 0, 0, 0, time.UTC)
			steps := []struct {
				raise, remaining int64
				at               time.Time
				wantMirror       int64
				wantDisplay      int64
				wantRemaining    int64 // EffectiveRemaining
				wantAt           time.Time
			}{
				// Server 2, 98 left; one local count is not on the server yet.
				{raise: 2, remaining: 98, at: t0, wantMirror: 2, wantDisplay: 3, wantRemaining: 97, wantAt: t0},
				{raise: 7, remaining: 93, at: t0.Add(time.Minute), wantMirror: 7, wantDisplay: 7, wantRemaining: 93, wantAt: t0.Add(time.Minute)},
				// A late, older answer: the mirror never falls, the newer remaining stays.
				{raise: 4, remaining: 96, at: t0, wantMirror: 7, wantDisplay: 7, wantRemaining: 93, wantAt: t0.Add(time.Minute)},
			}
			for _, s := range steps {
				got, err := u.RaiseMirror("breakdown", Reconciliation{ServerCount: s.raise, EffectiveRemaining: s.remaining, ReconciledAt: s.at})
				if err != nil {
					t.Fatal(err)
				}
				rem, ok := got.EffectiveRemaining()
				if got.Local != 3 || got.Mirror != s.wantMirror || got.Displayed() != s.wantDisplay || !ok || rem != s.wantRemaining || !got.SyncedAt.Equal(s.wantAt) {
					t.Fatalf("after raise %d: %+v displayed %d remaining %d", s.raise, got, got.Displayed(), rem)
				}
			}
			if g, _ := u.Get("breakdown"); g.Pending() {
				t.Fatalf("%+v: nothing is pending once the server counts more", g)
			}
			u.Increment("other")
			all, err := u.All()
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 2 || all[0].Feature != "breakdown" || all[1] != (FeatureUsage{Feature: "other", Local: 1}) {
				t.Fatalf("All = %+v", all)
			}
			if g, _ := u.Get("never"); g != (FeatureUsage{Feature: "never"}) {
				t.Fatalf("Get(never) = %+v", g)
			}
			if err := u.Clear(); err != nil {
				t.Fatal(err)
			}
			if all, err := u.All(); err != nil || len(all) != 0 {
				t.Fatalf("after Clear: %+v, %v", all, err)
			}
			if err := u.Clear(); err != nil {
				t.Fatalf("second Clear: %v", err)
			}
		})
	}
}

// A usage file written before the remaining fields existed still loads.
func TestUsageFileWithoutRemainingLoads(t *testing.T) {
	st := openTestState(t)
	os.WriteFile(filepath.Join(st.Dir, UsageFile), []byte(`{"version":1,"features":{"breakdown":{"local":4,"mirror":2}}}`), 0o600)
	u, err := st.Usage.Get("breakdown")
	if _, known := u.EffectiveRemaining(); err != nil || u.Local != 4 || u.Mirror != 2 || known {
		t.Fatalf("Get = %+v, %v", u, err)
	}
}

func TestCorruptStateIsReportedNotReset(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		content string
		op      func(st *State) error
	}{
		{"usage garbage", UsageFile, "{not json", func(st *State) error { _, err := st.Usage.Increment("breakdown"); return err }},
		{"usage empty", UsageFile, "", func(st *State) error { _, err := st.Usage.All(); return err }},
		{"usage negative", UsageFile, `{"version":1,"features":{"breakdown":{"local":-1,"mirror":0}}}`, func(st *State) error { _, err := st.Usage.Get("breakdown"); return err }},
		{"usage future version", UsageFile, `{"version":2,"features":{}}`, func(st *State) error {
			_, err := st.Usage.RaiseMirror("breakdown", Reconciliation{ServerCount: 1})
			return err
		}},
		{"usage negative remaining", UsageFile, `{"version":1,"features":{"breakdown":{"local":1,"mirror":0,"remaining":-3}}}`, func(st *State) error { _, err := st.Usage.All(); return err }},
		{"consent truncated", ConsentFile, `{"version":1,"cloud_ai_ena`, func(st *State) error { _, err := st.Consent.CloudEnabled(); return err }},
		{"consent missing field", ConsentFile, `{"version":1}`, func(st *State) error { _, err := st.Consent.CloudEnabled(); return err }},
		{"session garbage", SessionFile, "tok-SECRET-garbage", func(st *State) error { _, _, err := st.Tokens.Load(); return err }},
		{"session bad expiry", SessionFile, `{"version":1,"session_token":"t","expires_at":"later","install_id":"i"}`, func(st *State) error { _, _, err := st.Tokens.Load(); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openTestState(t)
			path := filepath.Join(st.Dir, tt.file)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			err := tt.op(st)
			var ce *CorruptStateError
			if !errors.As(err, &ce) || ce.Path != path {
				t.Fatalf("err = %v, want *CorruptStateError naming %s", err, path)
			}
			if !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("message = %q", err)
			}
			after, _ := os.ReadFile(path)
			if string(after) != tt.content {
				t.Fatal("corrupt file was rewritten")
			}
		})
	}
}

// Setting consent is the user's explicit choice, so it replaces a corrupt
// file rather than failing on it.
func TestSetConsentRepairsCorruptFile(t *testing.T) {
	st := openTestState(t)
	os.WriteFile(st.Consent.Path(), []byte("{"), 0o600)
	if err := st.Consent.SetCloudEnabled(true); err != nil {
		t.Fatal(err)
	}
	if on, err := st.Consent.CloudEnabled(); !on || err != nil {
		t.Fatalf("consent = %v %v", on, err)
	}
}

func TestCorruptInstallIDIsReported(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, InstallIDFile), []byte(`{"version":1,"install_id":"x"}`), 0o600)
	_, err := OpenState(dir)
	var ce *CorruptStateError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *CorruptStateError", err)
	}
}

func TestLeftoverTempFileIsIgnored(t *testing.T) {
	st := openTestState(t)
	if _, err := st.Usage.Increment("breakdown"); err != nil {
		t.Fatal(err)
	}
	// A crash between writing the temp file and renaming it leaves this.
	leftover := filepath.Join(st.Dir, "."+UsageFile+".tmp-123456")
	if err := os.WriteFile(leftover, []byte(`{"version":1,"features":{"breakdown":{"lo`), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := st.Usage.Increment("breakdown")
	if err != nil || u.Local != 2 {
		t.Fatalf("Increment = %+v %v, want local 2", u, err)
	}
}

func TestAtomicWriteLeavesNoTempFiles(t *testing.T) {
	st := openTestState(t)
	for range 5 {
		if _, err := st.Usage.Increment("breakdown"); err != nil {
			t.Fatal(err)
		}
		if err := st.Tokens.Save(Session{Token: "t", ExpiresAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(st.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temp file left: %s", e.Name())
		}
	}
}

func TestAtomicWriteKeepsOldFileOnFailure(t *testing.T) {
	st := openTestState(t)
	if err := st.Consent.SetCloudEnabled(true); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		// Root ignores directory permissions; use a path whose parent is a file instead.
		bad := NewFileConsentStore(filepath.Join(st.Dir, ConsentFile, "nested"))
		if err := bad.SetCloudEnabled(false); err == nil {
			t.Fatal("write under a file succeeded")
		}
	} else {
		if err := os.Chmod(st.Dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(st.Dir, 0o700) })
		if err := st.Consent.SetCloudEnabled(false); err == nil {
			t.Fatal("write into a read-only dir succeeded")
		}
	}
	on, err := st.Consent.CloudEnabled()
	if err != nil || !on {
		t.Fatalf("consent after failed write = %v %v, want the old value (on)", on, err)
	}
}

func TestConcurrentIncrementsInOneProcess(t *testing.T) {
	st := openTestState(t)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := st.Usage.Increment("breakdown"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if u, _ := st.Usage.Get("breakdown"); u.Local != 10 {
		t.Fatalf("local = %d, want 10", u.Local)
	}
}
