package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload"
)

func onDeviceMarker(req offload.BreakdownRequest) []offload.Step {
	return []offload.Step{{Title: "on-device step", Substeps: []offload.Step{}}}
}

type serviceFixture struct {
	api     *fakeAPI
	svc     *Service
	consent *MemoryConsentStore
	usage   *MemoryUsageCounter
}

func newServiceFixture(t *testing.T, consent bool, opts ...Option) serviceFixture {
	t.Helper()
	clk := newFakeClock()
	api, srv := newFakeAPI(t, clk)
	c := mustNew(t, srv.URL, append([]Option{WithClock(clk)}, opts...)...)
	fx := serviceFixture{api: api, consent: &MemoryConsentStore{}, usage: &MemoryUsageCounter{}}
	fx.consent.SetCloudEnabled(consent)
	fx.svc = NewService(c, fx.consent, fx.usage, WithOnDeviceGenerator(onDeviceMarker))
	return fx
}

func (fx serviceFixture) local(t *testing.T) int64 {
	t.Helper()
	u, err := fx.usage.Get(offload.FeatureBreakdown)
	if err != nil {
		t.Fatal(err)
	}
	return u.Local
}

var testReq = offload.BreakdownRequest{InputText: "Plan a birthday party", Granularity: 3}

func TestServiceConsentOffIsOnDeviceOnly(t *testing.T) {
	consent := &MemoryConsentStore{}
	usage := &MemoryUsageCounter{}
	svc := NewService(mustNew(t, failIfCalled(t).URL), consent, usage)
	res, err := svc.Generate(context.Background(), testReq)
	if err != nil {
		t.Fatal(err)
	}
	if res.Source != SourceOnDevice || len(res.Steps) == 0 || res.Usage != nil || res.Fallback != nil {
		t.Fatalf("result = %+v", res)
	}
	if u, _ := usage.Get(offload.FeatureBreakdown); u.Local != 1 {
		t.Fatalf("local count = %d, want 1", u.Local)
	}
	if _, err := svc.SyncUsage(context.Background()); !errors.Is(err, ErrConsentRequired) {
		t.Fatalf("SyncUsage with consent off: %v, want ErrConsentRequired", err)
	}
}

func TestServiceWithoutClientIsOnDevice(t *testing.T) {
	consent := &MemoryConsentStore{}
	consent.SetCloudEnabled(true)
	res, err := NewService(nil, consent, &MemoryUsageCounter{}).Generate(context.Background(), testReq)
	if err != nil || res.Source != SourceOnDevice || res.Fallback == nil || res.Fallback.Reason != ReasonNoServer {
		t.Fatalf("Generate = %+v, %v", res, err)
	}
}

func TestServiceCloud(t *testing.T) {
	fx := newServiceFixture(t, true)
	res, err := fx.svc.Generate(context.Background(), testReq)
	if err != nil {
		t.Fatal(err)
	}
	if res.Source != SourceCloud || res.Provider != "openai" || res.Usage == nil || res.Usage.InputTokens != 10 ||
		len(res.Steps) != 2 || res.Fallback != nil || res.RequestID == "" {
		t.Fatalf("result = %+v", res)
	}
	if fx.local(t) != 1 {
		t.Fatalf("local count = %d, want 1", fx.local(t))
	}
	fx.svc.Wait(context.Background()) // the background reconcile, before the fake closes
}

