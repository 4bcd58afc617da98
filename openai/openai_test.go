package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/openai/openaitest"
)

const testKey = "sk-test-CANARY-KEY-7f3a9c"

// harness is a provider wired to a fake upstream, with captured logs and
// recorded (not slept) backoff delays.
type harness struct {
	p      *Provider
	srv    *openaitest.Server
	logs   *bytes.Buffer
	mu     sync.Mutex
	sleeps []time.Duration
}

func (h *harness) slept() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.sleeps...)
}

func testOptions(baseURL string) Options {
	return Options{
		APIKey:         testKey,
		BaseURL:        baseURL,
		Model:          "gpt-test-model",
		Timeout:        5 * time.Second,
		ResponseFormat: FormatJSONSchema,
		Retry: offload.RetryPolicy{
			MaxAttempts:   3,
			BaseDelay:     250 * time.Millisecond,
			MaxDelay:      2 * time.Second,
			MaxTotalDelay: 4 * time.Second,
			JitterFactor:  0.25,
		},
	}
}

// newProvider is New that must succeed.
func newProvider(t testing.TB, o Options) *Provider {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func newHarness(t *testing.T, mutate func(*Options)) *harness {
	t.Helper()
	srv := openaitest.NewServer(openaitest.WithRecording())
	t.Cleanup(srv.Close)
	h := &harness{srv: srv, logs: &bytes.Buffer{}}
	o := testOptions(srv.URL)
	o.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Sleep = func(ctx context.Context, d time.Duration) error {
		h.mu.Lock()
		h.sleeps = append(h.sleeps, d)
		h.mu.Unlock()
		return ctx.Err()
	}
	o.Rand = func() float64 { return 0.5 }
	if mutate != nil {
		mutate(&o)
	}
	h.p = newProvider(t, o)
	return h
}

func testRequest() offload.BreakdownRequest {
	return offload.BreakdownRequest{
		InputText:    "Clean the garage before the weekend",
		Granularity:  3,
		ContextHints: []string{"tired"},
		TemplateIDs:  []string{"tpl-home"},
	}
}

func providerError(t *testing.T, err error) *offload.ProviderError {
	t.Helper()
	var pe *offload.ProviderError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *offload.ProviderError", err, err)
	}
	return pe
}

// logLines decodes the JSON log lines.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func linesWithMsg(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

func TestGenerateSuccess(t *testing.T) {
	h := newHarness(t, nil)
	got, err := h.p.Generate(context.Background(), testRequest())
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if h.p.Name() != "openai" {
		t.Errorf("Name = %q", h.p.Name())
	}
	want, err := offload.ParseSteps([]byte(openaitest.DefaultContent))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Steps, want) {
		t.Errorf("steps = %+v, want %+v", got.Steps, want)
	}
	if got.Steps[1].Substeps[0].Title != "Set a timer for ten minutes" || got.Steps[0].Substeps == nil {
		t.Errorf("unexpected plan shape: %+v", got.Steps)
	}
	if got.Attempts != 1 || got.Provider != "" {
		t.Errorf("attempts %d, provider %q; want 1 and empty (the one asked)", got.Attempts, got.Provider)
	}
	wantUsage := offload.TokenUsage{InputTokens: openaitest.DefaultPromptTokens, OutputTokens: openaitest.DefaultCompletionTokens}
	if got.Usage != wantUsage {
		t.Errorf("usage = %+v, want %+v", got.Usage, wantUsage)
	}
	if n := h.srv.Count(); n != 1 {
		t.Errorf("upstream requests = %d, want 1", n)
	}
	if lines := logLines(t, h.logs); len(lines) != 0 {
		t.Errorf("a first-attempt success logs nothing, got %v", lines)
	}
}

