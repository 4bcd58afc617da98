package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-app/offload"
)

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		url  string
		opts []Option
		ok   bool
	}{
		{"defaults", "http://127.0.0.1:8080", nil, true},
		{"path prefix", "https://api.example.com/offload/", nil, true},
		{"relative", "/v1", nil, false},
		{"ftp", "ftp://example.com", nil, false},
		{"query", "http://example.com/?a=b", nil, false},
		{"short install id", "http://x", []Option{WithInstallID("short")}, false},
		{"long platform", "http://x", []Option{WithPlatform(strings.Repeat("p", 33))}, false},
		{"empty app version", "http://x", []Option{WithAppVersion("")}, false},
		{"nil http client", "http://x", []Option{WithHTTPClient(nil)}, false},
		{"nil store", "http://x", []Option{WithTokenStore(nil)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.url, tt.opts...)
			if (err == nil) != tt.ok {
				t.Fatalf("New(%q) err = %v, want ok=%v", tt.url, err, tt.ok)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	_, srv := newFakeAPI(t, newFakeClock())
	h, err := mustNew(t, srv.URL).Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.Service != offload.ServiceName || h.Version != "test" || !strings.HasPrefix(h.RequestID, "srv-") {
		t.Fatalf("health = %+v", h)
	}
}

func TestBaseURLPathPrefixIsKept(t *testing.T) {
	f, srv := newFakeAPI(t, newFakeClock())
	f.on("/api/v1/health", func(w http.ResponseWriter, r *http.Request) bool {
		writeJSON(w, map[string]string{"status": "ok"})
		return true
	})
	if _, err := mustNew(t, srv.URL+"/api/").Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.callCount("/api/v1/health") != 1 {
		t.Fatal("path prefix dropped")
	}
}

func TestSessionIsReusedAndRefreshedNearExpiry(t *testing.T) {
	clk := newFakeClock()
	f, srv := newFakeAPI(t, clk)
	store := &MemoryTokenStore{}
	c := mustNew(t, srv.URL, WithClock(clk), WithTokenStore(store))
	ctx := context.Background()

	for range 2 {
		if _, err := c.ReconcileUsage(ctx, "breakdown", 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.callCount(pathSessions); n != 1 {
		t.Fatalf("sessions issued = %d, want 1 (reused)", n)
	}
	// 31 s before expiry the session is still good; 30 s before it is not.
	clk.Advance(time.Hour - 31*time.Second)
	if _, err := c.ReconcileUsage(ctx, "breakdown", 0); err != nil {
		t.Fatal(err)
	}
	if n := f.callCount(pathSessions); n != 1 {
		t.Fatalf("sessions issued = %d, want 1", n)
	}
	clk.Advance(time.Second)
	if _, err := c.ReconcileUsage(ctx, "breakdown", 0); err != nil {
		t.Fatal(err)
	}
	if n := f.callCount(pathSessions); n != 2 {
		t.Fatalf("sessions issued = %d, want 2 (refresh before the call)", n)
	}
	if n := f.callCount(pathReconcile); n != 4 {
		t.Fatalf("reconciles = %d, want 4 (no 401 retries)", n)
	}
	s, ok, _ := store.Load()
	if !ok || string(s.Token) != "tok-2" || s.InstallID != "install-0001" {
		t.Fatalf("stored session = %v %q %v", ok, string(s.Token), s.InstallID)
	}
}

func TestSessionOfAnotherInstallIsReplaced(t *testing.T) {
	clk := newFakeClock()
	f, srv := newFakeAPI(t, clk)
	store := &MemoryTokenStore{}
	store.Save(Session{Token: "tok-other", ExpiresAt: clk.Now().Add(time.Hour), InstallID: "someone-else"})
	c := mustNew(t, srv.URL, WithClock(clk), WithTokenStore(store))
	if _, err := c.ReconcileUsage(context.Background(), "breakdown", 0); err != nil {
		t.Fatal(err)
	}
	if f.callCount(pathSessions) != 1 || f.callCount(pathReconcile) != 1 {
		t.Fatalf("calls = %v", f.calls)
	}
}

func TestUnauthorizedRefreshesOnceAndRetriesOnce(t *testing.T) {
	clk := newFakeClock()
	f, srv := newFakeAPI(t, clk)
	store := &MemoryTokenStore{}
	// A token the server does not know, but not near expiry on our clock.
	store.Save(Session{Token: "revoked", ExpiresAt: clk.Now().Add(time.Hour), InstallID: "install-0001"})
	c := mustNew(t, srv.URL, WithClock(clk), WithTokenStore(store))

	b, err := c.GenerateBreakdown(context.Background(), offload.BreakdownRequest{InputText: "x", Granularity: 2}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Steps) != 2 || b.Provider != "openai" || b.Usage.OutputTokens != 20 || b.Latency != 12*time.Millisecond {
		t.Fatalf("breakdown = %+v", b)
	}
	if f.callCount(pathSessions) != 1 || f.callCount(pathBreakdown) != 2 {
		t.Fatalf("calls = %v, want 1 session and 2 breakdowns", f.calls)
	}
}

func TestPersistentUnauthorizedIsReturnedAfterOneRetry(t *testing.T) {
	f, srv := newFakeAPI(t, newFakeClock())
	f.on(pathReconcile, func(w http.ResponseWriter, r *http.Request) bool {
		writeErr(w, 401, "invalid_token", "Invalid session token", "rid-401")
		return true
	})
	c := mustNew(t, srv.URL)
	_, err := c.ReconcileUsage(context.Background(), "breakdown", 1)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != "invalid_token" {
		t.Fatalf("err = %v, want 401 invalid_token", err)
	}
	if f.callCount(pathSessions) != 2 || f.callCount(pathReconcile) != 2 {
		t.Fatalf("calls = %v, want 2 sessions (initial + one refresh) and 2 reconciles", f.calls)
	}
}

func TestConcurrentCallsShareOneSession(t *testing.T) {
	clk := newFakeClock()
	f, srv := newFakeAPI(t, clk)
	c := mustNew(t, srv.URL, WithClock(clk))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.ReconcileUsage(context.Background(), "breakdown", 1); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.callCount(pathSessions); n != 1 {
		t.Fatalf("sessions issued = %d, want 1", n)
	}
}

func TestConsentOffSendsNothing(t *testing.T) {
	c := mustNew(t, failIfCalled(t).URL)
	_, err := c.GenerateBreakdown(context.Background(), offload.BreakdownRequest{InputText: "secret plan", Granularity: 3}, false)
	if !errors.Is(err, ErrConsentRequired) {
		t.Fatalf("err = %v, want ErrConsentRequired", err)
	}
}

func TestOptInHeaderOnlyOnBreakdown(t *testing.T) {
	clk := newFakeClock()
	f, srv := newFakeAPI(t, clk)
	c := mustNew(t, srv.URL, WithClock(clk))
	ctx := context.Background()
	if _, err := c.GenerateBreakdown(ctx, offload.BreakdownRequest{InputText: "x", Granularity: 1}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReconcileUsage(ctx, "breakdown", 0); err != nil {
		t.Fatal(err)
	}
	if got := f.optIns(pathBreakdown); len(got) != 1 || got[0] != "true" {
		t.Fatalf("breakdown opt-in headers = %q", got)
	}
	for _, p := range []string{pathSessions, pathReconcile} {
		if got := f.optIns(p); len(got) != 1 || got[0] != "" {
			t.Fatalf("%s opt-in headers = %q, want none", p, got)
		}
	}
}

func TestBreakdownRequestBody(t *testing.T) {
	f, srv := newFakeAPI(t, newFakeClock())
	c := mustNew(t, srv.URL)
	if _, err := c.GenerateBreakdown(context.Background(), offload.BreakdownRequest{InputText: "plan", Granularity: 4}, true); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(f.lastBody(pathBreakdown)), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"input_text": "plan", "granularity": 4.0, "context_hints": []any{}, "template_ids": []any{}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("body = %v, want %v", got, want)
	}
}

func TestAPIErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   APIError
	}{
		{
			name: "contract error, header id wins", status: 429,
			header: http.Header{"X-Request-Id": {"hdr-id"}, "Retry-After": {"17"}},
			body:   `{"error":{"code":"inference_rate_limited","message":"Too many AI requests; retry later","request_id":"body-id"}}`,
			want:   APIError{Status: 429, Code: "inference_rate_limited", Message: "Too many AI requests; retry later", RequestID: "hdr-id", RetryAfter: 17 * time.Second},
		},
		{
			name: "body id when no header", status: 403,
			body: `{"error":{"code":"install_id_mismatch","message":"m","request_id":"body-id"}}`,
			want: APIError{Status: 403, Code: "install_id_mismatch", Message: "m", RequestID: "body-id"},
		},
		{
			name: "html from a proxy", status: 502, header: http.Header{"X-Request-Id": {"hdr-id"}},
			body: `<html>Bad gateway</html>`,
			want: APIError{Status: 502, Message: "Bad Gateway", RequestID: "hdr-id"},
		},
		{
			name: "bad code shape ignored", status: 500,
			header: http.Header{"X-Request-Id": {"hdr-id"}},
			body:   `{"error":{"code":"Evil Code\n","message":"x"}}`,
			want:   APIError{Status: 500, Message: "Internal Server Error", RequestID: "hdr-id"},
		},
		{
			name: "control characters in message", status: 500,
			header: http.Header{"X-Request-Id": {"hdr-id"}},
			body:   `{"error":{"code":"internal_error","message":"line\u001b[31m\nnext"}}`,
			want:   APIError{Status: 500, Code: "internal_error", Message: "line [31m next", RequestID: "hdr-id"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeAPI(t, newFakeClock())
			f.on(pathHealth, func(w http.ResponseWriter, r *http.Request) bool {
				w.Header().Del("X-Request-ID")
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
				return true
			})
			_, err := mustNew(t, srv.URL).Health(context.Background())
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %T %v, want *APIError", err, err)
			}
			if *ae != tt.want {
				t.Fatalf("got %+v\nwant %+v", *ae, tt.want)
			}
		})
	}
}

func TestAPIErrorIsConsentRequired(t *testing.T) {
	err := error(&APIError{Status: 403, Code: "consent_required"})
	if !errors.Is(err, ErrConsentRequired) {
		t.Fatal("server consent_required should match ErrConsentRequired")
	}
	if errors.Is(&APIError{Status: 403, Code: "install_id_mismatch"}, ErrConsentRequired) {
		t.Fatal("other codes must not match")
	}
}

func TestInvalidResponses(t *testing.T) {
	const secret = "SECRET-USER-TEXT"
	tests := []struct {
		name string
		path string
		body string
	}{
		{"not json", pathBreakdown, "<html>" + secret},
		{"trailing data", pathBreakdown, `{"steps":[{"title":"a","substeps":[]}]} {}`},
		{"no steps", pathBreakdown, `{"provider":"openai"}`},
		{"empty steps", pathBreakdown, `{"steps":[]}`},
		{"empty title", pathBreakdown, `{"steps":[{"title":"  ","substeps":[]}]}`},
		{"long title", pathBreakdown, `{"steps":[{"title":"` + strings.Repeat("é", 281) + `","substeps":[]}]}`},
		{"wrong type", pathBreakdown, `{"steps":[{"title":"` + secret + `","substeps":"` + secret + `"}]}`},
		{"negative usage", pathBreakdown, `{"steps":[{"title":"a","substeps":[]}],"usage":{"input_tokens":-1,"output_tokens":0}}`},
		{"too deep", pathBreakdown, `{"steps":[` + strings.Repeat(`{"title":"a","substeps":[`, 20) + strings.Repeat(`]}`, 20) + `]}`},
		{"reconcile missing count", pathReconcile, `{"effective_remaining":1,"reconciled_at":"2026-02-16T12:00:00Z"}`},
		{"reconcile negative", pathReconcile, `{"server_count":-1,"effective_remaining":1,"reconciled_at":"2026-02-16T12:00:00Z"}`},
		{"reconcile bad time", pathReconcile, `{"server_count":1,"effective_remaining":1,"reconciled_at":"yesterday"}`},
		{"reconcile float", pathReconcile, `{"server_count":1.5,"effective_remaining":1,"reconciled_at":"2026-02-16T12:00:00Z"}`},
		{"session no token", pathSessions, `{"expires_at":"2026-02-16T12:00:00Z"}`},
		{"session token with newline", pathSessions, `{"session_token":"a\nb","expires_at":"2026-02-16T12:00:00Z"}`},
		{"session bad expiry", pathSessions, `{"session_token":"abc","expires_at":"soon"}`},
		{"health without status", pathHealth, `{"service":"x"}`},
		{"too large", pathHealth, `{"status":"ok","pad":"` + strings.Repeat("a", MaxResponseBytes) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeAPI(t, newFakeClock())
			f.on(tt.path, func(w http.ResponseWriter, r *http.Request) bool {
				w.Write([]byte(tt.body))
				return true
			})
			c := mustNew(t, srv.URL)
			ctx := context.Background()
			var err error
			switch tt.path {
			case pathBreakdown:
				_, err = c.GenerateBreakdown(ctx, offload.BreakdownRequest{InputText: secret, Granularity: 1}, true)
			case pathReconcile:
				_, err = c.ReconcileUsage(ctx, "breakdown", 1)
			case pathSessions:
				_, err = c.CreateSession(ctx)
			case pathHealth:
				_, err = c.Health(ctx)
			}
			var ie *InvalidResponseError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %T %v, want *InvalidResponseError", err, err)
			}
			if ie.Status != 200 || !strings.HasPrefix(ie.RequestID, "srv-") || ie.Reason == "" {
				t.Fatalf("error = %+v", ie)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error message leaks content: %v", err)
			}
		})
	}
}

func TestTransportError(t *testing.T) {
	_, srv := newFakeAPI(t, newFakeClock())
	url := srv.URL
	srv.Close()
	_, err := mustNew(t, url).Health(context.Background())
	var te *TransportError
	if !errors.As(err, &te) || te.Op != "GET /v1/health" || te.RequestID == "" {
		t.Fatalf("err = %T %v, want *TransportError", err, err)
	}
}

func TestContextCancelIsTransportError(t *testing.T) {
	f, srv := newFakeAPI(t, newFakeClock())
	block := make(chan struct{})
	defer close(block)
	f.on(pathHealth, func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-block:
		case <-r.Context().Done():
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := mustNew(t, srv.URL).Health(ctx)
	var te *TransportError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want transport error wrapping DeadlineExceeded", err)
	}
}

func TestTokenNeverFormatted(t *testing.T) {
	s := Session{Token: "tok-SECRET", ExpiresAt: time.Unix(0, 0), InstallID: "install-0001"}
	b, _ := json.Marshal(s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%s", s.Token), string(b)} {
		if strings.Contains(out, "SECRET") {
			t.Fatalf("token leaked: %s", out)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 2, 16, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"5", 5 * time.Second}, {"-3", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"999999999999", 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
