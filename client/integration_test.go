package client

// Tests against the real server handler in-process, with a fake OpenAI
// upstream: the design's app-side test list.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-app/offload/mock"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/internal/apptest"
	"github.com/offload-app/offload/openai/openaitest"
)

// tap wraps the real handler: it counts requests and answers per path, can
// rewrite requests, and can play dead (drop the connection unanswered).
type tap struct {
	h       http.Handler
	down    atomic.Bool
	rewrite func(*http.Request)

	mu       sync.Mutex
	statuses map[string][]int
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (t *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if t.down.Load() {
		panic(http.ErrAbortHandler) // the connection closes with no answer
	}
	if t.rewrite != nil {
		t.rewrite(r)
	}
	rec := &statusRecorder{ResponseWriter: w, status: 200}
	t.h.ServeHTTP(rec, r)
	t.mu.Lock()
	t.statuses[r.URL.Path] = append(t.statuses[r.URL.Path], rec.status)
	t.mu.Unlock()
}

func (t *tap) seen(path string) []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]int(nil), t.statuses[path]...)
}

type realServer struct {
	*apptest.Server
	tap *tap
}

// startRealServer runs the real server for env (on top of apptest's
// defaults) behind a tap.
func startRealServer(t *testing.T, env map[string]string) *realServer {
	t.Helper()
	tp := &tap{statuses: map[string][]int{}}
	srv := apptest.Start(t, env, apptest.WithWrap(func(h http.Handler) http.Handler { tp.h = h; return tp }))
	return &realServer{Server: srv, tap: tp}
}

type appFixture struct {
	c       *Client
	svc     *Service
	clock   *mock.Clock
	tokens  *MemoryTokenStore
	consent *MemoryConsentStore
	usage   *MemoryUsageCounter
}

func newAppFixture(t *testing.T, url string, consent bool) appFixture {
	t.Helper()
	fx := appFixture{
		clock:   mock.NewClock(time.Now().UTC()),
		tokens:  &MemoryTokenStore{},
		consent: &MemoryConsentStore{},
		usage:   &MemoryUsageCounter{},
	}
	fx.consent.SetCloudEnabled(consent)
	fx.c = mustNew(t, url, WithClock(fx.clock), WithTokenStore(fx.tokens))
	// The background reconcile has its own tests; here it would race the
	// counts each test checks.
	fx.svc = NewService(fx.c, fx.consent, fx.usage, WithAutoSync(0))
	return fx
}

