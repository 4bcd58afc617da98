package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/clientip"
	"github.com/offload-app/offload/mock"
	"github.com/offload-app/offload/openapi/openapitest"
	"github.com/offload-app/offload/ratelimit"
	"github.com/offload-app/offload/token"
)

var t0 = time.Date(2026, 2, 16, 12, 0, 0, 0, time.UTC)

// env is a server under test with its fakes.
type env struct {
	t        testing.TB
	handler  http.Handler // raw, validated against the OpenAPI document
	raw      http.Handler // for tests on a real connection (streaming, hijacking)
	clock    *mock.Clock
	tokens   *token.Codec
	logs     *syncBuffer
	store    *memStore
	calls    int // provider calls
	mu       sync.Mutex
	provider *mock.Provider
}

type envOption func(*Deps)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, clock: mock.NewClock(t0), logs: &syncBuffer{}, store: newMemStore()}
	var err error
	e.tokens, err = token.New(token.Options{
		Issuer: "offload-backend", Audience: "offload-ios", ActiveKID: "v2-default",
		Keys: map[string][]byte{"v2-default": []byte("0123456789abcdefghijklmnopqrstuvwxyz")},
		TTL:  time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.provider = &mock.Provider{ProviderName: "fake", GenerateFn: func(ctx context.Context, req offload.BreakdownRequest) (offload.Breakdown, error) {
		e.mu.Lock()
		e.calls++
		e.mu.Unlock()
		return offload.Breakdown{
			Steps: []offload.Step{{Title: "First", Substeps: []offload.Step{}}},
			Usage: offload.TokenUsage{InputTokens: 11, OutputTokens: 7},
		}, nil
	}}
	d := Deps{
		Logger:       slog.New(slog.NewJSONHandler(e.logs, nil)),
		Clock:        e.clock,
		Environment:  "test",
		BuildVersion: "1.2.3",
		Tokens:       e.tokens,
		ClientIP:     clientip.New(nil).ClientIP,
		SessionLimits: Limits{
			Name:       "session",
			PerIP:      ratelimit.NewFixedWindow(8, time.Minute, e.clock),
			PerInstall: ratelimit.NewFixedWindow(4, time.Minute, e.clock),
		},
		AILimits: Limits{
			Name:       "ai",
			PerIP:      ratelimit.NewFixedWindow(120, time.Minute, e.clock),
			PerInstall: ratelimit.NewFixedWindow(20, time.Minute, e.clock),
		},
		UsageLimits: Limits{
			Name:       "usage",
			PerIP:      ratelimit.NewFixedWindow(1200, time.Minute, e.clock),
			PerInstall: ratelimit.NewFixedWindow(120, time.Minute, e.clock),
		},
		UsageWriteTimeout: 5 * time.Second,
		Provider:          e.provider,
		ProviderDeadline:  time.Minute,
		Store:             e.store.mock(),
		FeatureQuota:      100,
		MaxBodyBytes:      256 << 10,
		MaxInputChars:     4000,
	}
	for _, o := range opts {
		o(&d)
	}
	e.raw = NewServer(d)
	// Every answer of every test is checked against the OpenAPI document.
	e.handler = openapitest.Wrap(t, e.raw)
	return e
}

func (e *env) providerCalls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

// req is one request to the server under test.
type req struct {
	method, path string
	body         string
	header       map[string]string
	remote       string
}

func (e *env) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	hr := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, hr)
	return w
}