func TestServiceFallsBackOnEveryCloudFailure(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		wantReason Reason
		wantCode   string
		wantRetry  time.Duration
		wantCalls  int // breakdown requests
	}{
		{"provider timeout", 504, nil, `{"error":{"code":"provider_timeout","message":"Provider timeout","request_id":"r1"}}`, ReasonServerError, "provider_timeout", 0, 1},
		{"provider failed", 502, nil, `{"error":{"code":"provider_request_failed","message":"Provider request failed","request_id":"r1"}}`, ReasonServerError, "provider_request_failed", 0, 1},
		{"unavailable", 503, nil, `{"error":{"code":"provider_unavailable","message":"m","request_id":"r1"}}`, ReasonServerError, "provider_unavailable", 0, 1},
		{"proxy 502", 502, nil, `<html>bad gateway</html>`, ReasonServerError, "", 0, 1},
		{"invalid 200", 200, nil, `{"steps":"nope"}`, ReasonInvalidResponse, "", 0, 1},
		{"empty plan", 200, nil, `{"steps":[]}`, ReasonInvalidResponse, "", 0, 1},
		{"rate limited", 429, http.Header{"Retry-After": {"56"}}, `{"error":{"code":"inference_rate_limited","message":"Too many AI requests; retry later","request_id":"r1"}}`, ReasonRateLimited, "inference_rate_limited", 56 * time.Second, 1},
		{"quota", 429, http.Header{"Retry-After": {"3600"}}, `{"error":{"code":"quota_exceeded","message":"AI action limit reached","request_id":"r1"}}`, ReasonQuotaExceeded, "quota_exceeded", time.Hour, 1},
		{"proxy 429", 429, nil, `slow down`, ReasonRateLimited, "", 0, 1},
		{"too large", 413, nil, `{"error":{"code":"request_too_large","message":"m","request_id":"r1"}}`, ReasonTooLarge, "request_too_large", 0, 1},
		{"consent required", 403, nil, `{"error":{"code":"consent_required","message":"m","request_id":"r1"}}`, ReasonRejected, "consent_required", 0, 1},
		{"validation", 422, nil, `{"error":{"code":"validation_error","message":"m","request_id":"r1"}}`, ReasonRejected, "validation_error", 0, 1},
		{"persistent 401", 401, nil, `{"error":{"code":"invalid_token","message":"Invalid session token","request_id":"r1"}}`, ReasonUnauthorized, "invalid_token", 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newServiceFixture(t, true)
			fx.api.on(pathBreakdown, func(w http.ResponseWriter, r *http.Request) bool {
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
				return true
			})
			res, err := fx.svc.Generate(context.Background(), testReq)
			if err != nil {
				t.Fatalf("err = %v, want a plan", err)
			}
			fb := res.Fallback
			if res.Source != SourceOnDevice || fb == nil || res.Steps[0].Title != "on-device step" {
				t.Fatalf("result = %+v, want on-device with a fallback", res)
			}
			if fb.Reason != tt.wantReason || fb.Code != tt.wantCode || fb.Status != tt.status || fb.RetryAfter != tt.wantRetry ||
				!strings.HasPrefix(fb.RequestID, "srv-") || res.RequestID != fb.RequestID || fb.Err == nil {
				t.Fatalf("fallback = %+v, want %s %d %q retry %v", fb, tt.wantReason, tt.status, tt.wantCode, tt.wantRetry)
			}
			if fx.local(t) != 1 {
				t.Fatalf("local count = %d, want 1", fx.local(t))
			}
			if n := fx.api.callCount(pathBreakdown); n != tt.wantCalls {
				t.Fatalf("breakdown calls = %d, want %d", n, tt.wantCalls)
			}
		})
	}
}

// A session that cannot be issued (the issue limit) is one more refusal.
func TestServiceFallsBackWhenNoSession(t *testing.T) {
	fx := newServiceFixture(t, true)
	fx.api.on(pathSessions, func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Retry-After", "30")
		writeErr(w, 429, "session_rate_limited", "Too many session requests; retry later", "r")
		return true
	})
	res, err := fx.svc.Generate(context.Background(), testReq)
	if err != nil || res.Fallback == nil || res.Fallback.Reason != ReasonRateLimited || res.Fallback.Code != "session_rate_limited" ||
		res.Fallback.RetryAfter != 30*time.Second || fx.api.callCount(pathBreakdown) != 0 {
		t.Fatalf("Generate = %+v, %v", res, err)
	}
}

