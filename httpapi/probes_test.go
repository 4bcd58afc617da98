package httpapi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/mock"
)

func TestEraseUsage(t *testing.T) {
	m := newCountingMetrics()
	e := newEnv(t, func(d *Deps) { d.Metrics = m })
	e.reconcile("install-123", reconcileBody("install-123", "breakdown", 7))
	e.reconcile("install-123", reconcileBody("install-123", "other", 2))
	e.reconcile("install-456", reconcileBody("install-456", "breakdown", 3))
	erase := func(id, body string) *testResponseRecorder {
		return e.do(req{method: "DELETE", path: "/v1/usage", body: body,
			header: map[string]string{"Authorization": "Bearer " + e.token(id)}})
	}
	// The install id comes from the token only, never from a body.
	w := erase("install-123", `{"install_id":"install-456"}`)
	if w.Code != 200 {
		t.Fatalf("erase: %d %s", w.Code, w.Body)
	}
	got := decode[map[string]any](t, w)
	if got["deleted"] != float64(2) || got["erased_at"] != "2026-02-16T12:00:00Z" || len(got) != 2 {
		t.Errorf("erase answer %v", got)
	}
	if n, _ := e.store.mock().CountFn(context.Background(), "install-456", "breakdown"); n != 3 {
		t.Errorf("another install's count went: %d", n)
	}
	// Idempotent, and the count starts again from 0.
	if got := decode[map[string]any](t, erase("install-123", "")); got["deleted"] != float64(0) {
		t.Errorf("second erase %v", got)
	}
	if got := decode[reconcileResponse](t, e.reconcile("install-123", reconcileBody("install-123", "breakdown", 0))); got.ServerCount != 0 {
		t.Errorf("count after erase %d", got.ServerCount)
	}
	if m.erased != 2 {
		t.Errorf("erase metric %d", m.erased)
	}
	if strings.Contains(e.logs.String(), "install-123") {
		t.Errorf("the access log names the install: %s", e.logs)
	}
	wantError(t, e.do(req{method: "DELETE", path: "/v1/usage"}), 401, "unauthorized")
	wantError(t, e.do(req{method: "GET", path: "/v1/usage"}), 405, "method_not_allowed")
}

func TestEraseIsRateLimited(t *testing.T) {
	e := newEnv(t, func(d *Deps) {
		d.UsageLimits = Limits{"usage", unlimitedLimits(d.Clock, "x").PerIP, mustLimiter(d.Clock, 2)}
	})
	for i := range 3 {
		w := e.do(req{method: "DELETE", path: "/v1/usage", header: map[string]string{"Authorization": "Bearer " + e.token("install-123")}})
		if i < 2 && w.Code != 200 {
			t.Fatalf("erase %d: %d", i, w.Code)
		}
		if i == 2 {
			wantError(t, w, 429, "usage_rate_limited")
		}
	}
}

func TestLivezAndReadyz(t *testing.T) {
	var storeErr, redisErr atomic.Pointer[error]
	var draining atomic.Bool
	probe := func(v *atomic.Pointer[error]) func(context.Context) error {
		return func(context.Context) error { return *v.Load() }
	}
	e := newEnv(t, func(d *Deps) {
		d.Checks = []offload.HealthCheck{
			{Name: "usage_store", Critical: true, Probe: probe(&storeErr)},
			{Name: "redis", Probe: probe(&redisErr)},
		}
		d.Draining = draining.Load
	})
	fail := errors.New("/secret/path/usage.sqlite3: gone")
	tests := []struct {
		name         string
		store, redis error
		drain        bool
		code         int
		status       string
		failing      []string
	}{
		{"all ok", nil, nil, false, 200, "ready", nil},
		{"redis down is degraded", nil, fail, false, 200, "degraded", []string{"redis=degraded"}},
		{"store down", fail, nil, false, 503, "unready", []string{"usage_store"}},
		{"draining", nil, nil, true, 503, "unready", []string{"draining"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storeErr.Store(&tt.store)
			redisErr.Store(&tt.redis)
			draining.Store(tt.drain)
			w := e.do(req{method: "GET", path: "/readyz"})
			if w.Code != tt.code {
				t.Fatalf("readyz %d, want %d: %s", w.Code, tt.code, w.Body)
			}
			got := decode[readyResponse](t, w)
			if got.Status != tt.status {
				t.Errorf("status %q, want %q", got.Status, tt.status)
			}
			var failing []string
			for _, name := range []string{"usage_store", "redis", "draining"} {
				switch got.Checks[name] {
				case "failing":
					failing = append(failing, name)
				case "degraded":
					failing = append(failing, name+"=degraded")
				case "ok":
				default:
					t.Errorf("check %s = %q", name, got.Checks[name])
				}
			}
			if strings.Join(failing, ",") != strings.Join(tt.failing, ",") {
				t.Errorf("failing %v, want %v", failing, tt.failing)
			}
			if strings.Contains(w.Body.String(), "secret") {
				t.Errorf("readyz leaks an error text: %s", w.Body)
			}
			if w := e.do(req{method: "GET", path: "/livez"}); w.Code != 200 || w.Body.String() != "{\"status\":\"ok\"}\n" {
				t.Errorf("livez %d %s", w.Code, w.Body)
			}
		})
	}
}

