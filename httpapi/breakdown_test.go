package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/ratelimit"
)

func (e *env) generate(installID, optIn, body string) *testResponseRecorder {
	h := map[string]string{"Authorization": "Bearer " + e.token(installID)}
	if optIn != "" {
		h[OptInHeader] = optIn
	}
	return e.do(req{method: "POST", path: "/v1/ai/breakdown/generate", body: body, header: h})
}

func jsonList(n, size int, r rune) string {
	items := make([]string, n)
	for i := range items {
		items[i] = strings.Repeat(string(r), size)
	}
	b, _ := json.Marshal(items)
	return string(b)
}

func TestGenerateBreakdown(t *testing.T) {
	e := newEnv(t)
	var got offload.BreakdownRequest
	e.provider.GenerateFn = func(_ context.Context, r offload.BreakdownRequest) (offload.Breakdown, error) {
		got = r
		return offload.Breakdown{
			Steps: []offload.Step{{Title: "Open the window", Substeps: []offload.Step{}}},
			Usage: offload.TokenUsage{InputTokens: 5, OutputTokens: 9},
		}, nil
	}
	w := e.generate("install-123", "true", `{"input_text":"clean the apartment","granularity":3,"context_hints":["tired"],"template_ids":["t1"],"unknown":true}`)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	// Field names and shape exactly; latency_ms is whatever the clock said.
	var resp breakdownResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	resp.LatencyMS = 0
	b, _ := json.Marshal(resp)
	want := `{"steps":[{"title":"Open the window","substeps":[]}],"provider":"fake","latency_ms":0,"usage":{"input_tokens":5,"output_tokens":9}}`
	if string(b) != want || !strings.Contains(w.Body.String(), `"latency_ms":`) {
		t.Errorf("body = %s\nwant   %s", w.Body, want)
	}
	if got.InputText != "clean the apartment" || got.Granularity != 3 || got.ContextHints[0] != "tired" || got.TemplateIDs[0] != "t1" {
		t.Errorf("provider got %+v", got)
	}
	// Defaults for the optional lists are empty, not nil.
	e.generate("install-123", "true", `{"input_text":"x","granularity":1}`)
	if got.ContextHints == nil || got.TemplateIDs == nil || len(got.ContextHints)+len(got.TemplateIDs) != 0 {
		t.Errorf("defaults: %+v", got)
	}
	// Every success is counted for the install.
	if n, _ := e.store.mock().CountFn(context.Background(), "install-123", offload.FeatureBreakdown); n != 2 {
		t.Errorf("server-side count = %d, want 2", n)
	}
}

func TestGenerateOptInHeader(t *testing.T) {
	tests := []struct {
		value string
		ok    bool
	}{
		{"", false}, {"false", false}, {"1", false}, {"yes", false}, {"true ", true},
		{"true", true}, {"TRUE", true}, {"True", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.value), func(t *testing.T) {
			e := newEnv(t)
			w := e.generate("install-123", tt.value, `{"input_text":"x","granularity":2}`)
			if !tt.ok {
				wantError(t, w, 403, "consent_required")
				if e.providerCalls() != 0 {
					t.Error("provider called without consent")
				}
			} else if w.Code != 200 {
				t.Errorf("status %d", w.Code)
			}
		})
	}
}