func TestFallbackJSON(t *testing.T) {
	fb := &Fallback{Reason: ReasonRateLimited, Status: 429, Code: "inference_rate_limited", RequestID: "r1",
		RetryAfter: 1500 * time.Millisecond, Err: &APIError{Status: 429, Code: "inference_rate_limited", Message: "Too many AI requests; retry later", RetryAfter: 1500 * time.Millisecond, RequestID: "r1"}}
	b, err := json.Marshal(Result{Source: SourceOnDevice, Fallback: fb})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"source":"on-device","steps":null,"fallback":{"reason":"rate_limited","status":429,"code":"inference_rate_limited","request_id":"r1","retry_after_seconds":2,"message":"server answered 429 inference_rate_limited: Too many AI requests; retry in 1.5s (request id r1)"}}`
	if string(b) != want {
		t.Fatalf("json =\n%s\nwant\n%s", b, want)
	}
}

func TestServiceFallsBackWhenServerIsDownOrSlow(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		_, srv := newFakeAPI(t, newFakeClock())
		url := srv.URL
		srv.Close()
		consent := &MemoryConsentStore{}
		consent.SetCloudEnabled(true)
		svc := NewService(mustNew(t, url), consent, &MemoryUsageCounter{}, WithOnDeviceGenerator(onDeviceMarker))
		res, err := svc.Generate(context.Background(), testReq)
		if err != nil || res.Source != SourceOnDevice || res.Fallback == nil || res.Fallback.Reason != ReasonUnreachable || res.RequestID != "" {
			t.Fatalf("Generate = %+v, %v", res, err)
		}
	})
	t.Run("hung server, cloud timeout", func(t *testing.T) {
		fx := newServiceFixture(t, true, WithCloudTimeout(100*time.Millisecond))
		release := make(chan struct{})
		defer close(release)
		fx.api.on(pathBreakdown, func(w http.ResponseWriter, r *http.Request) bool {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return true
		})
		res, err := fx.svc.Generate(context.Background(), testReq)
		var cte *CloudTimeoutError
		if err != nil || res.Source != SourceOnDevice || res.Fallback == nil || res.Fallback.Reason != ReasonTimeout ||
			!errors.As(res.Fallback.Err, &cte) || cte.After != 100*time.Millisecond {
			t.Fatalf("Generate = %+v, %v", res, err)
		}
		if msg := res.Fallback.Err.Error(); msg != "no answer from the server within 100ms (POST /v1/ai/breakdown/generate)" {
			t.Fatalf("message = %q", msg)
		}
	})
}

func TestCloudTimeoutDefault(t *testing.T) {
	if c := mustNew(t, "http://127.0.0.1:1"); c.CloudTimeout() != 20*time.Second || DefaultCloudTimeout != 20*time.Second {
		t.Fatalf("cloud timeout = %v, want 20s", c.CloudTimeout())
	}
	if _, err := New("http://x", WithCloudTimeout(0)); err == nil {
		t.Fatal("a zero cloud timeout was accepted")
	}
}

func TestServiceCanceledContextDoesNotFallBack(t *testing.T) {
	t.Run("before", func(t *testing.T) {
		fx := newServiceFixture(t, true)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := fx.svc.Generate(ctx, testReq); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if fx.local(t) != 0 || fx.api.callCount(pathSessions) != 0 {
			t.Fatal("counted or sent a breakdown nobody asked for")
		}
	})
	t.Run("during the cloud call", func(t *testing.T) {
		fx := newServiceFixture(t, true)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fx.api.on(pathBreakdown, func(w http.ResponseWriter, r *http.Request) bool {
			cancel() // the user presses Ctrl-C while the server thinks
			<-r.Context().Done()
			return true
		})
		res, err := fx.svc.Generate(ctx, testReq)
		if !errors.Is(err, context.Canceled) || res.Steps != nil {
			t.Fatalf("Generate = %+v, %v; want context.Canceled and no plan", res, err)
		}
		if fx.local(t) != 0 {
			t.Fatal("counted a breakdown nobody received")
		}
	})
}

// failingConsent is a consent store that cannot be read.
type failingConsent struct{ err error }

func (f failingConsent) CloudEnabled() (bool, error) { return false, f.err }
func (f failingConsent) SetCloudEnabled(bool) error  { return f.err }

// failingUsage is a usage counter whose writes fail.
type failingUsage struct {
	MemoryUsageCounter
	err error
}

func (f *failingUsage) Increment(string) (FeatureUsage, error) { return FeatureUsage{}, f.err }

// failingTokens is a token store that can read but not save.
type failingTokens struct {
	MemoryTokenStore
	err error
}

func (f *failingTokens) Save(Session) error { return f.err }

func TestServiceLocalStateProblemsAreWarnings(t *testing.T) {
	ioErr := errors.New("write state: read-only file system")
	t.Run("consent unreadable", func(t *testing.T) {
		corrupt := &CorruptStateError{Path: "/s/consent.json", Reason: "not valid JSON of the expected shape"}
		usage := &MemoryUsageCounter{}
		svc := NewService(mustNew(t, failIfCalled(t).URL), failingConsent{corrupt}, usage, WithOnDeviceGenerator(onDeviceMarker))
		res, err := svc.Generate(context.Background(), testReq)
		var ce *CorruptStateError
		if err != nil || res.Source != SourceOnDevice || res.Fallback == nil || res.Fallback.Reason != ReasonConsentUnreadable ||
			!errors.As(res.Fallback.Err, &ce) || len(res.Warnings) != 0 {
			t.Fatalf("Generate = %+v, %v", res, err)
		}
		if u, _ := usage.Get(offload.FeatureBreakdown); u.Local != 1 {
			t.Fatal("not counted")
		}
	})
	t.Run("count not saved", func(t *testing.T) {
		svc := NewService(nil, &MemoryConsentStore{}, &failingUsage{err: ioErr}, WithOnDeviceGenerator(onDeviceMarker))
		res, err := svc.Generate(context.Background(), testReq)
		if err != nil || res.Source != SourceOnDevice || res.Fallback != nil || len(res.Warnings) != 1 ||
			!errors.Is(res.Warnings[0], ioErr) || res.Warnings[0].Effect != EffectNotCounted {
			t.Fatalf("Generate = %+v, %v", res, err)
		}
	})
	t.Run("session not saved", func(t *testing.T) {
		clk := newFakeClock()
		api, srv := newFakeAPI(t, clk)
		consent := &MemoryConsentStore{}
		consent.SetCloudEnabled(true)
		var hooked []Warning
		c := mustNew(t, srv.URL, WithClock(clk), WithTokenStore(&failingTokens{err: ioErr}), WithWarningFunc(func(w Warning) { hooked = append(hooked, w) }))
		svc := NewService(c, consent, &MemoryUsageCounter{}, WithAutoSync(0))
		for i := range 2 {
			res, err := svc.Generate(context.Background(), testReq)
			if err != nil || res.Source != SourceCloud {
				t.Fatalf("Generate = %+v, %v", res, err)
			}
			// Said once; the second call uses the session kept in memory.
			if want := 1 - i; len(res.Warnings) != want || (want == 1 && res.Warnings[0].Effect != EffectSessionInMemory) {
				t.Fatalf("call %d warnings = %v", i, res.Warnings)
			}
		}
		if n := api.callCount(pathSessions); n != 1 {
			t.Fatalf("sessions issued = %d, want 1", n)
		}
		if len(hooked) != 0 {
			t.Fatalf("a Service call's warnings went to the hook too: %v", hooked)
		}
		// Outside a Service the hook gets them.
		if _, err := c.CreateSession(context.Background()); err != nil || len(hooked) != 1 {
			t.Fatalf("CreateSession = %v, hooked %v", err, hooked)
		}
	})
}

func TestServiceAutoSync(t *testing.T) {
	t.Run("once, after a cloud success", func(t *testing.T) {
		fx := newServiceFixture(t, true)
		for range 2 {
			fx.usage.Increment(offload.FeatureBreakdown) // made on-device earlier
		}
		ctx := context.Background()
		if err := fx.svc.Wait(ctx); err != nil {
			t.Fatalf("Wait before any sync = %v", err)
		}
		for range 3 {
			if res, err := fx.svc.Generate(ctx, testReq); err != nil || res.Source != SourceCloud {
				t.Fatalf("Generate = %+v, %v", res, err)
			}
		}
		if err := fx.svc.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if n := fx.api.callCount(pathReconcile); n != 1 {
			t.Fatalf("reconciles = %d, want 1 per start", n)
		}
		u, _ := fx.usage.Get(offload.FeatureBreakdown)
		rem, ok := u.EffectiveRemaining()
		if u.Mirror < 3 || !ok || rem != 100-u.Displayed() {
			t.Fatalf("after the sync: %+v, remaining %d %v", u, rem, ok)
		}
	})
	t.Run("not after a fallback", func(t *testing.T) {
		fx := newServiceFixture(t, true)
		fx.api.on(pathBreakdown, func(w http.ResponseWriter, r *http.Request) bool {
			writeErr(w, 502, "provider_request_failed", "m", "r")
			return true
		})
		if _, err := fx.svc.Generate(context.Background(), testReq); err != nil {
			t.Fatal(err)
		}
		fx.svc.Wait(context.Background())
		if n := fx.api.callCount(pathReconcile); n != 0 {
			t.Fatalf("reconciles = %d, want 0", n)
		}
	})
	t.Run("bounded when the reconcile hangs", func(t *testing.T) {
		fx := newServiceFixture(t, true)
		fx.svc = NewService(fx.svc.client, fx.consent, fx.usage, WithAutoSync(100*time.Millisecond))
		release := make(chan struct{})
		defer close(release)
		fx.api.on(pathReconcile, func(w http.ResponseWriter, r *http.Request) bool {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return true
		})
		if _, err := fx.svc.Generate(context.Background(), testReq); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := fx.svc.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			t.Fatalf("Wait = %v, want the sync's own deadline", err)
		}
	})
}

func TestServiceDefaultOnDeviceGenerator(t *testing.T) {
	res, err := NewService(nil, &MemoryConsentStore{}, &MemoryUsageCounter{}).Generate(context.Background(), testReq)
	if err != nil || res.Source != SourceOnDevice || len(res.Steps) == 0 {
		t.Fatalf("Generate = %+v, %v", res, err)
	}
}

func TestSyncUsageSendsMergedCounts(t *testing.T) {
	fx := newServiceFixture(t, true)
	ctx := context.Background()
	// The server already holds 5 for breakdown (another run of this install).
	fx.api.setCount(offload.FeatureBreakdown, 5)
	for range 3 {
		fx.usage.Increment(offload.FeatureBreakdown)
	}
	fx.usage.Increment("export")

	got, err := fx.svc.SyncUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("synced %d features, want 2", len(got))
	}
	bd := got[0]
	if bd.Feature != offload.FeatureBreakdown || bd.Sent != 3 || bd.ServerCount != 5 || bd.Mirror != 5 || bd.Local != 3 || bd.Displayed() != 5 || bd.EffectiveRemaining != 95 {
		t.Fatalf("breakdown sync = %+v", bd)
	}
	// Local moves past the mirror; the next sync sends the local count.
	for range 4 {
		fx.usage.Increment(offload.FeatureBreakdown)
	}
	got, err = fx.svc.SyncUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Sent != 7 || got[0].ServerCount != 7 || got[0].Mirror != 7 {
		t.Fatalf("second sync = %+v", got[0])
	}
}

func TestSyncUsageIncludesBreakdownWhenNeverCounted(t *testing.T) {
	fx := newServiceFixture(t, true)
	fx.api.setCount(offload.FeatureBreakdown, 2)
	got, err := fx.svc.SyncUsage(context.Background())
	if err != nil || len(got) != 1 || got[0].Sent != 0 || got[0].Mirror != 2 {
		t.Fatalf("SyncUsage = %+v, %v", got, err)
	}
}