// sentBody is the part of the chat-completions request the tests assert on.
type sentBody struct {
	Model               string `json:"model"`
	Store               *bool  `json:"store"`
	MaxCompletionTokens int    `json:"max_completion_tokens"`
	Messages            []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	ResponseFormat struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name   string          `json:"name"`
			Strict bool            `json:"strict"`
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	} `json:"response_format"`
}

func TestGenerateRequestShape(t *testing.T) {
	h := newHarness(t, nil)
	req := testRequest()
	if _, err := h.p.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	reqs := h.srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("recorded %d requests", len(reqs))
	}
	r := reqs[0]
	if r.Model != "gpt-test-model" || r.ResponseFormatType != "json_schema" {
		t.Errorf("model %q, response format %q", r.Model, r.ResponseFormatType)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+testKey {
		t.Errorf("Authorization = %q", got)
	}
	var body sentBody
	if err := json.Unmarshal(r.Raw, &body); err != nil {
		t.Fatal(err)
	}
	if body.Store == nil || *body.Store {
		t.Errorf("store must be sent as false, got %v", body.Store)
	}
	if body.MaxCompletionTokens <= 0 {
		t.Errorf("max_completion_tokens = %d", body.MaxCompletionTokens)
	}
	js := body.ResponseFormat.JSONSchema
	if js == nil || !js.Strict || js.Name != schemaName {
		t.Fatalf("json_schema = %+v, want strict %q", js, schemaName)
	}
	var gotSchema, wantSchema any
	if err := json.Unmarshal(js.Schema, &gotSchema); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(planSchema), &wantSchema); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotSchema, wantSchema) {
		t.Errorf("schema sent = %s", js.Schema)
	}
	checkStrictSchema(t, wantSchema)

	if len(body.Messages) != 2 || body.Messages[0].Role != "system" || body.Messages[1].Role != "user" {
		t.Fatalf("messages = %+v", body.Messages)
	}
	if sys := body.Messages[0].Content; strings.Contains(sys, req.InputText) || !strings.Contains(sys, "tiny micro-steps") {
		t.Errorf("system prompt must explain the scale and carry no user content")
	}
	var user struct {
		InputText    string   `json:"input_text"`
		Granularity  int      `json:"granularity"`
		ContextHints []string `json:"context_hints"`
		TemplateIDs  []string `json:"template_ids"`
	}
	if err := json.Unmarshal([]byte(body.Messages[1].Content), &user); err != nil {
		t.Fatalf("user message is not JSON: %v", err)
	}
	if user.InputText != req.InputText || user.Granularity != 3 ||
		!reflect.DeepEqual(user.ContextHints, req.ContextHints) || !reflect.DeepEqual(user.TemplateIDs, req.TemplateIDs) {
		t.Errorf("user message = %+v", user)
	}
}

// checkStrictSchema walks a schema: every object schema must forbid
// additional properties and require all of its properties, as strict
// Structured Outputs demand.
func checkStrictSchema(t *testing.T, s any) {
	t.Helper()
	switch v := s.(type) {
	case map[string]any:
		if v["type"] == "object" {
			if v["additionalProperties"] != false {
				t.Errorf("object schema without additionalProperties:false: %v", v)
			}
			props, _ := v["properties"].(map[string]any)
			req, _ := v["required"].([]any)
			if len(req) != len(props) {
				t.Errorf("object schema must require all %d properties, requires %v", len(props), req)
			}
			for _, r := range req {
				if _, ok := props[r.(string)]; !ok {
					t.Errorf("required %q is not a property", r)
				}
			}
		}
		for _, c := range v {
			checkStrictSchema(t, c)
		}
	case []any:
		for _, c := range v {
			checkStrictSchema(t, c)
		}
	}
}

