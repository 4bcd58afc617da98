package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/mock"
	"github.com/offload-app/offload/ratelimit"
)

// countingMetrics records the observations the tests look at.
type countingMetrics struct {
	offload.NopMetrics
	mu          sync.Mutex
	limited     map[string]int
	admission   int
	lost        int
	erased      int
	requests    []string // "status code"
	inFlightNow int
}

func newCountingMetrics() *countingMetrics { return &countingMetrics{limited: map[string]int{}} }

func (m *countingMetrics) RateLimited(l string) { m.mu.Lock(); m.limited[l]++; m.mu.Unlock() }
func (m *countingMetrics) AdmissionRejected()   { m.mu.Lock(); m.admission++; m.mu.Unlock() }
func (m *countingMetrics) UsageIncrementLost()  { m.mu.Lock(); m.lost++; m.mu.Unlock() }
func (m *countingMetrics) UsageErased()         { m.mu.Lock(); m.erased++; m.mu.Unlock() }
func (m *countingMetrics) InFlight(d int)       { m.mu.Lock(); m.inFlightNow += d; m.mu.Unlock() }
func (m *countingMetrics) Request(route, method string, status int, code string, d time.Duration) {
	m.mu.Lock()
	m.requests = append(m.requests, fmt.Sprintf("%d %s", status, code))
	m.mu.Unlock()
}

func TestReconcileRateLimits(t *testing.T) {
	tests := []struct {
		name    string
		remote  func(i int) string
		install func(i int) string
		allowed int
		limiter string
	}{
		{"per install", func(i int) string { return fmt.Sprintf("192.0.2.%d:1", i%200+1) }, func(int) string { return "install-same" }, 3, "usage_install"},
		{"per IP", func(int) string { return "192.0.2.1:1" }, func(i int) string { return fmt.Sprintf("install-%04d", i) }, 5, "usage_ip"},
		{"per IPv6 /64", func(i int) string { return fmt.Sprintf("[2001:db8:1:2::%x]:1", i+1) }, func(i int) string { return fmt.Sprintf("install-%04d", i) }, 5, "usage_ip"},
		{"IPv4-mapped is the IPv4 address", func(i int) string {
			if i%2 == 0 {
				return "[::ffff:192.0.2.9]:1"
			}
			return "192.0.2.9:1"
		}, func(i int) string { return fmt.Sprintf("install-%04d", i) }, 5, "usage_ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newCountingMetrics()
			e := newEnv(t, func(d *Deps) {
				d.Metrics = m
				d.UsageLimits = Limits{"usage", ratelimit.NewFixedWindow(5, time.Minute, d.Clock), ratelimit.NewFixedWindow(3, time.Minute, d.Clock)}
			})
			send := func(i int) *testResponseRecorder {
				id := tt.install(i)
				return e.do(req{method: "POST", path: "/v1/usage/reconcile", remote: tt.remote(i),
					body:   reconcileBody(id, "breakdown", 1),
					header: map[string]string{"Authorization": "Bearer " + e.token(id)}})
			}
			for i := range tt.allowed {
				if w := send(i); w.Code != 200 {
					t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
				}
			}
			e.clock.Advance(15 * time.Second)
			w := send(tt.allowed)
			wantError(t, w, 429, "usage_rate_limited")
			var body struct{ Error struct{ Message string } }
			json.Unmarshal(w.Body.Bytes(), &body)
			if body.Error.Message != "Too many usage requests; retry later" {
				t.Errorf("message %q", body.Error.Message)
			}
			if ra := w.Header().Get("Retry-After"); ra != "45" {
				t.Errorf("Retry-After %q, want 45", ra)
			}
			if m.limited[tt.limiter] != 1 || len(m.limited) != 1 {
				t.Errorf("rejections by limiter %v, want one for %s", m.limited, tt.limiter)
			}
			e.clock.Advance(45 * time.Second)
			if w := send(tt.allowed + 1); w.Code != 200 {
				t.Errorf("after the window: %d", w.Code)
			}
		})
	}
}

func TestIPKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	}
	for _, tt := range tests {
		if got := ipKey(netip.MustParseAddr(tt.in)); got != tt.want {
			t.Errorf("ipKey(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := ipKey(netip.Addr{}); got != "invalid IP" {
		t.Errorf("zero address key %q", got)
	}
}

func TestFeatureCapIsValidationError(t *testing.T) {
	e := newEnv(t)
	m := e.store.mock()
	m.ReconcileFn = func(context.Context, string, string, int64) (int64, error) { return 0, offload.ErrFeatureLimit }
	e.handler = NewServer(Deps{Logger: discardLogger(), Clock: e.clock, Tokens: e.tokens, ClientIP: func(*http.Request) netip.Addr { return netip.MustParseAddr("192.0.2.1") },
		UsageLimits: unlimitedLimits(e.clock, "usage"), Store: m, FeatureQuota: 100, MaxBodyBytes: 1 << 16})
	wantError(t, e.reconcile("install-123", reconcileBody("install-123", "feature-17", 1)), 422, "validation_error")
}

func TestReconcileWriteTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	e := newEnv(t, func(d *Deps) {
		d.UsageWriteTimeout = 50 * time.Millisecond
		m := d.Store.(*mock.UsageStore)
		m.ReconcileFn = func(ctx context.Context, _, _ string, _ int64) (int64, error) {
			select { // a disk that does not come back within the timeout
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-release:
				return 0, errors.New("released")
			}
		}
	})
	w := e.reconcile("install-123", reconcileBody("install-123", "breakdown", 1))
	wantError(t, w, 503, "storage_unavailable")
	if !strings.Contains(e.logs.String(), `"code":"storage_unavailable"`) {
		t.Errorf("log: %s", e.logs)
	}
}