func TestReadyzBoundsAStuckCheck(t *testing.T) {
	e := newEnv(t, func(d *Deps) {
		d.Checks = []offload.HealthCheck{{Name: "usage_store", Critical: true, Probe: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}}}
	})
	done := make(chan int, 1)
	go func() { done <- e.do(req{method: "GET", path: "/readyz"}).Code }()
	select {
	case code := <-done:
		if code != 503 {
			t.Errorf("stuck check: %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("readyz hung on a stuck check")
	}
}

// TestClientGoneIsNot5xx: a breakdown whose client disconnects is logged as
// 499 client_closed_request at INFO and counted so, never as a 5xx.
func TestClientGoneIsNot5xx(t *testing.T) {
	m := newCountingMetrics()
	started := make(chan struct{})
	e := newEnv(t, func(d *Deps) {
		d.Metrics = m
		d.Provider = &mock.Provider{GenerateFn: func(ctx context.Context, _ offload.BreakdownRequest) (offload.Breakdown, error) {
			close(started)
			<-ctx.Done()
			return offload.Breakdown{}, ctx.Err()
		}}
	})
	srv := httptest.NewServer(e.raw)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	body := `{"input_text":"x","granularity":3}`
	io.WriteString(conn, "POST /v1/ai/breakdown/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Authorization: Bearer "+e.token("install-123")+"\r\nX-Offload-Cloud-Opt-In: true\r\n"+
		"Content-Length: "+itoa(len(body))+"\r\n\r\n"+body)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("provider not called")
	}
	conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.logs.String(), `"status":499`) {
		if time.Now().After(deadline) {
			t.Fatalf("no 499 logged: %s", e.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"code":"client_closed_request"`) || strings.Contains(logs, `"level":"ERROR"`) || strings.Contains(logs, `"status":502`) {
		t.Errorf("log: %s", logs)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.requests) != 1 || m.requests[0] != "499 client_closed_request" {
		t.Errorf("metrics saw %v", m.requests)
	}
}

// TestHalfClosedReconcileCommitsAndAnswers: a client that half-closes after
// sending (socat, some proxies) still gets its 200 and the count is kept.
func TestHalfClosedReconcileCommitsAndAnswers(t *testing.T) {
	e := newEnv(t, func(d *Deps) {
		m := d.Store.(*mock.UsageStore)
		inner := m.ReconcileFn
		m.ReconcileFn = func(ctx context.Context, id, f string, n int64) (int64, error) {
			// Commit only after the server has seen the half-close.
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			return inner(ctx, id, f, n)
		}
	})
	srv := httptest.NewServer(e.raw)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	body := reconcileBody("install-123", "breakdown", 5)
	io.WriteString(conn, "POST /v1/usage/reconcile HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"+
		"Authorization: Bearer "+e.token("install-123")+"\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
	conn.(*net.TCPConn).CloseWrite()
	resp, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(resp), "HTTP/1.1 200") || !strings.Contains(string(resp), `"server_count":5`) {
		t.Errorf("answer: %q", resp)
	}
	if n, _ := e.store.mock().CountFn(context.Background(), "install-123", "breakdown"); n != 5 {
		t.Errorf("count %d", n)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
