package client

import (
	"context"
	"errors"
	"net/http"
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
	if res.Source != SourceOnDevice || len(res.Steps) == 0 || res.Usage != nil || res.FallbackReason != "" {
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
	if err != nil || res.Source != SourceOnDevice {
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
		len(res.Steps) != 2 || res.FallbackReason != "" || res.RequestID == "" {
		t.Fatalf("result = %+v", res)
	}
	if fx.local(t) != 1 {
		t.Fatalf("local count = %d, want 1", fx.local(t))
	}
}

func TestServiceFallbackAndPolicy(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantReason string // "" means no fallback: an error
		wantCode   string
	}{
		{"provider timeout", 504, `{"error":{"code":"provider_timeout","message":"Provider timeout","request_id":"r1"}}`, "provider_timeout", ""},
		{"provider failed", 502, `{"error":{"code":"provider_request_failed","message":"Provider request failed","request_id":"r1"}}`, "provider_request_failed", ""},
		{"unavailable", 503, `{"error":{"code":"provider_unavailable","message":"m","request_id":"r1"}}`, "provider_unavailable", ""},
		{"proxy 502", 502, `<html>bad gateway</html>`, FallbackServerError, ""},
		{"invalid 200", 200, `{"steps":"nope"}`, FallbackInvalidResponse, ""},
		{"empty plan", 200, `{"steps":[]}`, FallbackInvalidResponse, ""},
		{"rate limited", 429, `{"error":{"code":"inference_rate_limited","message":"m","request_id":"r1"}}`, "", "inference_rate_limited"},
		{"quota", 429, `{"error":{"code":"quota_exceeded","message":"AI action limit reached","request_id":"r1"}}`, "", "quota_exceeded"},
		{"proxy 429", 429, `slow down`, "", ""},
		{"consent required", 403, `{"error":{"code":"consent_required","message":"m","request_id":"r1"}}`, "", "consent_required"},
		{"install mismatch", 403, `{"error":{"code":"install_id_mismatch","message":"m","request_id":"r1"}}`, "", "install_id_mismatch"},
		{"persistent 401", 401, `{"error":{"code":"invalid_token","message":"Invalid session token","request_id":"r1"}}`, "", "invalid_token"},
		{"validation", 422, `{"error":{"code":"validation_error","message":"m","request_id":"r1"}}`, "", "validation_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newServiceFixture(t, true)
			fx.api.on(pathBreakdown, func(w http.ResponseWriter, r *http.Request) bool {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
				return true
			})
			res, err := fx.svc.Generate(context.Background(), testReq)
			if tt.wantReason != "" {
				if err != nil {
					t.Fatalf("err = %v, want fallback", err)
				}
				if res.Source != SourceOnDevice || res.FallbackReason != tt.wantReason || res.Steps[0].Title != "on-device step" || res.RequestID == "" {
					t.Fatalf("result = %+v, want on-device with reason %q", res, tt.wantReason)
				}
				if fx.local(t) != 1 {
					t.Fatalf("local count = %d, want 1", fx.local(t))
				}
				return
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tt.status || ae.Code != tt.wantCode {
				t.Fatalf("err = %v, want *APIError %d %q", err, tt.status, tt.wantCode)
			}
			if res.Source != "" || res.Steps != nil {
				t.Fatalf("result = %+v, want none", res)
			}
			if fx.local(t) != 0 {
				t.Fatalf("local count = %d, want 0: nothing was generated", fx.local(t))
			}
			wantBreakdowns := 1
			if tt.status == 401 {
				wantBreakdowns = 2 // one retry after one refresh
			}
			if n := fx.api.callCount(pathBreakdown); n != wantBreakdowns {
				t.Fatalf("breakdown calls = %d, want %d", n, wantBreakdowns)
			}
		})
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
		if err != nil || res.Source != SourceOnDevice || res.FallbackReason != FallbackUnreachable || res.RequestID != "" {
			t.Fatalf("Generate = %+v, %v", res, err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		fx := newServiceFixture(t, true, WithHTTPClient(&http.Client{Timeout: 100 * time.Millisecond}))
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
		if err != nil || res.Source != SourceOnDevice || res.FallbackReason != FallbackTimeout {
			t.Fatalf("Generate = %+v, %v", res, err)
		}
	})
}

func TestServiceCanceledContextDoesNotFallBack(t *testing.T) {
	fx := newServiceFixture(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := fx.svc.Generate(ctx, testReq); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if fx.local(t) != 0 {
		t.Fatal("counted a breakdown nobody received")
	}
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