func (e *env) token(installID string) string {
	e.t.Helper()
	tok, _, err := e.tokens.Issue(installID, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// wantError checks the contract's error envelope.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var body struct {
		Error struct{ Code, Message, RequestID string } `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	// request_id is snake_case on the wire.
	var raw map[string]map[string]string
	json.Unmarshal(w.Body.Bytes(), &raw)
	if body.Error.Code != code {
		t.Errorf("code = %q, want %q", body.Error.Code, code)
	}
	if body.Error.Message == "" {
		t.Error("empty message")
	}
	if rid := raw["error"]["request_id"]; rid == "" || rid != w.Header().Get("X-Request-ID") {
		t.Errorf("request_id %q, header %q", rid, w.Header().Get("X-Request-ID"))
	}
	if status == 401 && w.Header().Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("401 without WWW-Authenticate: Bearer")
	}
	if status == 429 && w.Header().Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", w.Body, err)
	}
	return v
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// memStore is an in-memory usage store with a switch to fail like a broken disk.
type memStore struct {
	mu     sync.Mutex
	counts map[[2]string]int64
	fail   bool
}

func newMemStore() *memStore { return &memStore{counts: map[[2]string]int64{}} }

func (s *memStore) mock() *mock.UsageStore {
	return &mock.UsageStore{
		ReconcileFn: func(_ context.Context, id, f string, n int64) (int64, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.fail {
				return 0, offload.ErrStorage
			}
			k := [2]string{id, f}
			s.counts[k] = max(s.counts[k], n)
			return s.counts[k], nil
		},
		IncrementFn: func(_ context.Context, id, f string) (int64, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.fail {
				return 0, offload.ErrStorage
			}
			s.counts[[2]string{id, f}]++
			return s.counts[[2]string{id, f}], nil
		},
		ReserveFn: func(_ context.Context, id, f string, quota int64) (int64, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.fail {
				return 0, offload.ErrStorage
			}
			k := [2]string{id, f}
			if s.counts[k] >= quota {
				return s.counts[k], offload.ErrQuotaExceeded
			}
			s.counts[k]++
			return s.counts[k], nil
		},
		ReleaseFn: func(_ context.Context, id, f string) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.fail {
				return offload.ErrStorage
			}
			k := [2]string{id, f}
			s.counts[k] = max(0, s.counts[k]-1)
			return nil
		},
		CountFn: func(_ context.Context, id, f string) (int64, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.fail {
				return 0, offload.ErrStorage
			}
			return s.counts[[2]string{id, f}], nil
		},
		EraseFn: func(_ context.Context, id string) (int64, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.fail {
				return 0, offload.ErrStorage
			}
			var n int64
			for k := range s.counts {
				if k[0] == id {
					delete(s.counts, k)
					n++
				}
			}
			return n, nil
		},
	}
}

func (s *memStore) setFail(b bool) {
	s.mu.Lock()
	s.fail = b
	s.mu.Unlock()
}

func TestHealth(t *testing.T) {
	e := newEnv(t)
	for _, method := range []string{"GET", "HEAD"} {
		w := e.do(req{method: method, path: "/v1/health"})
		if w.Code != 200 {
			t.Fatalf("%s: status %d", method, w.Code)
		}
		if method == "HEAD" {
			continue
		}
		got := decode[map[string]string](t, w)
		want := map[string]string{"status": "ok", "service": "offload-backend-api", "version": "1.2.3", "environment": "test"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
	}
}

func TestRoutingErrors(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		r      req
		status int
		code   string
		allow  string
	}{
		{"unknown route", req{method: "GET", path: "/nope"}, 404, "not_found", ""},
		{"root", req{method: "GET", path: "/"}, 404, "not_found", ""},
		{"unknown v1 route", req{method: "POST", path: "/v1/sessions"}, 404, "not_found", ""},
		{"POST health", req{method: "POST", path: "/v1/health"}, 405, "method_not_allowed", "GET, HEAD"},
		{"GET sessions", req{method: "GET", path: "/v1/sessions/anonymous"}, 405, "method_not_allowed", "POST"},
		{"DELETE generate", req{method: "DELETE", path: "/v1/ai/breakdown/generate"}, 405, "method_not_allowed", "POST"},
		{"PUT reconcile", req{method: "PUT", path: "/v1/usage/reconcile"}, 405, "method_not_allowed", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(tt.r)
			wantError(t, w, tt.status, tt.code)
			if tt.allow != "" && w.Header().Get("Allow") != tt.allow {
				t.Errorf("Allow = %q, want %q", w.Header().Get("Allow"), tt.allow)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("a", 129)
	tests := []struct {
		name, sent string
		reused     bool
	}{
		{"client id reused", "abc-123_XYZ", true},
		{"128 chars reused", strings.Repeat("b", 128), true},
		{"129 chars replaced", long, false},
		{"control char replaced", "abc\x01", false},
		{"non-ASCII replaced", "abcé", false},
		{"absent", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			if tt.sent != "" {
				h["X-Request-ID"] = tt.sent
			}
			for _, path := range []string{"/v1/health", "/missing"} {
				w := e.do(req{method: "GET", path: path, header: h})
				got := w.Header().Get("X-Request-ID")
				if tt.reused && got != tt.sent {
					t.Errorf("%s: X-Request-ID = %q, want %q", path, got, tt.sent)
				}
				if !tt.reused && (got == tt.sent || len(got) != 36) {
					t.Errorf("%s: X-Request-ID = %q, want a new UUID", path, got)
				}
			}
		})
	}
}

func TestBodyDecodingErrors(t *testing.T) {
	e := newEnv(t, func(d *Deps) { d.MaxBodyBytes = 1024 })
	big := `{"install_id":"` + strings.Repeat("x", 2000) + `","app_version":"1","platform":"ios"}`
	tests := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"empty body", "", 422, "validation_error"},
		{"malformed", `{"install_id":`, 422, "validation_error"},
		{"array", `["install_id"]`, 422, "validation_error"},
		{"string", `"x"`, 422, "validation_error"},
		{"null", `null`, 422, "validation_error"},
		{"trailing data", `{"install_id":"install-1","app_version":"1","platform":"ios"} {}`, 422, "validation_error"},
		{"oversized", big, 413, "request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, e.do(req{method: "POST", path: "/v1/sessions/anonymous", body: tt.body}), tt.status, tt.code)
		})
	}
}

// An oversized body announced by Content-Length is refused before any of it
// is read.
func TestOversizedBodyRefusedUnread(t *testing.T) {
	e := newEnv(t, func(d *Deps) { d.MaxBodyBytes = 1024 })
	body := &countingReader{r: strings.NewReader(strings.Repeat("x", 4096))}
	r := httptest.NewRequest("POST", "/v1/sessions/anonymous", body)
	r.ContentLength = 4096
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, r)
	wantError(t, w, 413, "request_too_large")
	if body.n != 0 {
		t.Errorf("read %d bytes of an oversized body", body.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestPanicRecovered(t *testing.T) {
	e := newEnv(t)
	canary := "canary-panic-7f3a"
	e.provider.GenerateFn = func(context.Context, offload.BreakdownRequest) (offload.Breakdown, error) {
		panic("provider blew up on " + canary)
	}
	w := e.do(req{method: "POST", path: "/v1/ai/breakdown/generate",
		body:   `{"input_text":"` + canary + `","granularity":3}`,
		header: map[string]string{"Authorization": "Bearer " + e.token("install-123"), OptInHeader: "true"}})
	wantError(t, w, 500, "internal_error")
	logs := e.logs.String()
	if !strings.Contains(logs, "panic_recovered") || !strings.Contains(logs, w.Header().Get("X-Request-ID")) {
		t.Errorf("panic not logged with request id: %s", logs)
	}
	if strings.Contains(logs, canary) || strings.Contains(w.Body.String(), canary) {
		t.Errorf("panic value leaked: %s", logs)
	}
}

// The access log has one line per request with metadata and never a body,
// a header value, a token or an install id.
func TestRequestLogHasNoContent(t *testing.T) {
	e := newEnv(t)
	installID := "install-canary-9c1d"
	tok := e.token(installID)
	secretHeader := "header-canary-55e2"
	e.do(req{method: "POST", path: "/v1/sessions/anonymous",
		body:   `{"install_id":"` + installID + `","app_version":"body-canary-1","platform":"ios"}`,
		header: map[string]string{"User-Agent": secretHeader}})
	e.do(req{method: "POST", path: "/v1/usage/reconcile",
		body:   `{"install_id":"` + installID + `","feature":"feature-canary-2","local_count":3}`,
		header: map[string]string{"Authorization": "Bearer " + tok}})
	e.do(req{method: "POST", path: "/v1/usage/reconcile", body: `{}`,
		header: map[string]string{"Authorization": "Bearer " + tok + "x"}})

	lines := strings.Split(strings.TrimSpace(e.logs.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 log lines, got %d:\n%s", len(lines), e.logs)
	}
	for _, l := range lines {
		for _, canary := range []string{installID, tok, secretHeader, "body-canary-1", "feature-canary-2"} {
			if strings.Contains(l, canary) {
				t.Errorf("log line holds %q: %s", canary, l)
			}
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		for _, k := range []string{"request_id", "method", "route", "status", "latency_ms", "bytes"} {
			if _, ok := m[k]; !ok {
				t.Errorf("log line lacks %s: %s", k, l)
			}
		}
	}
	if !strings.Contains(lines[1], `"route":"POST /v1/usage/reconcile"`) {
		t.Errorf("route pattern missing: %s", lines[1])
	}
}

func TestBearerParsing(t *testing.T) {
	tests := []struct {
		header string
		tok    string
		ok     bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER   abc  ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic abc", "", false},
		{"", "", false},
		{"abc", "", false},
	}
	for _, tt := range tests {
		tok, ok := bearer(tt.header)
		if tok != tt.tok || ok != tt.ok {
			t.Errorf("bearer(%q) = %q, %v; want %q, %v", tt.header, tok, ok, tt.tok, tt.ok)
		}
	}
}

func TestAuthGate(t *testing.T) {
	e := newEnv(t)
	valid := e.token("install-123")
	other, _ := token.New(token.Options{Issuer: "offload-backend", Audience: "offload-ios", ActiveKID: "v2-default",
		Keys: map[string][]byte{"v2-default": []byte("another-key-another-key-another-key")}, TTL: time.Hour})
	forged, _, _ := other.Issue("install-123", t0)
	expired, _, _ := e.tokens.Issue("install-123", t0.Add(-2*time.Hour))
	tests := []struct {
		name   string
		auth   string
		status int
		code   string
	}{
		{"missing", "", 401, "unauthorized"},
		{"other scheme", "Basic " + valid, 401, "unauthorized"},
		{"empty credential", "Bearer ", 401, "unauthorized"},
		{"garbage", "Bearer abc", 401, "invalid_token"},
		{"wrong key", "Bearer " + forged, 401, "invalid_token"},
		{"expired", "Bearer " + expired, 401, "expired_token"},
	}
	for _, path := range []string{"/v1/ai/breakdown/generate", "/v1/usage/reconcile"} {
		for _, tt := range tests {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				h := map[string]string{OptInHeader: "true"}
				if tt.auth != "" {
					h["Authorization"] = tt.auth
				}
				wantError(t, e.do(req{method: "POST", path: path, body: `{}`, header: h}), tt.status, tt.code)
			})
		}
	}
	// Lowercase scheme with a valid token passes the gate.
	w := e.do(req{method: "POST", path: "/v1/usage/reconcile",
		body:   `{"install_id":"install-123","feature":"breakdown","local_count":1}`,
		header: map[string]string{"Authorization": "bearer " + valid}})
	if w.Code != 200 {
		t.Fatalf("valid token: %d %s", w.Code, w.Body)
	}
}

func TestClientIPFromTrustedProxy(t *testing.T) {
	// Checked through the session limiter: 8 per IP per window.
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	e := newEnv(t, func(d *Deps) {
		d.ClientIP = clientip.New(trusted).ClientIP
		d.SessionLimits.PerInstall = ratelimit.NewFixedWindow(1000, time.Minute, d.Clock)
	})
	issue := func(remote, xff string, i int) int {
		h := map[string]string{}
		if xff != "" {
			h["X-Forwarded-For"] = xff
		}
		return e.do(req{method: "POST", path: "/v1/sessions/anonymous", remote: remote, header: h,
			body: `{"install_id":"install-` + strings.Repeat("x", i%5) + `-` + string(rune('a'+i%26)) + `","app_version":"1","platform":"ios"}`}).Code
	}
	// Untrusted peer spoofing XFF: every request counts against the peer.
	for i := range 8 {
		if c := issue("203.0.113.9:5000", "198.51.100."+string(rune('1'+i)), i); c != 200 {
			t.Fatalf("request %d: %d", i, c)
		}
	}
	if c := issue("203.0.113.9:5000", "198.51.100.200", 9); c != 429 {
		t.Fatalf("spoofed XFF escaped the per-IP limit: %d", c)
	}
	// Behind the trusted proxy, distinct clients have their own budgets.
	for i := range 8 {
		if c := issue("10.1.2.3:443", "198.51.100.7", i); c != 200 {
			t.Fatalf("proxied client request %d: %d", i, c)
		}
	}
	if c := issue("10.1.2.3:443", "198.51.100.7", 9); c != 429 {
		t.Fatalf("proxied client not limited: %d", c)
	}
	if c := issue("10.1.2.3:443", "198.51.100.8", 10); c != 200 {
		t.Fatalf("another proxied client limited: %d", c)
	}
}