func (fx appFixture) local(t *testing.T) int64 {
	u, err := fx.usage.Get(offload.FeatureBreakdown)
	if err != nil {
		t.Fatal(err)
	}
	return u.Local
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRealConsentOnUsesCloud(t *testing.T) {
	srv := startRealServer(t, nil)
	fx := newAppFixture(t, srv.URL, true)
	res, err := fx.svc.Generate(context.Background(), testReq)
	if err != nil {
		t.Fatal(err)
	}
	if res.Source != SourceCloud || res.Provider != "openai" || len(res.Steps) == 0 || res.Usage == nil ||
		res.Usage.InputTokens != openaitest.DefaultPromptTokens || res.Usage.OutputTokens != openaitest.DefaultCompletionTokens {
		t.Fatalf("result = %+v", res)
	}
	if srv.Upstream.Count() != 1 || fx.local(t) != 1 {
		t.Fatalf("upstream calls %d, local count %d; want 1 and 1", srv.Upstream.Count(), fx.local(t))
	}
}

func TestRealConsentOffSendsNothing(t *testing.T) {
	srv := startRealServer(t, nil)
	srv.tap.rewrite = func(r *http.Request) { t.Errorf("server called with consent off: %s %s", r.Method, r.URL.Path) }
	fx := newAppFixture(t, srv.URL, false)
	res, err := fx.svc.Generate(context.Background(), testReq)
	if err != nil || res.Source != SourceOnDevice || len(res.Steps) == 0 {
		t.Fatalf("Generate = %+v, %v", res, err)
	}
	if _, err := fx.svc.SyncUsage(context.Background()); !errors.Is(err, ErrConsentRequired) {
		t.Fatalf("SyncUsage = %v, want ErrConsentRequired", err)
	}
	if fx.local(t) != 1 {
		t.Fatalf("local count = %d, want 1", fx.local(t))
	}
}

func TestRealTokenExpiryRefreshesBeforeTheCall(t *testing.T) {
	srv := startRealServer(t, nil) // session TTL 3600 s
	fx := newAppFixture(t, srv.URL, true)
	ctx := context.Background()
	if _, err := fx.svc.Generate(ctx, testReq); err != nil {
		t.Fatal(err)
	}
	// Only the client's clock moves: the server would still accept the old
	// token, so a second session proves the client refreshed on its own.
	fx.clock.Advance(time.Hour - 20*time.Second)
	res, err := fx.svc.Generate(ctx, testReq)
	if err != nil || res.Source != SourceCloud {
		t.Fatalf("Generate = %+v, %v", res, err)
	}
	if got := srv.tap.seen(pathSessions); !equalInts(got, []int{200, 200}) {
		t.Fatalf("session answers = %v, want two issues", got)
	}
	if got := srv.tap.seen(pathBreakdown); !equalInts(got, []int{200, 200}) {
		t.Fatalf("breakdown answers = %v, want no 401", got)
	}
}

func TestRealUnauthorizedRefreshesOnceAndRetries(t *testing.T) {
	srv := startRealServer(t, nil)
	other := startRealServer(t, nil) // a different random signing secret
	fx := newAppFixture(t, srv.URL, true)
	foreign, err := mustNew(t, other.URL).CreateSession(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	foreign.InstallID = fx.c.InstallID()
	fx.tokens.Save(foreign)

	res, err := fx.svc.Generate(context.Background(), testReq)
	if err != nil || res.Source != SourceCloud {
		t.Fatalf("Generate = %+v, %v", res, err)
	}
	if got := srv.tap.seen(pathBreakdown); !equalInts(got, []int{401, 200}) {
		t.Fatalf("breakdown answers = %v, want [401 200]", got)
	}
	if got := srv.tap.seen(pathSessions); len(got) != 1 {
		t.Fatalf("sessions issued = %v, want one refresh", got)
	}
}

func TestRealFallbacks(t *testing.T) {
	t.Run("provider 5xx", func(t *testing.T) {
		srv := startRealServer(t, nil)
		srv.Upstream.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 500} })
		fx := newAppFixture(t, srv.URL, true)
		res, err := fx.svc.Generate(context.Background(), testReq)
		if err != nil {
			t.Fatal(err)
		}
		if res.Source != SourceOnDevice || res.Fallback == nil || res.Fallback.Reason != ReasonServerError ||
			res.Fallback.Code != offload.CodeProviderRequestFailed || len(res.Steps) == 0 || res.RequestID == "" {
			t.Fatalf("result = %+v", res)
		}
		if got := srv.tap.seen(pathBreakdown); !equalInts(got, []int{502}) {
			t.Fatalf("breakdown answers = %v, want [502]", got)
		}
		if fx.local(t) != 1 {
			t.Fatalf("local count = %d, want 1", fx.local(t))
		}
	})
	t.Run("dead server", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close() // the listener is gone
		fx := newAppFixture(t, url, true)
		res, err := fx.svc.Generate(context.Background(), testReq)
		if err != nil || res.Source != SourceOnDevice || res.Fallback == nil || res.Fallback.Reason != ReasonUnreachable {
			t.Fatalf("Generate = %+v, %v", res, err)
		}
		if fx.local(t) != 1 {
			t.Fatalf("local count = %d, want 1", fx.local(t))
		}
	})
}