func TestBreakdownAnswersWhenIncrementStalls(t *testing.T) {
	m := newCountingMetrics()
	release := make(chan struct{})
	defer close(release)
	e := newEnv(t, func(d *Deps) {
		d.Metrics = m
		d.UsageWriteTimeout = 50 * time.Millisecond
		d.Store.(*mock.UsageStore).IncrementFn = func(ctx context.Context, _, _ string) (int64, error) {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-release:
				return 0, errors.New("released")
			}
		}
	})
	w := e.generate("install-123", "true", `{"input_text":"canary-increment","granularity":3}`)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"steps"`) {
		t.Fatalf("breakdown %d %s", w.Code, w.Body)
	}
	if m.lost != 1 {
		t.Errorf("lost increments %d, want 1", m.lost)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "usage_increment_lost") || strings.Contains(logs, "install-123") || strings.Contains(logs, "canary-increment") {
		t.Errorf("log: %s", logs)
	}
}

func TestAdmissionControl(t *testing.T) {
	m := newCountingMetrics()
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	e := newEnv(t, func(d *Deps) {
		d.Metrics = m
		d.MaxInFlight = 2
		d.Provider = &mock.Provider{GenerateFn: func(ctx context.Context, _ offload.BreakdownRequest) (offload.Breakdown, error) {
			started <- struct{}{}
			<-release
			return offload.Breakdown{Steps: []offload.Step{{Title: "a", Substeps: []offload.Step{}}}}, nil
		}}
	})
	body := `{"input_text":"x","granularity":3}`
	codes := make(chan int, 2)
	for i := range 2 {
		go func() { codes <- e.generate(fmt.Sprintf("install-%04d", i), "true", body).Code }()
	}
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("provider calls did not start")
		}
	}
	w := e.generate("install-9999", "true", body)
	wantError(t, w, 503, "provider_unavailable")
	if w.Header().Get("Retry-After") == "" {
		t.Error("503 over the in-flight bound without Retry-After")
	}
	close(release)
	for range 2 {
		select {
		case c := <-codes:
			if c != 200 {
				t.Errorf("admitted request: %d", c)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("admitted requests did not finish")
		}
	}
	if m.admission != 1 {
		t.Errorf("admission rejections %d, want 1", m.admission)
	}
	// The bound frees up as calls end.
	if w := e.generate("install-9999", "true", body); w.Code != 200 {
		t.Errorf("after the burst: %d", w.Code)
	}
}

func TestQuotaGatesOnTheBreakdownFeature(t *testing.T) {
	e := newEnv(t, func(d *Deps) { d.EnforceQuota = true; d.FeatureQuota = 10 })
	// The app reports 1 breakdown and 50 of another feature: reconcile says
	// 9 remaining for breakdown, so a breakdown must go through.
	w := e.reconcile("install-123", reconcileBody("install-123", "breakdown", 1))
	if got := decode[reconcileResponse](t, w); got.EffectiveRemaining != 9 {
		t.Fatalf("effective_remaining %d", got.EffectiveRemaining)
	}
	e.reconcile("install-123", reconcileBody("install-123", "other", 50))
	body := `{"input_text":"x","granularity":3}`
	for i := range 9 {
		if w := e.generate("install-123", "true", body); w.Code != 200 {
			t.Fatalf("breakdown %d: %d %s", i+2, w.Code, w.Body)
		}
	}
	wantError(t, e.generate("install-123", "true", body), 429, "quota_exceeded")
	if got := decode[reconcileResponse](t, e.reconcile("install-123", reconcileBody("install-123", "breakdown", 0))); got.ServerCount != 10 || got.EffectiveRemaining != 0 {
		t.Errorf("after the quota: %+v", got)
	}
}

func TestQuotaReservationGivenBackOnFailure(t *testing.T) {
	fail := atomic.Bool{}
	e := newEnv(t, func(d *Deps) {
		d.EnforceQuota = true
		d.FeatureQuota = 1
		d.Provider = &mock.Provider{GenerateFn: func(context.Context, offload.BreakdownRequest) (offload.Breakdown, error) {
			if fail.Load() {
				return offload.Breakdown{}, &offload.ProviderError{Failure: offload.ProviderRequestFailed, Class: "status_500", Status: 500}
			}
			return offload.Breakdown{Steps: []offload.Step{{Title: "a", Substeps: []offload.Step{}}}}, nil
		}}
	})
	body := `{"input_text":"x","granularity":3}`
	fail.Store(true)
	wantError(t, e.generate("install-123", "true", body), 502, "provider_request_failed")
	if n, _ := e.store.mock().CountFn(context.Background(), "install-123", offload.FeatureBreakdown); n != 0 {
		t.Fatalf("a failed breakdown kept its reservation: count %d", n)
	}
	fail.Store(false)
	if w := e.generate("install-123", "true", body); w.Code != 200 {
		t.Fatalf("the one allowed breakdown: %d", w.Code)
	}
	wantError(t, e.generate("install-123", "true", body), 429, "quota_exceeded")
}

func TestQuotaExactlyOneAtQuotaMinusOne(t *testing.T) {
	e := newEnv(t, func(d *Deps) { d.EnforceQuota = true; d.FeatureQuota = 5; d.MaxInFlight = 0 })
	e.reconcile("install-123", reconcileBody("install-123", "breakdown", 4))
	const n = 20
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if e.generate("install-123", "true", `{"input_text":"x","granularity":3}`).Code == 200 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Errorf("%d of %d concurrent breakdowns at quota-1 got through, want exactly 1", ok.Load(), n)
	}
}
