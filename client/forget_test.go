package client

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/offload-app/offload"
)

func TestEraseUsage(t *testing.T) {
	clk := newFakeClock()
	f, srv := newFakeAPI(t, clk)
	f.setCount("breakdown", 4)
	f.setCount("export", 1)
	store := &MemoryTokenStore{}
	// A token the server does not know: the erase refreshes once, like every protected call.
	store.Save(Session{Token: "revoked", ExpiresAt: clk.Now().Add(time.Hour), InstallID: "install-0001"})
	c := mustNew(t, srv.URL, WithClock(clk), WithTokenStore(store))
	e, err := c.EraseUsage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if e.Deleted != 2 || !e.ErasedAt.Equal(clk.Now().Truncate(time.Second)) || e.RequestID == "" {
		t.Fatalf("erasure = %+v", e)
	}
	if _, ok := f.count("breakdown"); ok {
		t.Fatal("the fake still holds the count")
	}
	if f.callCount(pathUsage) != 2 || f.callCount(pathSessions) != 1 || f.lastBody(pathUsage) != "" || f.optIns(pathUsage)[0] != "" {
		t.Fatalf("calls = %v, body %q: want one refresh, no body, no opt-in", f.calls, f.lastBody(pathUsage))
	}
	if !slices.Equal(f.methods, []string{http.MethodDelete}) {
		t.Fatalf("methods = %v", f.methods)
	}
}

func TestEraseUsageErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		check  func(error) bool
	}{
		{"rate limited", 429, `{"error":{"code":"usage_rate_limited","message":"Too many usage requests; retry later","request_id":"r"}}`, func(err error) bool {
			var ae *APIError
			return errors.As(err, &ae) && ae.Code == "usage_rate_limited" && ae.RetryAfter == 9*time.Second
		}},
		{"missing deleted", 200, `{"erased_at":"2026-02-16T12:00:00Z"}`, func(err error) bool { var ie *InvalidResponseError; return errors.As(err, &ie) }},
		{"negative", 200, `{"deleted":-1,"erased_at":"2026-02-16T12:00:00Z"}`, func(err error) bool { var ie *InvalidResponseError; return errors.As(err, &ie) }},
		{"bad time", 200, `{"deleted":1,"erased_at":"now"}`, func(err error) bool { var ie *InvalidResponseError; return errors.As(err, &ie) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeAPI(t, newFakeClock())
			f.on(pathUsage, func(w http.ResponseWriter, r *http.Request) bool {
				w.Header().Set("Retry-After", "9")
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
				return true
			})
			if _, err := mustNew(t, srv.URL).EraseUsage(context.Background()); !tt.check(err) {
				t.Fatalf("err = %T %v", err, err)
			}
		})
	}
}

// newInstall is an install in a state dir with consent as given, a stored
// session and one local count, talking to url.
func newInstall(t *testing.T, consent bool, url string) (*State, *Client) {
	t.Helper()
	st := openTestState(t)
	if err := st.Consent.SetCloudEnabled(consent); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Usage.Increment(offload.FeatureBreakdown); err != nil {
		t.Fatal(err)
	}
	if err := st.Tokens.Save(Session{Token: "tok-old", ExpiresAt: time.Now().Add(time.Hour), InstallID: st.InstallID}); err != nil {
		t.Fatal(err)
	}
	return st, mustNew(t, url, WithInstallID(st.InstallID), WithTokenStore(st.Tokens))
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	return err == nil
}

var allLocal = []string{SessionFile, UsageFile, InstallIDFile}