func TestRealRefusalsFallBack(t *testing.T) {
	long := offload.BreakdownRequest{InputText: strings.Repeat("x", 5000), Granularity: 3}
	badHint := offload.BreakdownRequest{InputText: "plan", Granularity: 3, ContextHints: []string{strings.Repeat("h", 281)}}
	tests := []struct {
		name       string
		env        map[string]string
		rewrite    func(*http.Request)
		req        offload.BreakdownRequest
		warmups    int // successful cloud breakdowns first
		wantReason Reason
		wantStatus int
		wantCode   string
		wantCalls  []int // breakdown answers seen by the server
	}{
		{
			name: "rate limited", env: map[string]string{"OFFLOAD_AI_INFERENCE_LIMIT_PER_INSTALL": "1"},
			warmups: 1, wantReason: ReasonRateLimited, wantStatus: 429, wantCode: offload.CodeInferenceRateLimited, wantCalls: []int{200, 429},
		},
		{
			name: "quota exceeded", env: map[string]string{"OFFLOAD_ENFORCE_QUOTA": "true", "OFFLOAD_DEFAULT_FEATURE_QUOTA": "0"},
			wantReason: ReasonQuotaExceeded, wantStatus: 429, wantCode: offload.CodeQuotaExceeded, wantCalls: []int{429},
		},
		{
			name: "too large", req: long,
			wantReason: ReasonTooLarge, wantStatus: 413, wantCode: offload.CodeRequestTooLarge, wantCalls: []int{413},
		},
		{
			name: "validation", req: badHint,
			wantReason: ReasonRejected, wantStatus: 422, wantCode: offload.CodeValidation, wantCalls: []int{422},
		},
		{
			name: "consent required", rewrite: func(r *http.Request) { r.Header.Del(headerOptIn) },
			wantReason: ReasonRejected, wantStatus: 403, wantCode: offload.CodeConsentRequired, wantCalls: []int{403},
		},
		{
			name: "persistent 401",
			rewrite: func(r *http.Request) {
				if r.URL.Path == pathBreakdown {
					r.Header.Set("Authorization", "Bearer not-a-token")
				}
			},
			wantReason: ReasonUnauthorized, wantStatus: 401, wantCode: offload.CodeInvalidToken, wantCalls: []int{401, 401},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startRealServer(t, tt.env)
			srv.tap.rewrite = tt.rewrite
			fx := newAppFixture(t, srv.URL, true)
			for range tt.warmups {
				if res, err := fx.svc.Generate(context.Background(), testReq); err != nil || res.Source != SourceCloud {
					t.Fatalf("warm-up = %+v, %v", res, err)
				}
			}
			req := tt.req
			if req.InputText == "" {
				req = testReq
			}
			before := fx.local(t)
			res, err := fx.svc.Generate(context.Background(), req)
			if err != nil {
				t.Fatalf("Generate err = %v, want an on-device plan", err)
			}
			fb := res.Fallback
			if res.Source != SourceOnDevice || len(res.Steps) == 0 || fb == nil || fb.Reason != tt.wantReason ||
				fb.Status != tt.wantStatus || fb.Code != tt.wantCode || fb.RequestID == "" {
				t.Fatalf("Generate = %+v (fallback %+v); want on-device, %s %d %s with a request id", res, fb, tt.wantReason, tt.wantStatus, tt.wantCode)
			}
			if tt.wantStatus == 429 && fb.RetryAfter <= 0 {
				t.Fatalf("429 without Retry-After: %+v", fb)
			}
			if fx.local(t) != before+1 {
				t.Fatal("the on-device plan was not counted")
			}
			if got := srv.tap.seen(pathBreakdown); !equalInts(got, tt.wantCalls) {
				t.Fatalf("breakdown answers = %v, want %v", got, tt.wantCalls)
			}
			if tt.wantStatus == 401 {
				if got := srv.tap.seen(pathSessions); len(got) != 2 {
					t.Fatalf("sessions issued = %v, want 2 (one refresh)", got)
				}
			}
		})
	}
}

// A corrupt session file is a cache miss: a new session, a cloud plan, a warning.
func TestRealCorruptSessionIsReplaced(t *testing.T) {
	srv := startRealServer(t, nil)
	st := openTestState(t)
	st.Consent.SetCloudEnabled(true)
	os.WriteFile(filepath.Join(st.Dir, SessionFile), []byte("{tok-SECRET"), 0o600)
	c := mustNew(t, srv.URL, WithInstallID(st.InstallID), WithTokenStore(st.Tokens))
	svc := NewService(c, st.Consent, st.Usage, WithAutoSync(0))
	res, err := svc.Generate(context.Background(), testReq)
	var ce *CorruptStateError
	if err != nil || res.Source != SourceCloud || len(res.Warnings) != 1 || !errors.As(res.Warnings[0], &ce) ||
		res.Warnings[0].Effect != EffectSessionReplaced || strings.Contains(res.Warnings[0].Error(), "SECRET") {
		t.Fatalf("Generate = %+v, %v", res, err)
	}
	if s, ok, err := st.Tokens.Load(); err != nil || !ok || s.InstallID != st.InstallID {
		t.Fatalf("session file after = %v %v", ok, err)
	}
	if res, _ := svc.Generate(context.Background(), testReq); len(res.Warnings) != 0 || len(srv.tap.seen(pathSessions)) != 1 {
		t.Fatalf("second call: warnings %v, sessions %v", res.Warnings, srv.tap.seen(pathSessions))
	}
}