func TestGenerateJSONObjectFormat(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.ResponseFormat = FormatJSONObject })
	if _, err := h.p.Generate(context.Background(), testRequest()); err != nil {
		t.Fatal(err)
	}
	r := h.srv.Requests()[0]
	if r.ResponseFormatType != "json_object" {
		t.Errorf("response_format.type = %q", r.ResponseFormatType)
	}
	var body sentBody
	if err := json.Unmarshal(r.Raw, &body); err != nil {
		t.Fatal(err)
	}
	if body.ResponseFormat.JSONSchema != nil {
		t.Error("json_object mode must not send a schema")
	}
	// JSON mode requires the word JSON in the messages, and the prompt must
	// describe the shape because no schema carries it.
	if sys := body.Messages[0].Content; !strings.Contains(sys, "JSON") || !strings.Contains(sys, `{"steps":[{"title"`) {
		t.Error("system prompt must ask for JSON and describe the shape")
	}
}

func TestBaseURLWithoutV1(t *testing.T) {
	h := newHarness(t, nil)
	p := newProvider(t, testOptions(strings.TrimSuffix(h.srv.URL, "/v1")))
	if _, err := p.Generate(context.Background(), testRequest()); err != nil {
		t.Fatalf("Generate against {base}/chat/completions: %v", err)
	}
}

func TestNoAPIKey(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.APIKey = "" })
	_, err := h.p.Generate(context.Background(), testRequest())
	pe := providerError(t, err)
	if pe.Failure != offload.ProviderUnavailable || pe.Class != "no_api_key" || pe.Provider != "openai" || pe.Status != 0 {
		t.Errorf("got %+v", pe)
	}
	if offload.ErrorCode(err) != offload.CodeProviderUnavailable {
		t.Errorf("code = %q", offload.ErrorCode(err))
	}
	if n := h.srv.Count(); n != 0 {
		t.Errorf("upstream requests = %d, want 0", n)
	}
}

func TestGenerateTimeout(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Timeout = 50 * time.Millisecond })
	h.srv.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Hang: true} })
	_, err := h.p.Generate(context.Background(), testRequest())
	pe := providerError(t, err)
	if pe.Failure != offload.ProviderTimeout || pe.Class != "timeout" || pe.Attempts != 3 || pe.Status != 0 || pe.Provider != "openai" {
		t.Errorf("got %+v, want timeout after 3 attempts", pe)
	}
	if offload.ErrorCode(err) != offload.CodeProviderTimeout {
		t.Errorf("code = %q", offload.ErrorCode(err))
	}
	// ≤ 3: on a loaded machine an attempt may time out before it reaches
	// the fake.
	if n := h.srv.Count(); n < 1 || n > 3 {
		t.Errorf("upstream requests = %d, want 3", n)
	}
	if n := len(h.slept()); n != 2 {
		t.Errorf("backoff sleeps = %d, want 2", n)
	}
}

// A timeout followed by a 500 is a request failure: only the last failure
// decides between 504 and 502.
func TestGenerateLastFailureDecides(t *testing.T) {
	// 200 ms so that the hanging attempt surely reaches the fake, keeping
	// the script's order.
	h := newHarness(t, func(o *Options) { o.Timeout = 200 * time.Millisecond; o.Retry.MaxAttempts = 2 })
	h.srv.Enqueue(openaitest.Response{Hang: true}, openaitest.Response{Status: 500})
	_, err := h.p.Generate(context.Background(), testRequest())
	if pe := providerError(t, err); pe.Failure != offload.ProviderRequestFailed || pe.Class != "status_500" || pe.Status != 500 {
		t.Errorf("got %+v", pe)
	}
	h.srv.Enqueue(openaitest.Response{Status: 500}, openaitest.Response{Hang: true})
	_, err = h.p.Generate(context.Background(), testRequest())
	// Status is the last attempt's: none.
	if pe := providerError(t, err); pe.Failure != offload.ProviderTimeout || pe.Status != 0 {
		t.Errorf("got %+v", pe)
	}
}