func TestGenerateValidation(t *testing.T) {
	tests := []struct {
		name string
		body string
		want int
	}{
		{"granularity 0", `{"input_text":"x","granularity":0}`, 422},
		{"granularity 1", `{"input_text":"x","granularity":1}`, 200},
		{"granularity 5", `{"input_text":"x","granularity":5}`, 200},
		{"granularity 6", `{"input_text":"x","granularity":6}`, 422},
		{"granularity 2.5", `{"input_text":"x","granularity":2.5}`, 422},
		{"granularity 3.0", `{"input_text":"x","granularity":3.0}`, 200},
		{"granularity string", `{"input_text":"x","granularity":"3"}`, 422},
		{"granularity null", `{"input_text":"x","granularity":null}`, 422},
		{"granularity missing", `{"input_text":"x"}`, 422},
		{"granularity bool", `{"input_text":"x","granularity":true}`, 422},
		{"empty input", `{"input_text":"","granularity":3}`, 422},
		{"input null", `{"input_text":null,"granularity":3}`, 422},
		{"input number", `{"input_text":5,"granularity":3}`, 422},
		{"input missing", `{"granularity":3}`, 422},
		{"hints 32", `{"input_text":"x","granularity":3,"context_hints":` + jsonList(32, 1, 'h') + `}`, 200},
		{"hints 33", `{"input_text":"x","granularity":3,"context_hints":` + jsonList(33, 1, 'h') + `}`, 422},
		{"hint 280", `{"input_text":"x","granularity":3,"context_hints":` + jsonList(1, 280, 'ß') + `}`, 200},
		{"hint 281", `{"input_text":"x","granularity":3,"context_hints":` + jsonList(1, 281, 'h') + `}`, 422},
		{"hint empty", `{"input_text":"x","granularity":3,"context_hints":[""]}`, 422},
		{"hints null", `{"input_text":"x","granularity":3,"context_hints":null}`, 422},
		{"hints string", `{"input_text":"x","granularity":3,"context_hints":"h"}`, 422},
		{"hint number", `{"input_text":"x","granularity":3,"context_hints":[1]}`, 422},
		{"templates 32", `{"input_text":"x","granularity":3,"template_ids":` + jsonList(32, 1, 't') + `}`, 200},
		{"templates 33", `{"input_text":"x","granularity":3,"template_ids":` + jsonList(33, 1, 't') + `}`, 422},
		{"template 128", `{"input_text":"x","granularity":3,"template_ids":` + jsonList(1, 128, 't') + `}`, 200},
		{"template 129", `{"input_text":"x","granularity":3,"template_ids":` + jsonList(1, 129, 't') + `}`, 422},
		{"template null item", `{"input_text":"x","granularity":3,"template_ids":[null]}`, 422},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.generate("install-123", "true", tt.body)
			if tt.want == 422 {
				wantError(t, w, 422, "validation_error")
				if e.providerCalls() != 0 {
					t.Error("provider called for an invalid request")
				}
			} else if w.Code != tt.want {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
		})
	}
}

func TestGenerateContentSize(t *testing.T) {
	body := func(input string, hints, ids []string) string {
		hints, ids = append([]string{}, hints...), append([]string{}, ids...)
		b, _ := json.Marshal(map[string]any{"input_text": input, "granularity": 3, "context_hints": hints, "template_ids": ids})
		return string(b)
	}
	tests := []struct {
		name string
		body string
		ok   bool
	}{
		{"input at limit", body(strings.Repeat("a", 100), nil, nil), true},
		{"input over limit", body(strings.Repeat("a", 101), nil, nil), false},
		{"multibyte at limit", body(strings.Repeat("日", 100), nil, nil), true},
		{"hints count", body(strings.Repeat("a", 90), []string{"12345", "123456"}, nil), false},
		{"ids count", body(strings.Repeat("a", 90), nil, []string{"1234567890", "1"}), false},
		{"all at limit", body(strings.Repeat("a", 80), []string{"1234567890"}, []string{"1234567890"}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(d *Deps) { d.MaxInputChars = 100 })
			w := e.generate("install-123", "true", tt.body)
			if tt.ok {
				if w.Code != 200 {
					t.Fatalf("status %d: %s", w.Code, w.Body)
				}
				return
			}
			wantError(t, w, 413, "request_too_large")
			if !strings.Contains(w.Body.String(), "max size of 100 characters") {
				t.Errorf("message does not name the limit: %s", w.Body)
			}
			if e.providerCalls() != 0 {
				t.Error("provider called for an oversized request")
			}
		})
	}
}

// Each check fails on its own, in the contract's order: a request that fails
// several checks gets the first one's answer.
func TestGenerateCheckOrder(t *testing.T) {
	huge := `{"input_text":"` + strings.Repeat("a", 5000) + `","granularity":3}`
	e := newEnv(t)
	tests := []struct {
		name   string
		auth   bool
		optIn  string
		body   string
		status int
		code   string
	}{
		{"no token beats everything", false, "", `{`, 401, "unauthorized"},
		{"consent before validation", true, "false", `{`, 403, "consent_required"},
		{"validation before size", true, "true", `{"input_text":"` + strings.Repeat("a", 5000) + `","granularity":9}`, 422, "validation_error"},
		{"size", true, "true", huge, 413, "request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{OptInHeader: tt.optIn}
			if tt.auth {
				h["Authorization"] = "Bearer " + e.token("install-123")
			}
			wantError(t, e.do(req{method: "POST", path: "/v1/ai/breakdown/generate", body: tt.body, header: h}), tt.status, tt.code)
		})
	}
	if e.providerCalls() != 0 {
		t.Error("provider called")
	}
}