func TestRealAutoSync(t *testing.T) {
	srv := startRealServer(t, nil)
	fx := newAppFixture(t, srv.URL, true)
	fx.svc = NewService(fx.c, fx.consent, fx.usage) // the default bound
	for range 2 {
		fx.usage.Increment(offload.FeatureBreakdown) // on-device, earlier
	}
	ctx := context.Background()
	for range 2 {
		if res, err := fx.svc.Generate(ctx, testReq); err != nil || res.Source != SourceCloud {
			t.Fatalf("Generate = %+v, %v", res, err)
		}
		// Before the next breakdown: the server counting that one before
		// the reconcile of the local 3 arrives would leave it at
		// max(1+1, 3) = 3 until the next sync, by design.
		if err := fx.svc.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.tap.seen(pathReconcile); !equalInts(got, []int{200}) {
		t.Fatalf("reconciles = %v, want one", got)
	}
	// The sync ran after the first breakdown: local 3 sent; the second
	// breakdown is pending again, counted by the server but not mirrored.
	u, _ := fx.usage.Get(offload.FeatureBreakdown)
	rem, ok := u.EffectiveRemaining()
	if u.Local != 4 || u.Mirror != 3 || !ok || rem != 96 {
		t.Fatalf("usage = %+v, effective remaining %d %v; want local 4, mirror 3, 96", u, rem, ok)
	}
	if rec, err := fx.c.ReconcileUsage(ctx, offload.FeatureBreakdown, 0); err != nil || rec.ServerCount != 4 {
		t.Fatalf("server count = %+v, %v; want 4 (3 synced, then 1 more cloud call)", rec, err)
	}
}

func TestRealForget(t *testing.T) {
	srv := startRealServer(t, nil)
	st := openTestState(t)
	st.Consent.SetCloudEnabled(true)
	c := mustNew(t, srv.URL, WithInstallID(st.InstallID), WithTokenStore(st.Tokens))
	ctx := context.Background()
	if _, err := c.ReconcileUsage(ctx, offload.FeatureBreakdown, 5); err != nil {
		t.Fatal(err)
	}
	probe, err := c.EraseUsage(ctx)
	var ae *APIError
	if errors.As(err, &ae) && (ae.Status == 404 || ae.Status == 405) {
		t.Fatalf("the server has no DELETE /v1/usage (%d)", ae.Status)
	}
	if err != nil || probe.Deleted != 1 {
		t.Fatalf("EraseUsage = %+v, %v; want 1 row deleted", probe, err)
	}
	// Again with counts, through Forget.
	st.Usage.Increment(offload.FeatureBreakdown)
	if _, err := c.ReconcileUsage(ctx, offload.FeatureBreakdown, 3); err != nil {
		t.Fatal(err)
	}
	got, err := st.Forget(ctx, c, false)
	if err != nil || got.Server != ServerErased || got.Erasure == nil || got.Erasure.Deleted != 1 ||
		!slices.Equal(got.Removed, []string{SessionFile, UsageFile, InstallIDFile}) {
		t.Fatalf("Forget = %+v, %v", got, err)
	}
	// The server starts again from 0 for that install.
	if rec, err := c.ReconcileUsage(ctx, offload.FeatureBreakdown, 0); err != nil || rec.ServerCount != 0 {
		t.Fatalf("after forget: %+v, %v", rec, err)
	}
}
func TestRealInstallIDMismatch(t *testing.T) {
	srv := startRealServer(t, nil)
	ctx := context.Background()
	fx := newAppFixture(t, srv.URL, true)
	// A token of another install, filed in this client's store as its own.
	s, err := mustNew(t, srv.URL, WithInstallID("another-install")).CreateSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.InstallID = fx.c.InstallID()
	fx.tokens.Save(s)

	_, err = fx.svc.SyncUsage(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Code != offload.CodeInstallIDMismatch {
		t.Fatalf("SyncUsage = %v, want 403 install_id_mismatch", err)
	}
	if u, _ := fx.usage.Get(offload.FeatureBreakdown); u.Mirror != 0 {
		t.Fatalf("mirror moved on an error: %+v", u)
	}

	// The same refusal for a hand-made request: our token, another install id.
	own, err := fx.c.CreateSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"install_id": "someone-else-entirely", "feature": "breakdown", "local_count": 1})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+pathReconcile, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+string(own.Token))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("hand-made mismatch answered %d, want 403", resp.StatusCode)
	}
}