func TestGenerateStatusErrors(t *testing.T) {
	tests := []struct {
		status       int
		wantRequests int
		wantClass    string
	}{
		{500, 3, "status_500"},
		{502, 3, "status_502"},
		{503, 3, "status_503"},
		{429, 3, "status_429"},
		{400, 1, "status_400"},
		{401, 1, "status_401"},
		{403, 1, "status_403"},
		{404, 1, "status_404"},
		{422, 1, "status_422"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			h := newHarness(t, nil)
			h.srv.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: tt.status} })
			_, err := h.p.Generate(context.Background(), testRequest())
			pe := providerError(t, err)
			if pe.Failure != offload.ProviderRequestFailed || pe.Class != tt.wantClass || pe.Attempts != tt.wantRequests ||
				pe.Status != tt.status || pe.Provider != "openai" {
				t.Errorf("got %+v, want request failed %s (%d) after %d", pe, tt.wantClass, tt.status, tt.wantRequests)
			}
			// Refused: the chain must not send the content elsewhere.
			if want := tt.status < 500 && tt.status != 429; pe.Refused() != want {
				t.Errorf("Refused() = %v, want %v", pe.Refused(), want)
			}
			if offload.ErrorCode(err) != offload.CodeProviderRequestFailed {
				t.Errorf("code = %q", offload.ErrorCode(err))
			}
			if n := h.srv.Count(); n != tt.wantRequests {
				t.Errorf("upstream requests = %d, want %d", n, tt.wantRequests)
			}
			if n := len(h.slept()); n != tt.wantRequests-1 {
				t.Errorf("sleeps = %d, want %d", n, tt.wantRequests-1)
			}
			terminal := linesWithMsg(logLines(t, h.logs), "provider_retry_terminal")
			if retried := tt.wantRequests > 1; retried != (len(terminal) == 1) || len(terminal) > 1 {
				t.Errorf("terminal log lines = %v", terminal)
			}
		})
	}
}

// An error body that is not OpenAI's JSON (a proxy's HTML page) is still
// classified by its status.
func TestGenerateNonJSONErrorBody(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Respond(func(openaitest.Request) openaitest.Response {
		return openaitest.Response{Status: 502, Body: []byte("<html>bad gateway</html>")}
	})
	_, err := h.p.Generate(context.Background(), testRequest())
	if pe := providerError(t, err); pe.Failure != offload.ProviderRequestFailed || pe.Class != "status_502" || pe.Attempts != 3 {
		t.Errorf("got %+v", pe)
	}
}

func TestGenerateTransportError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every attempt is refused
	var sleeps int
	o := testOptions("http://" + addr + "/v1")
	o.Sleep = func(ctx context.Context, _ time.Duration) error {
		sleeps++
		return ctx.Err()
	}
	p := newProvider(t, o)
	_, err = p.Generate(context.Background(), testRequest())
	pe := providerError(t, err)
	if pe.Failure != offload.ProviderRequestFailed || pe.Class != "transport" || pe.Attempts != 3 || sleeps != 2 || pe.Status != 0 || pe.Provider != "openai" {
		t.Errorf("got %+v after %d sleeps, want transport failure after 3 attempts", pe, sleeps)
	}
}