func TestGenerateInferenceRateLimit(t *testing.T) {
	e := newEnv(t, func(d *Deps) {
		d.AILimits.PerInstall = ratelimit.NewFixedWindow(3, time.Minute, d.Clock)
		d.AILimits.PerIP = ratelimit.NewFixedWindow(5, time.Minute, d.Clock)
	})
	body := `{"input_text":"x","granularity":3}`
	for i := range 3 {
		if w := e.generate("install-aaa", "true", body); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	w := e.generate("install-aaa", "true", body)
	wantError(t, w, 429, "inference_rate_limited")
	if w.Header().Get("Retry-After") != "60" {
		t.Errorf("Retry-After = %q", w.Header().Get("Retry-After"))
	}
	// Another install from the same IP hits the per-IP limit (5) next.
	if w := e.generate("install-bbb", "true", body); w.Code != 200 {
		t.Fatalf("other install: %d", w.Code)
	}
	wantError(t, e.generate("install-ccc", "true", body), 429, "inference_rate_limited")
	if e.providerCalls() != 4 {
		t.Errorf("provider calls = %d, want 4", e.providerCalls())
	}
	e.clock.Advance(time.Minute)
	if w := e.generate("install-aaa", "true", body); w.Code != 200 {
		t.Fatalf("after window: %d", w.Code)
	}
}

func TestGenerateProviderErrors(t *testing.T) {
	tests := []struct {
		failure offload.ProviderFailure
		status  int
		code    string
	}{
		{offload.ProviderTimeout, 504, "provider_timeout"},
		{offload.ProviderUnavailable, 503, "provider_unavailable"},
		{offload.ProviderRequestFailed, 502, "provider_request_failed"},
		{offload.ProviderInvalidResponse, 502, "provider_invalid_response"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			e := newEnv(t)
			e.provider.GenerateFn = func(context.Context, offload.BreakdownRequest) (offload.Breakdown, error) {
				return offload.Breakdown{}, &offload.ProviderError{Failure: tt.failure, Class: "status_500", Attempts: 3}
			}
			wantError(t, e.generate("install-123", "true", `{"input_text":"x","granularity":3}`), tt.status, tt.code)
			if !strings.Contains(e.logs.String(), `"error_class":"status_500"`) {
				t.Errorf("error class not logged: %s", e.logs)
			}
			if n, _ := e.store.mock().CountFn(context.Background(), "install-123", offload.FeatureBreakdown); n != 0 {
				t.Errorf("failed breakdown counted: %d", n)
			}
		})
	}
	// A provider that overruns the whole budget is a timeout.
	e := newEnv(t, func(d *Deps) { d.ProviderDeadline = time.Millisecond })
	e.provider.GenerateFn = func(ctx context.Context, _ offload.BreakdownRequest) (offload.Breakdown, error) {
		<-ctx.Done()
		return offload.Breakdown{}, ctx.Err()
	}
	wantError(t, e.generate("install-123", "true", `{"input_text":"x","granularity":3}`), 504, "provider_timeout")
}

func TestGenerateCancellationReachesProvider(t *testing.T) {
	e := newEnv(t)
	started, done := make(chan struct{}), make(chan error, 1)
	e.provider.GenerateFn = func(ctx context.Context, _ offload.BreakdownRequest) (offload.Breakdown, error) {
		close(started)
		<-ctx.Done()
		done <- ctx.Err()
		return offload.Breakdown{}, ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := newRequest("POST", "/v1/ai/breakdown/generate", `{"input_text":"x","granularity":3}`).WithContext(ctx)
	r.Header.Set("Authorization", "Bearer "+e.token("install-123"))
	r.Header.Set(OptInHeader, "true")
	go func() { <-started; cancel() }()
	e.raw.ServeHTTP(newRecorder(), r) // nobody gets an answer
	if err := <-done; err != context.Canceled {
		t.Fatalf("provider ctx err = %v", err)
	}
}

func TestQuotaGate(t *testing.T) {
	for _, enforce := range []bool{false, true} {
		t.Run(fmt.Sprintf("enforce=%v", enforce), func(t *testing.T) {
			e := newEnv(t, func(d *Deps) { d.EnforceQuota = enforce; d.FeatureQuota = 2 })
			body := `{"input_text":"x","granularity":3}`
			for i := range 2 {
				if w := e.generate("install-123", "true", body); w.Code != 200 {
					t.Fatalf("request %d: %d", i, w.Code)
				}
			}
			w := e.generate("install-123", "true", body)
			if !enforce {
				if w.Code != 200 {
					t.Fatalf("quota enforced while off: %d", w.Code)
				}
				return
			}
			wantError(t, w, 429, "quota_exceeded")
			if e.providerCalls() != 2 {
				t.Errorf("provider called past the quota")
			}
			// Counts reconciled from the app count towards it too.
			if w := e.generate("install-other", "true", body); w.Code != 200 {
				t.Fatalf("other install: %d", w.Code)
			}
		})
	}
}