func TestRealReconcilePreservesMergedCounts(t *testing.T) {
	srv := startRealServer(t, nil)
	fx := newAppFixture(t, srv.URL, true)
	ctx := context.Background()

	// The server already counts 7 for this install (say, from before a reinstall of the state).
	if rec, err := fx.c.ReconcileUsage(ctx, offload.FeatureBreakdown, 7); err != nil || rec.ServerCount != 7 {
		t.Fatalf("seed reconcile = %+v, %v", rec, err)
	}
	for range 3 {
		fx.usage.Increment(offload.FeatureBreakdown)
	}
	got, err := fx.svc.SyncUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Sent != 3 || got[0].ServerCount != 7 || got[0].Mirror != 7 || got[0].Displayed() != 7 {
		t.Fatalf("sync = %+v, want server 7 kept and mirrored", got[0])
	}
	for range 6 { // local 9 now passes the server
		fx.usage.Increment(offload.FeatureBreakdown)
	}
	if got, err = fx.svc.SyncUsage(ctx); err != nil || got[0].Sent != 9 || got[0].ServerCount != 9 || got[0].EffectiveRemaining != 91 {
		t.Fatalf("sync = %+v, %v; want 9 stored", got, err)
	}
	// A stale low count never lowers the server or the mirror.
	if rec, err := fx.c.ReconcileUsage(ctx, offload.FeatureBreakdown, 1); err != nil || rec.ServerCount != 9 {
		t.Fatalf("stale reconcile = %+v, %v", rec, err)
	}
	if u, _ := fx.usage.RaiseMirror(offload.FeatureBreakdown, Reconciliation{ServerCount: 1}); u.Mirror != 9 {
		t.Fatalf("mirror fell: %+v", u)
	}
}

func TestRealOfflineIncrementsAreReconciledLater(t *testing.T) {
	srv := startRealServer(t, nil)
	fx := newAppFixture(t, srv.URL, true)
	ctx := context.Background()
	for range 2 { // online: the server counts these itself
		if res, err := fx.svc.Generate(ctx, testReq); err != nil || res.Source != SourceCloud {
			t.Fatalf("Generate = %+v, %v", res, err)
		}
	}
	srv.tap.down.Store(true)
	for range 3 {
		res, err := fx.svc.Generate(ctx, testReq)
		if err != nil || res.Source != SourceOnDevice || res.Fallback == nil || res.Fallback.Reason != ReasonUnreachable {
			t.Fatalf("offline Generate = %+v, %v", res, err)
		}
	}
	var te *TransportError
	if _, err := fx.svc.SyncUsage(ctx); !errors.As(err, &te) {
		t.Fatalf("offline SyncUsage = %v, want *TransportError", err)
	}
	if u, _ := fx.usage.Get(offload.FeatureBreakdown); u.Local != 5 || u.Mirror != 0 {
		t.Fatalf("offline counts = %+v, want local 5", u)
	}

	srv.tap.down.Store(false)
	got, err := fx.svc.SyncUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Sent != 5 || got[0].ServerCount != 5 || got[0].Mirror != 5 {
		t.Fatalf("sync after reconnect = %+v, want 5 everywhere", got[0])
	}
}