func TestForget(t *testing.T) {
	deadURL := func(t *testing.T) string {
		_, srv := newFakeAPI(t, newFakeClock())
		srv.Close()
		return srv.URL
	}
	tests := []struct {
		name       string
		consent    bool
		localOnly  bool
		server     func(t *testing.T) (string, *fakeAPI)
		want       ServerOutcome
		wantErased int64
	}{
		{"consent on, server answers", true, false, func(t *testing.T) (string, *fakeAPI) {
			f, srv := newFakeAPI(t, newFakeClock())
			f.setCount(offload.FeatureBreakdown, 3)
			return srv.URL, f
		}, ServerErased, 1},
		{"consent off", false, false, func(t *testing.T) (string, *fakeAPI) { return failIfCalled(t).URL, nil }, ServerConsentOff, 0},
		{"local only", true, true, func(t *testing.T) (string, *fakeAPI) { return failIfCalled(t).URL, nil }, ServerLocalOnly, 0},
		{"unreachable", true, false, func(t *testing.T) (string, *fakeAPI) { return deadURL(t), nil }, ServerUnreachable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, api := tt.server(t)
			st, c := newInstall(t, tt.consent, url)
			stray := filepath.Join(st.Dir, "."+SessionFile+".tmp-42")
			os.WriteFile(stray, []byte("tok-half-written"), 0o600)
			got, err := st.Forget(context.Background(), c, tt.localOnly)
			if err != nil {
				t.Fatal(err)
			}
			if got.Server != tt.want || !slices.Equal(got.Removed, allLocal) {
				t.Fatalf("Forget = %+v, want server %s and every local file removed", got, tt.want)
			}
			if tt.want == ServerErased {
				if got.Erasure == nil || got.Erasure.Deleted != tt.wantErased || got.Erasure.RequestID == "" {
					t.Fatalf("erasure = %+v", got.Erasure)
				}
				if _, ok := api.count(offload.FeatureBreakdown); ok {
					t.Fatal("server count kept")
				}
			} else if got.Erasure != nil {
				t.Fatalf("erasure %+v without an erase", got.Erasure)
			}
			if (tt.want == ServerUnreachable) != (got.ServerErr != nil) {
				t.Fatalf("server error = %v", got.ServerErr)
			}
			for _, f := range append(allLocal, filepath.Base(stray)) {
				if exists(t, filepath.Join(st.Dir, f)) {
					t.Fatalf("%s still there", f)
				}
			}
			if !exists(t, filepath.Join(st.Dir, ConsentFile)) {
				t.Fatal("the consent setting was removed")
			}
			// A second forget finds nothing left.
			again, err := st.Forget(context.Background(), c, true)
			if err != nil || len(again.Removed) != 0 {
				t.Fatalf("second Forget = %+v, %v", again, err)
			}
		})
	}
}

// A server that answers but refuses keeps everything: the install id is
// the only key to the server's copy.
func TestForgetRefusedRemovesNothing(t *testing.T) {
	f, srv := newFakeAPI(t, newFakeClock())
	f.on(pathUsage, func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Retry-After", "30")
		writeErr(w, 429, "usage_rate_limited", "Too many usage requests; retry later", "r")
		return true
	})
	st, c := newInstall(t, true, srv.URL)
	got, err := st.Forget(context.Background(), c, false)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "usage_rate_limited" || ae.RetryAfter != 30*time.Second || got.ServerErr != err {
		t.Fatalf("Forget = %+v, %v", got, err)
	}
	for _, name := range allLocal {
		if !exists(t, filepath.Join(st.Dir, name)) {
			t.Fatalf("%s removed after a refusal", name)
		}
	}
}

func TestForgetCanceledRemovesNothing(t *testing.T) {
	f, srv := newFakeAPI(t, newFakeClock())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.on(pathUsage, func(w http.ResponseWriter, r *http.Request) bool {
		cancel()
		<-r.Context().Done()
		return true
	})
	st, c := newInstall(t, true, srv.URL)
	if _, err := st.Forget(ctx, c, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	for _, name := range allLocal {
		if !exists(t, filepath.Join(st.Dir, name)) {
			t.Fatalf("%s removed after a cancel", name)
		}
	}
}

func TestForgetWithoutInstallCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never-used")
	st, err := ReadState(dir)
	if err != nil || st.InstallID != "" {
		t.Fatalf("ReadState = %+v, %v", st, err)
	}
	got, err := st.Forget(context.Background(), nil, false)
	if err != nil || got.Server != ServerNoInstallID || len(got.Removed) != 0 {
		t.Fatalf("Forget = %+v, %v", got, err)
	}
	if exists(t, dir) {
		t.Fatal("Forget created the state dir")
	}
}

func TestForgetCorruptConsentIsOff(t *testing.T) {
	st, c := newInstall(t, true, failIfCalled(t).URL)
	os.WriteFile(filepath.Join(st.Dir, ConsentFile), []byte("{"), 0o600)
	got, err := st.Forget(context.Background(), c, false)
	var ce *CorruptStateError
	if err != nil || got.Server != ServerConsentOff || len(got.Warnings) != 1 || !errors.As(got.Warnings[0], &ce) {
		t.Fatalf("Forget = %+v, %v", got, err)
	}
}

func TestReadAndTemporaryState(t *testing.T) {
	st := openTestState(t)
	read, err := ReadState(st.Dir)
	if err != nil || read.InstallID != st.InstallID || read.Temporary {
		t.Fatalf("ReadState = %+v, %v", read, err)
	}
	os.WriteFile(filepath.Join(st.Dir, InstallIDFile), []byte("{"), 0o600)
	if _, err := ReadState(st.Dir); err == nil {
		t.Fatal("corrupt install id read")
	}
	tmp := TemporaryState(st.Dir)
	if !tmp.Temporary || tmp.InstallID == st.InstallID || len(tmp.InstallID) < 8 {
		t.Fatalf("TemporaryState = %+v", tmp)
	}
}
