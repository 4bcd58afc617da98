package client

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-app/offload/mock"

	"github.com/offload-app/offload"
)

func newFakeClock() *mock.Clock {
	return mock.NewClock(time.Date(2026, 2, 16, 12, 0, 0, 0, time.UTC))
}

// fakeAPI is a small in-memory fake of the contract for unit tests. It
// issues tokens "tok-1", "tok-2", … and, unless told otherwise, accepts only
// the latest one. Hooks override answers per route.
type fakeAPI struct {
	t     *testing.T
	clock *mock.Clock
	ttl   time.Duration

	mu       sync.Mutex
	issued   int
	valid    map[string]bool
	calls    map[string]int      // by path
	headers  map[string][]string // opt-in header values seen, by path
	bodies   map[string][]string // raw request bodies, by path
	counts   map[string]int64    // reconcile store
	methods  []string            // methods of erase requests
	override map[string]func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeAPI(t *testing.T, clock *mock.Clock) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{
		t: t, clock: clock, ttl: time.Hour,
		valid: map[string]bool{}, calls: map[string]int{}, headers: map[string][]string{},
		bodies: map[string][]string{}, counts: map[string]int64{},
		override: map[string]func(http.ResponseWriter, *http.Request) bool{},
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// on makes h answer requests to path first; h returns false to pass the
// request on to the normal fake behaviour.
func (f *fakeAPI) on(path string, h func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.override[path] = h
}

func (f *fakeAPI) setCount(feature string, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[feature] = n
}

func (f *fakeAPI) callCount(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[path]
}

func (f *fakeAPI) optIns(path string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.headers[path]...)
}

func (f *fakeAPI) lastBody(path string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.bodies[path]
	if len(b) == 0 {
		return ""
	}
	return b[len(b)-1]
}

func writeErr(w http.ResponseWriter, status int, code, msg, reqID string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q,"request_id":%q}}`, code, msg, reqID)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var raw strings.Builder
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		raw.Write(b)
	}
	f.mu.Lock()
	f.calls[r.URL.Path]++
	f.headers[r.URL.Path] = append(f.headers[r.URL.Path], r.Header.Get(headerOptIn))
	f.bodies[r.URL.Path] = append(f.bodies[r.URL.Path], raw.String())
	h := f.override[r.URL.Path]
	f.mu.Unlock()
	w.Header().Set("X-Request-ID", "srv-"+r.Header.Get("X-Request-ID"))
	if h != nil && h(w, r) {
		return
	}

	auth := func() bool {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		valid := ok && f.valid[tok]
		f.mu.Unlock()
		if !valid {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeErr(w, 401, "invalid_token", "Invalid session token", "body-id")
		}
		return valid
	}
	switch r.URL.Path {
	case pathHealth:
		writeJSON(w, map[string]string{"status": "ok", "service": offload.ServiceName, "version": "test", "environment": "test"})
	case pathSessions:
		var in struct {
			InstallID string `json:"install_id"`
		}
		json.Unmarshal([]byte(raw.String()), &in)
		f.mu.Lock()
		f.issued++
		tok := fmt.Sprintf("tok-%d", f.issued)
		f.valid = map[string]bool{tok: true}
		f.mu.Unlock()
		writeJSON(w, map[string]string{
			"session_token": tok,
			"expires_at":    f.clock.Now().Add(f.ttl).UTC().Format(time.RFC3339),
		})
	case pathBreakdown:
		if !auth() {
			return
		}
		if !strings.EqualFold(r.Header.Get(headerOptIn), "true") {
			writeErr(w, 403, "consent_required", "Cloud AI processing requires explicit opt-in", "x")
			return
		}
		writeJSON(w, map[string]any{
			"steps": []map[string]any{
				{"title": "Cloud step one", "substeps": []map[string]any{{"title": "Cloud sub", "substeps": []any{}}}},
				{"title": "Cloud step two", "substeps": []any{}},
			},
			"provider":   "openai",
			"latency_ms": 12,
			"usage":      map[string]int{"input_tokens": 10, "output_tokens": 20},
		})
	case pathReconcile:
		if !auth() {
			return
		}
		var in struct {
			Feature    string `json:"feature"`
			LocalCount int64  `json:"local_count"`
		}
		json.Unmarshal([]byte(raw.String()), &in)
		f.mu.Lock()
		f.counts[in.Feature] = max(f.counts[in.Feature], in.LocalCount)
		n := f.counts[in.Feature]
		f.mu.Unlock()
		writeJSON(w, map[string]any{
			"server_count":        n,
			"effective_remaining": max(0, 100-n),
			"reconciled_at":       f.clock.Now().UTC().Format(time.RFC3339),
		})
	case pathUsage:
		if r.Method != http.MethodDelete {
			writeErr(w, 405, "method_not_allowed", "Method not allowed", "")
			return
		}
		if !auth() {
			return
		}
		f.mu.Lock()
		n := int64(len(f.counts))
		f.counts = map[string]int64{}
		f.methods = append(f.methods, r.Method)
		f.mu.Unlock()
		writeJSON(w, map[string]any{"deleted": n, "erased_at": f.clock.Now().UTC().Format(time.RFC3339)})
	default:
		writeErr(w, 404, "not_found", "Not found", "")
	}
}

func (f *fakeAPI) count(feature string) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.counts[feature]
	return n, ok
}

// failIfCalled is a server that fails the test on any request.
func failIfCalled(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		w.WriteHeader(500)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func mustNew(t *testing.T, url string, opts ...Option) *Client {
	t.Helper()
	c, err := New(url, append([]Option{WithInstallID("install-0001")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