func TestGenerateInvalidResponses(t *testing.T) {
	deep := strings.Repeat(`{"title":"x","substeps":[`, 6) + strings.Repeat(`]}`, 6)
	manySteps := `{"steps":[` + strings.TrimSuffix(strings.Repeat(`{"title":"s","substeps":[]},`, 101), ",") + `]}`
	huge := bytes.Repeat([]byte(" "), DefaultMaxResponseBytes+1)
	huge = append(openaitest.CompletionBody(openaitest.DefaultContent, openaitest.Usage{}), huge...)
	tests := []struct {
		name  string
		resp  openaitest.Response
		class string
	}{
		{"garbage content", openaitest.Response{Content: "this is not json"}, "parse"},
		{"missing steps", openaitest.Response{Content: `{"plan":[]}`}, "parse"},
		{"steps not an array", openaitest.Response{Content: `{"steps":"do it"}`}, "parse"},
		{"empty steps", openaitest.Response{Content: `{"steps":[]}`}, "parse"},
		{"array content", openaitest.Response{Content: `[{"title":"a"}]`}, "parse"},
		{"deep nesting", openaitest.Response{Content: `{"steps":[` + deep + `]}`}, "parse"},
		{"hostile nesting", openaitest.Response{Content: `{"steps":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`}, "parse"},
		{"over-long title", openaitest.Response{Content: `{"steps":[{"title":"` + strings.Repeat("é", 281) + `","substeps":[]}]}`}, "parse"},
		{"blank title", openaitest.Response{Content: `{"steps":[{"title":"   ","substeps":[]}]}`}, "parse"},
		{"too many steps", openaitest.Response{Content: manySteps}, "parse"},
		{"refusal", openaitest.Response{Refusal: "I can't help with that."}, "refusal"},
		{"empty content", openaitest.Response{Body: openaitest.CompletionBody("", openaitest.Usage{})}, "empty_content"},
		{"no choices", openaitest.Response{Body: []byte(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}`)}, "no_choices"},
		{"body not JSON", openaitest.Response{Body: []byte(`{"id":`)}, "parse"},
		{"huge body", openaitest.Response{Body: huge}, "body_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.srv.Enqueue(tt.resp)
			_, err := h.p.Generate(context.Background(), testRequest())
			pe := providerError(t, err)
			if pe.Failure != offload.ProviderInvalidResponse || pe.Class != tt.class || pe.Attempts != 1 ||
				pe.Status != 0 || pe.Provider != "openai" || pe.Refused() {
				t.Errorf("got %+v, want invalid response %q after 1 attempt", pe, tt.class)
			}
			if offload.ErrorCode(err) != offload.CodeProviderInvalidResponse {
				t.Errorf("code = %q", offload.ErrorCode(err))
			}
			if n := h.srv.Count(); n != 1 {
				t.Errorf("invalid answers are not retried: %d requests", n)
			}
		})
	}
}

func TestGenerateRecoversAfter503(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Enqueue(openaitest.Response{Status: 503})
	got, err := h.p.Generate(context.Background(), testRequest())
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if len(got.Steps) == 0 || h.srv.Count() != 2 || got.Attempts != 2 {
		t.Errorf("steps %d, requests %d, attempts %d", len(got.Steps), h.srv.Count(), got.Attempts)
	}
	lines := logLines(t, h.logs)
	rec := linesWithMsg(lines, "provider_retry_recovered")
	if len(rec) != 1 || len(lines) != 1 {
		t.Fatalf("logs = %v, want exactly one provider_retry_recovered", lines)
	}
	if rec[0]["level"] != "INFO" || rec[0]["provider"] != "openai" || rec[0]["attempts"] != float64(2) {
		t.Errorf("recovered line = %v", rec[0])
	}
	// Default policy, jitter 0.5·0.25: the one delay is 250 ms + 12.5 %.
	if s := h.slept(); len(s) != 1 || s[0] != 281250*time.Microsecond {
		t.Errorf("sleeps = %v", s)
	}
}

func TestGenerateRetryAfter(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Enqueue(openaitest.Response{Status: 429, Header: http.Header{"Retry-After": {"1"}}})
	if _, err := h.p.Generate(context.Background(), testRequest()); err != nil {
		t.Fatal(err)
	}
	if s := h.slept(); len(s) != 1 || s[0] != time.Second {
		t.Errorf("sleeps = %v, want [1s] from Retry-After", s)
	}

	// Asking for more than MaxDelay still retries, after MaxDelay.
	h = newHarness(t, nil)
	h.srv.Enqueue(openaitest.Response{Status: 429, Header: http.Header{"Retry-After": {"30"}}})
	if _, err := h.p.Generate(context.Background(), testRequest()); err != nil {
		t.Fatal(err)
	}
	if s := h.slept(); h.srv.Count() != 2 || len(s) != 1 || s[0] != h.p.retry.MaxDelay {
		t.Errorf("%d requests, sleeps %v; want 2 and [MaxDelay]", h.srv.Count(), s)
	}
}

func TestGenerateSleepBudget(t *testing.T) {
	tests := []struct {
		name   string
		retry  offload.RetryPolicy
		rand   float64
		sleeps int // expected number of backoff sleeps
	}{
		{"contract defaults", offload.RetryPolicy{MaxAttempts: 3, BaseDelay: 250 * time.Millisecond, MaxDelay: 2 * time.Second, MaxTotalDelay: 4 * time.Second, JitterFactor: 0.25}, 0.999, 2},
		{"ten attempts stop at budget", offload.RetryPolicy{MaxAttempts: 10, BaseDelay: 250 * time.Millisecond, MaxDelay: 2 * time.Second, MaxTotalDelay: 4 * time.Second, JitterFactor: 0.25}, 0, 4},
		{"full jitter capped", offload.RetryPolicy{MaxAttempts: 10, BaseDelay: time.Second, MaxDelay: 1500 * time.Millisecond, MaxTotalDelay: 5 * time.Second, JitterFactor: 1}, 0.999, 3},
		{"tight budget", offload.RetryPolicy{MaxAttempts: 5, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, MaxTotalDelay: 250 * time.Millisecond, JitterFactor: 0}, 0, 1},
		{"zero budget", offload.RetryPolicy{MaxAttempts: 5, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, MaxTotalDelay: 0, JitterFactor: 0}, 0, 0},
		{"zero delays", offload.RetryPolicy{MaxAttempts: 4, BaseDelay: 0, MaxDelay: 0, MaxTotalDelay: 0, JitterFactor: 0.5}, 0.5, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.Retry = tt.retry; o.Rand = func() float64 { return tt.rand } })
			h.srv.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 500} })
			_, err := h.p.Generate(context.Background(), testRequest())
			pe := providerError(t, err)
			sleeps := h.slept()
			if len(sleeps) != tt.sleeps || pe.Attempts != tt.sleeps+1 || h.srv.Count() != tt.sleeps+1 {
				t.Fatalf("sleeps %v, attempts %d, requests %d; want %d sleeps", sleeps, pe.Attempts, h.srv.Count(), tt.sleeps)
			}
			var total time.Duration
			for i, d := range sleeps {
				total += d
				if d > tt.retry.MaxDelay {
					t.Errorf("sleep %d = %v > MaxDelay", i+1, d)
				}
				// Exponential shape: the un-jittered part doubles up to MaxDelay.
				base := min(tt.retry.MaxDelay, tt.retry.BaseDelay<<i)
				if d < base || d > min(tt.retry.MaxDelay, base+time.Duration(float64(base)*tt.retry.JitterFactor)) {
					t.Errorf("sleep %d = %v, want in [%v, +%v jitter]", i+1, d, base, tt.retry.JitterFactor)
				}
			}
			if total > tt.retry.MaxTotalDelay {
				t.Errorf("total sleep %v > budget %v", total, tt.retry.MaxTotalDelay)
			}
			terminal := linesWithMsg(logLines(t, h.logs), "provider_retry_terminal")
			if len(terminal) != 1 || terminal[0]["attempts"] != float64(pe.Attempts) {
				t.Errorf("terminal lines = %v", terminal)
			}
		})
	}
}

func TestGenerateCallerCancel(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Hang: true} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := h.p.Generate(ctx, testRequest())
		done <- err
	}()
	waitFor(t, func() bool { return h.srv.Count() == 1 })
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Generate did not return after cancel")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	pe := providerError(t, err)
	if pe.Class != "canceled" || pe.Attempts != 1 || pe.Provider != "openai" || pe.Status != 0 {
		t.Errorf("got %+v", pe)
	}
	waitFor(t, func() bool { return h.srv.Canceled() == 1 })
	if n := h.srv.Count(); n != 1 || len(h.slept()) != 0 {
		t.Errorf("after cancel: %d requests, sleeps %v; want no further attempt", n, h.slept())
	}
	if lines := logLines(t, h.logs); len(lines) != 0 {
		t.Errorf("a cancelled call is not a provider failure to log: %v", lines)
	}
}

func TestGenerateCancelDuringBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := newHarness(t, func(o *Options) {
		o.Sleep = func(ctx context.Context, _ time.Duration) error {
			cancel() // the client leaves while we wait to retry
			return ctx.Err()
		}
	})
	h.srv.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 503} })
	_, err := h.p.Generate(ctx, testRequest())
	if !errors.Is(err, context.Canceled) || h.srv.Count() != 1 {
		t.Errorf("err %v, requests %d; want canceled after 1", err, h.srv.Count())
	}
}

func TestGenerateCallerDeadline(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Hang: true} })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := h.p.Generate(ctx, testRequest())
	pe := providerError(t, err)
	// Count ≤ 1: on a loaded machine the deadline may pass before the request
	// reaches the fake; either way there is no second attempt.
	if pe.Failure != offload.ProviderTimeout || pe.Class != "deadline" || pe.Provider != "openai" ||
		!errors.Is(err, context.DeadlineExceeded) || h.srv.Count() > 1 {
		t.Errorf("got %+v (%v), %d requests", pe, err, h.srv.Count())
	}
}

func TestRealSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := offload.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("sleepCtx = %v", err)
	}
	if err := offload.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("sleepCtx = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Error("sleepCtx did not return promptly")
	}
}

// Nothing of the request, the provider's bodies or the key reaches logs or
// errors, on any failure path.
func TestPrivacyOfLogsAndErrors(t *testing.T) {
	canaries := []string{"CANARY-INPUT-51d2", "CANARY-HINT-8e07", "CANARY-TPL-c4a1", "CANARY-BODY-93fe", testKey}
	req := offload.BreakdownRequest{
		InputText:    "please plan " + canaries[0],
		Granularity:  5,
		ContextHints: []string{canaries[1]},
		TemplateIDs:  []string{canaries[2]},
	}
	echo := func(status int) openaitest.Response {
		return openaitest.Response{Status: status, Body: []byte(`{"error":{"message":"you said ` + canaries[0] + ` ` + canaries[3] + `","type":"x"}}`)}
	}
	scripts := map[string][]openaitest.Response{
		"500 echo":  {echo(500), echo(500), echo(500)},
		"400 echo":  {echo(400)},
		"429 echo":  {echo(429), echo(429), echo(429)},
		"bad title": {{Content: `{"steps":[{"title":"` + strings.Repeat(canaries[3], 40) + `"}]}`}},
		"garbage":   {{Content: canaries[3] + " not json"}},
		"refusal":   {{Refusal: canaries[3]}},
		"recovered": {echo(503), {Content: `{"steps":[{"title":"` + canaries[3] + `"}]}`}},
	}
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.srv.Enqueue(script...)
			_, err := h.p.Generate(context.Background(), req)
			out := h.logs.String()
			if err != nil {
				out += err.Error()
			}
			for _, c := range canaries {
				if strings.Contains(out, c) {
					t.Errorf("canary %q leaked: %s", c, out)
				}
			}
		})
	}
	// The terminal line carries the metadata the operator needs.
	h := newHarness(t, nil)
	h.srv.Enqueue(echo(500), echo(500), echo(500))
	_, _ = h.p.Generate(context.Background(), req)
	term := linesWithMsg(logLines(t, h.logs), "provider_retry_terminal")
	if len(term) != 1 || term[0]["level"] != "WARN" || term[0]["provider"] != "openai" ||
		term[0]["attempts"] != float64(3) || term[0]["error_class"] != "status_500" {
		t.Errorf("terminal lines = %v", term)
	}
}

func TestConcurrentGenerate(t *testing.T) {
	h := newHarness(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			if _, err := h.p.Generate(context.Background(), testRequest()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := h.srv.Count(); n != 32 {
		t.Errorf("requests = %d", n)
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[int]string{429: "status_429", 500: "status_500", 404: "status_404", 42: "status_other", 1000: "status_other"} {
		if got := statusClass(code); got != want {
			t.Errorf("statusClass(%d) = %q, want %q", code, got, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A 200 whose body is cut off mid-way is a transport failure and retried,
// not an invalid answer.
func TestGenerateTruncatedBodyRetried(t *testing.T) {
	h := newHarness(t, nil)
	full := openaitest.CompletionBody(openaitest.DefaultContent, openaitest.Usage{Prompt: 1, Completion: 1})
	h.srv.Enqueue(openaitest.Response{Body: full[:len(full)/2], Header: http.Header{"Content-Length": {strconv.Itoa(len(full))}}})
	out, err := h.p.Generate(context.Background(), testRequest())
	if err != nil {
		t.Fatalf("not retried: %v", err)
	}
	if h.srv.Count() != 2 || len(out.Steps) == 0 {
		t.Errorf("%d requests, %d steps; want a second attempt that succeeds", h.srv.Count(), len(out.Steps))
	}
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr bool
	}{
		{"zero", Options{}, false},
		{"full", testOptions("http://127.0.0.1:1/v1"), false},
		{"json object", Options{ResponseFormat: FormatJSONObject}, false},
		{"relative URL", Options{BaseURL: "api.openai.com/v1"}, true},
		{"ftp URL", Options{BaseURL: "ftp://example.com"}, true},
		{"no host", Options{BaseURL: "http://"}, true},
		{"unknown format", Options{ResponseFormat: "text"}, true},
		{"marker in model", Options{Model: "m-" + userMarker}, true},
		{"negative conns", Options{MaxConns: -1}, true},
		{"negative cap", Options{MaxResponseBytes: -1}, true},
		{"negative timeout", Options{Timeout: -time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.o)
			if (err != nil) != tt.wantErr || (err == nil) != (p != nil) {
				t.Fatalf("New = %v, %v; want error %v", p, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), tt.o.BaseURL) && tt.o.BaseURL != "" {
				t.Errorf("error quotes the base URL: %v", err)
			}
		})
	}
	// Zero fields take the defaults.
	p := newProvider(t, Options{})
	if p.timeout != DefaultTimeout || p.retry != DefaultRetry || p.bodies.limit != DefaultMaxResponseBytes {
		t.Errorf("defaults: timeout %v, retry %+v, cap %d", p.timeout, p.retry, p.bodies.limit)
	}
	var body sentBody
	if err := json.Unmarshal(p.requestBody(testRequest()), &body); err != nil || body.Model != DefaultModel ||
		body.ResponseFormat.Type != "json_schema" {
		t.Errorf("default body: model %q, format %q (%v)", body.Model, body.ResponseFormat.Type, err)
	}
	// A policy without attempts still makes one.
	p = newProvider(t, Options{Retry: offload.RetryPolicy{BaseDelay: time.Second}})
	if p.retry.MaxAttempts != 1 {
		t.Errorf("MaxAttempts = %d, want 1", p.retry.MaxAttempts)
	}
}

func TestProviderDoesNotPrintKey(t *testing.T) {
	p := newProvider(t, testOptions("http://127.0.0.1:1/v1"))
	for _, f := range []string{"%v", "%+v", "%#v"} {
		if out := fmt.Sprintf(f, *p); strings.Contains(out, testKey) {
			t.Errorf("%s of a Provider shows the key", f)
		}
	}
}
