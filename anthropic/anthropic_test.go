package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/offload-app/offload/anthropic/anthropictest"
	"github.com/offload-app/offload/internal/upstream"
)

const testKey = "sk-ant-test-CANARY-KEY-2b8d41"

// harness is a provider wired to a fake upstream, with captured logs and
// recorded (not slept) backoff delays.
type harness struct {
	p      *Provider
	srv    *anthropictest.Server
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
		APIKey:  testKey,
		BaseURL: baseURL,
		Model:   "claude-test-model",
		Timeout: 5 * time.Second,
		Retry: offload.RetryPolicy{
			MaxAttempts:   3,
			BaseDelay:     250 * time.Millisecond,
			MaxDelay:      2 * time.Second,
			MaxTotalDelay: 4 * time.Second,
			JitterFactor:  0.25,
		},
	}
}

func newHarness(t *testing.T, mutate func(*Options)) *harness {
	t.Helper()
	srv := anthropictest.NewServer(anthropictest.WithRecording())
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
	h.p = New(o)
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

func defaultSteps(t *testing.T) []offload.Step {
	t.Helper()
	want, err := offload.ParseSteps([]byte(anthropictest.DefaultText))
	if err != nil {
		t.Fatal(err)
	}
	return want
}

func TestGenerateSuccess(t *testing.T) {
	h := newHarness(t, nil)
	got, err := h.p.Generate(context.Background(), testRequest())
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if h.p.Name() != "anthropic" {
		t.Errorf("Name = %q", h.p.Name())
	}
	if !reflect.DeepEqual(got.Steps, defaultSteps(t)) {
		t.Errorf("steps = %+v", got.Steps)
	}
	if got.Steps[1].Substeps[0].Title != "Set a timer for ten minutes" || got.Steps[0].Substeps == nil {
		t.Errorf("unexpected plan shape: %+v", got.Steps)
	}
	wantUsage := offload.TokenUsage{InputTokens: anthropictest.DefaultInputTokens, OutputTokens: anthropictest.DefaultOutputTokens}
	if got.Usage != wantUsage || got.Attempts != 1 {
		t.Errorf("usage = %+v, attempts %d; want %+v after 1", got.Usage, got.Attempts, wantUsage)
	}
	if n := h.srv.Count(); n != 1 {
		t.Errorf("upstream requests = %d, want 1", n)
	}
	if lines := logLines(t, h.logs); len(lines) != 0 {
		t.Errorf("a first-attempt success logs nothing, got %v", lines)
	}
}

// sentBody is the part of the Messages request the tests assert on.
type sentBody struct {
	Model     string `json:"model"`
	MaxTokens int    `json:"max_tokens"`
	System    []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"system"`
	Messages []struct {
		Role    string `json:"role"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"messages"`
	Metadata json.RawMessage `json:"metadata"`
}

func TestGenerateRequestShape(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Version = "2099-01-01" })
	req := testRequest()
	if _, err := h.p.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	reqs := h.srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("recorded %d requests", len(reqs))
	}
	r := reqs[0]
	if got := r.Header.Get("X-Api-Key"); got != testKey {
		t.Errorf("x-api-key = %q", got)
	}
	if got := r.Header.Get("Anthropic-Version"); got != "2099-01-01" {
		t.Errorf("anthropic-version = %q", got)
	}
	if got := r.Header.Get("Authorization"); got != "" {
		t.Errorf("the key goes in x-api-key only, Authorization = %q", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := r.Header.Get("Traceparent"); got != "" {
		t.Errorf("no trace context is sent, got %q", got)
	}
	var body sentBody
	if err := json.Unmarshal(r.Raw, &body); err != nil {
		t.Fatal(err)
	}
	if body.Model != "claude-test-model" || body.MaxTokens != maxTokens || body.Metadata != nil {
		t.Errorf("model %q, max_tokens %d, metadata %s", body.Model, body.MaxTokens, body.Metadata)
	}
	if len(body.System) != 1 || body.System[0].Type != "text" || body.System[0].Text != offload.SystemPrompt {
		t.Fatalf("system = %+v", body.System)
	}
	if strings.Contains(body.System[0].Text, req.InputText) || !strings.Contains(body.System[0].Text, "tiny micro-steps") {
		t.Error("system prompt must explain the scale and carry no user content")
	}
	if len(body.Messages) != 1 || body.Messages[0].Role != "user" || len(body.Messages[0].Content) != 1 || body.Messages[0].Content[0].Type != "text" {
		t.Fatalf("messages = %+v", body.Messages)
	}
	var user struct {
		InputText    string   `json:"input_text"`
		Granularity  int      `json:"granularity"`
		ContextHints []string `json:"context_hints"`
		TemplateIDs  []string `json:"template_ids"`
	}
	if err := json.Unmarshal([]byte(body.Messages[0].Content[0].Text), &user); err != nil {
		t.Fatalf("user message is not JSON: %v", err)
	}
	if user.InputText != req.InputText || user.Granularity != 3 ||
		!reflect.DeepEqual(user.ContextHints, req.ContextHints) || !reflect.DeepEqual(user.TemplateIDs, req.TemplateIDs) {
		t.Errorf("user message = %+v", user)
	}
}

// The defaults are the existing deployment's, and the environment the SDK
// would read (ANTHROPIC_*) changes nothing.
func TestDefaultsAndNoAmbientEnvironment(t *testing.T) {
	t.Setenv("ANTHROPIC_API_KEY", "ambient-key")
	t.Setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")
	t.Setenv("ANTHROPIC_CUSTOM_HEADERS", "X-Ambient: yes")
	t.Setenv("ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE", "content")
	p := New(Options{})
	if p.opts.BaseURL != DefaultBaseURL || p.opts.Model != DefaultModel || p.opts.Version != DefaultVersion ||
		p.opts.Timeout != DefaultTimeout || p.opts.Retry.MaxAttempts != 1 {
		t.Errorf("defaults = %+v", p.opts)
	}
	if DefaultBaseURL != "https://api.anthropic.com" || DefaultModel != "claude-haiku-4-5-20251001" || DefaultVersion != "2023-06-01" || DefaultTimeout != 20*time.Second {
		t.Error("defaults differ from the existing deployment's")
	}
	if _, err := p.Generate(context.Background(), testRequest()); providerError(t, err).Failure != offload.ProviderUnavailable {
		t.Errorf("an ambient ANTHROPIC_API_KEY must not be used: %v", err)
	}

	h := newHarness(t, func(o *Options) { o.BaseURL += "/" })
	if _, err := h.p.Generate(context.Background(), testRequest()); err != nil {
		t.Fatalf("Generate with a trailing slash in the base URL: %v", err)
	}
	r := h.srv.Requests()[0]
	if r.Header.Get("X-Ambient") != "" || r.Header.Get("X-Api-Key") != testKey {
		t.Errorf("ambient headers sent: %v", r.Header)
	}
}

func TestNoAPIKey(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.APIKey = "" })
	_, err := h.p.Generate(context.Background(), testRequest())
	pe := providerError(t, err)
	if pe.Failure != offload.ProviderUnavailable || pe.Class != "no_api_key" || pe.Status != 0 || pe.Provider != "anthropic" {
		t.Errorf("got %+v", pe)
	}
	if offload.ErrorCode(err) != offload.CodeProviderUnavailable {
		t.Errorf("code = %q", offload.ErrorCode(err))
	}
	if n := h.srv.Count(); n != 0 {
		t.Errorf("upstream requests = %d, want 0", n)
	}
}

func TestGenerateAnswerForms(t *testing.T) {
	plan := anthropictest.DefaultText
	tests := []struct {
		name string
		resp anthropictest.Response
	}{
		{"plain", anthropictest.Response{Text: plan}},
		{"surrounding whitespace", anthropictest.Response{Text: "\n  " + plan + "\n\n"}},
		{"json fence", anthropictest.Response{Text: "```json\n" + plan + "\n```"}},
		{"JSON fence with spaces", anthropictest.Response{Text: "  ```JSON  \n" + plan + "\n  ```\n"}},
		{"bare fence", anthropictest.Response{Text: "```\n" + plan + "\n```"}},
		{"one-line fence", anthropictest.Response{Text: "```" + plan + "```"}},
		{"prose then fence", anthropictest.Response{Text: "Here is a plan for you:\n\n```json\n" + plan + "\n```\nGood luck!"}},
		{"unclosed fence", anthropictest.Response{Text: "```json\n" + plan}},
		{"thinking first", anthropictest.Response{Blocks: []anthropictest.Block{{Type: "thinking", Text: "let me see"}, {Type: "text", Text: plan}}}},
		{"split text blocks", anthropictest.Response{Blocks: []anthropictest.Block{{Type: "text", Text: plan[:40]}, {Type: "text", Text: plan[40:]}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.srv.Enqueue(tt.resp)
			got, err := h.p.Generate(context.Background(), testRequest())
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if !reflect.DeepEqual(got.Steps, defaultSteps(t)) {
				t.Errorf("steps = %+v", got.Steps)
			}
		})
	}
}

func TestGenerateTimeout(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Timeout = 50 * time.Millisecond })
	h.srv.Respond(func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Hang: true} })
	_, err := h.p.Generate(context.Background(), testRequest())
	pe := providerError(t, err)
	if pe.Failure != offload.ProviderTimeout || pe.Class != "timeout" || pe.Attempts != 3 || pe.Status != 0 {
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

// A timeout followed by a 529 is a request failure: only the last failure
// decides between 504 and 502.
func TestGenerateLastFailureDecides(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Timeout = 200 * time.Millisecond; o.Retry.MaxAttempts = 2 })
	h.srv.Enqueue(anthropictest.Response{Hang: true}, anthropictest.Response{Status: 529})
	_, err := h.p.Generate(context.Background(), testRequest())
	if pe := providerError(t, err); pe.Failure != offload.ProviderRequestFailed || pe.Class != "status_529" || pe.Status != 529 {
		t.Errorf("got %+v", pe)
	}
	h.srv.Enqueue(anthropictest.Response{Status: 500}, anthropictest.Response{Hang: true})
	_, err = h.p.Generate(context.Background(), testRequest())
	if pe := providerError(t, err); pe.Failure != offload.ProviderTimeout || pe.Status != 0 {
		t.Errorf("got %+v", pe)
	}
}

func TestGenerateStatusErrors(t *testing.T) {
	tests := []struct {
		status       int
		wantRequests int
	}{
		{500, 3}, {502, 3}, {503, 3}, {504, 3}, {529, 3}, {429, 3},
		{400, 1}, {401, 1}, {403, 1}, {404, 1}, {413, 1}, {422, 1},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			h := newHarness(t, nil)
			h.srv.Respond(func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Status: tt.status} })
			_, err := h.p.Generate(context.Background(), testRequest())
			pe := providerError(t, err)
			wantClass := "status_" + strconv.Itoa(tt.status)
			if pe.Failure != offload.ProviderRequestFailed || pe.Class != wantClass || pe.Attempts != tt.wantRequests ||
				pe.Status != tt.status || pe.Provider != "anthropic" {
				t.Errorf("got %+v, want request failed %s after %d", pe, wantClass, tt.wantRequests)
			}
			if refused := tt.wantRequests == 1; pe.Refused() != refused {
				t.Errorf("Refused() = %v", pe.Refused())
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

// An error body that is not Anthropic's JSON (a proxy's HTML page) is still
// classified by its status.
func TestGenerateNonJSONErrorBody(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Respond(func(anthropictest.Request) anthropictest.Response {
		return anthropictest.Response{Status: 502, Body: []byte("<html>bad gateway</html>")}
	})
	_, err := h.p.Generate(context.Background(), testRequest())
	if pe := providerError(t, err); pe.Failure != offload.ProviderRequestFailed || pe.Class != "status_502" || pe.Attempts != 3 || pe.Status != 502 {
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
	o := testOptions("http://" + addr)
	o.Sleep = func(ctx context.Context, _ time.Duration) error {
		sleeps++
		return ctx.Err()
	}
	_, err = New(o).Generate(context.Background(), testRequest())
	pe := providerError(t, err)
	if pe.Failure != offload.ProviderRequestFailed || pe.Class != "transport" || pe.Attempts != 3 || sleeps != 2 || pe.Status != 0 {
		t.Errorf("got %+v after %d sleeps, want transport failure after 3 attempts", pe, sleeps)
	}
}

func TestGenerateInvalidResponses(t *testing.T) {
	deep := strings.Repeat(`{"title":"x","substeps":[`, 6) + strings.Repeat(`]}`, 6)
	manySteps := `{"steps":[` + strings.TrimSuffix(strings.Repeat(`{"title":"s","substeps":[]},`, 101), ",") + `]}`
	huge := bytes.Repeat([]byte(" "), MaxResponseBytes+1)
	huge = append(anthropictest.MessageBody(anthropictest.DefaultText, anthropictest.Usage{}), huge...)
	tests := []struct {
		name  string
		resp  anthropictest.Response
		class string
	}{
		{"garbage text", anthropictest.Response{Text: "this is not json"}, "parse"},
		{"missing steps", anthropictest.Response{Text: `{"plan":[]}`}, "parse"},
		{"steps not an array", anthropictest.Response{Text: `{"steps":"do it"}`}, "parse"},
		{"empty steps", anthropictest.Response{Text: `{"steps":[]}`}, "parse"},
		{"array text", anthropictest.Response{Text: `[{"title":"a"}]`}, "parse"},
		{"fenced garbage", anthropictest.Response{Text: "```json\nnot json\n```"}, "parse"},
		{"deep nesting", anthropictest.Response{Text: `{"steps":[` + deep + `]}`}, "parse"},
		{"hostile nesting", anthropictest.Response{Text: "```json\n" + `{"steps":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "}\n```"}, "parse"},
		{"over-long title", anthropictest.Response{Text: `{"steps":[{"title":"` + strings.Repeat("é", 281) + `","substeps":[]}]}`}, "parse"},
		{"blank title", anthropictest.Response{Text: `{"steps":[{"title":"   ","substeps":[]}]}`}, "parse"},
		{"too many steps", anthropictest.Response{Text: manySteps}, "parse"},
		{"text over 1 MiB", anthropictest.Response{Text: `{"steps":[{"title":"a","substeps":[]}],"pad":"` + strings.Repeat("x", offload.MaxContentBytes) + `"}`}, "parse"},
		{"refusal", anthropictest.Response{Text: "I can't help with that.", StopReason: "refusal"}, "refusal"},
		{"cut off", anthropictest.Response{Text: `{"steps":[{"title":"a","sub`, StopReason: "max_tokens"}, "max_tokens"},
		{"empty text", anthropictest.Response{Blocks: []anthropictest.Block{{Type: "text", Text: " \n"}}}, "empty_content"},
		{"no blocks", anthropictest.Response{Blocks: []anthropictest.Block{}}, "empty_content"},
		{"tool use only", anthropictest.Response{Blocks: []anthropictest.Block{{Type: "tool_use", Text: anthropictest.DefaultText}}, StopReason: "tool_use"}, "empty_content"},
		{"body not JSON", anthropictest.Response{Body: []byte(`{"id":`)}, "parse"},
		{"body not a message", anthropictest.Response{Body: []byte(`{"content":"text"}`)}, "parse"},
		{"huge body", anthropictest.Response{Body: huge}, "body_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.srv.Enqueue(tt.resp)
			_, err := h.p.Generate(context.Background(), testRequest())
			pe := providerError(t, err)
			if pe.Failure != offload.ProviderInvalidResponse || pe.Class != tt.class || pe.Attempts != 1 || pe.Status != 0 {
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

// A response header block far over the cap fails the attempt in net/http
// (a transport failure, retried) instead of being buffered.
func TestGenerateHugeHeaderBounded(t *testing.T) {
	h := newHarness(t, nil)
	big := http.Header{"X-Hostile": {strings.Repeat("h", 4<<20)}}
	h.srv.Respond(func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Header: big} })
	_, err := h.p.Generate(context.Background(), testRequest())
	if pe := providerError(t, err); pe.Class != "transport" || pe.Attempts != 3 {
		t.Errorf("got %+v, want a transport failure after 3 attempts", pe)
	}
	// Just under the cap is fine.
	h = newHarness(t, nil)
	h.srv.Enqueue(anthropictest.Response{Header: http.Header{"X-Big": {strings.Repeat("h", upstream.MaxHeaderBytes-1024)}}})
	if _, err := h.p.Generate(context.Background(), testRequest()); err != nil {
		t.Errorf("a header block under the cap: %v", err)
	}
}

func TestGenerateRecoversAfter529(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Enqueue(anthropictest.Response{Status: 529})
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
	if rec[0]["level"] != "INFO" || rec[0]["provider"] != "anthropic" || rec[0]["attempts"] != float64(2) {
		t.Errorf("recovered line = %v", rec[0])
	}
	// Default policy, jitter 0.5·0.25: the one delay is 250 ms + 12.5 %.
	if s := h.slept(); len(s) != 1 || s[0] != 281250*time.Microsecond {
		t.Errorf("sleeps = %v", s)
	}
}

func TestGenerateRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"seconds", http.Header{"Retry-After": {"1"}}, time.Second},
		{"milliseconds first", http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"1"}}, 1500 * time.Millisecond},
		{"over MaxDelay", http.Header{"Retry-After": {"30"}}, 2 * time.Second},
		{"shorter than backoff", http.Header{"Retry-After": {"0.1"}}, 281250 * time.Microsecond},
		{"a date is ignored", http.Header{"Retry-After": {"Wed, 21 Oct 2015 07:28:00 GMT"}}, 281250 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.srv.Enqueue(anthropictest.Response{Status: 429, Header: tt.header})
			if _, err := h.p.Generate(context.Background(), testRequest()); err != nil {
				t.Fatal(err)
			}
			if s := h.slept(); h.srv.Count() != 2 || len(s) != 1 || s[0] != tt.want {
				t.Errorf("%d requests, sleeps %v; want 2 and [%v]", h.srv.Count(), s, tt.want)
			}
		})
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
		{"tight budget", offload.RetryPolicy{MaxAttempts: 5, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, MaxTotalDelay: 250 * time.Millisecond}, 0, 1},
		{"zero budget", offload.RetryPolicy{MaxAttempts: 5, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}, 0, 0},
		{"one attempt", offload.RetryPolicy{MaxAttempts: 1, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, MaxTotalDelay: 4 * time.Second}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.Retry = tt.retry; o.Rand = func() float64 { return tt.rand } })
			h.srv.Respond(func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Status: 529} })
			_, err := h.p.Generate(context.Background(), testRequest())
			pe := providerError(t, err)
			sleeps := h.slept()
			if len(sleeps) != tt.sleeps || pe.Attempts != tt.sleeps+1 || h.srv.Count() != tt.sleeps+1 {
				t.Fatalf("sleeps %v, attempts %d, requests %d; want %d sleeps", sleeps, pe.Attempts, h.srv.Count(), tt.sleeps)
			}
			var total time.Duration
			for i, d := range sleeps {
				total += d
				if want := tt.retry.Backoff(i+1, tt.rand); d != want {
					t.Errorf("sleep %d = %v, want %v", i+1, d, want)
				}
			}
			if total > tt.retry.MaxTotalDelay {
				t.Errorf("total sleep %v > budget %v", total, tt.retry.MaxTotalDelay)
			}
		})
	}
}

func TestGenerateCallerCancel(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Respond(func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Hang: true} })
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
	if pe := providerError(t, err); pe.Class != "canceled" || pe.Attempts != 1 {
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
	h.srv.Respond(func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Status: 529} })
	_, err := h.p.Generate(ctx, testRequest())
	if !errors.Is(err, context.Canceled) || h.srv.Count() != 1 {
		t.Errorf("err %v, requests %d; want canceled after 1", err, h.srv.Count())
	}
}

func TestGenerateCallerDeadline(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Respond(func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Hang: true} })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := h.p.Generate(ctx, testRequest())
	pe := providerError(t, err)
	// Count ≤ 1: on a loaded machine the deadline may pass before the request
	// reaches the fake; either way there is no second attempt.
	if pe.Failure != offload.ProviderTimeout || pe.Class != "deadline" || !errors.Is(err, context.DeadlineExceeded) || h.srv.Count() > 1 {
		t.Errorf("got %+v (%v), %d requests", pe, err, h.srv.Count())
	}
}

// Nothing of the request, the provider's bodies or the key reaches logs or
// errors, on any failure path.
func TestPrivacyOfLogsAndErrors(t *testing.T) {
	canaries := []string{"CANARY-INPUT-6a1f", "CANARY-HINT-0c9e", "CANARY-TPL-77b2", "CANARY-BODY-e4d3", testKey}
	req := offload.BreakdownRequest{
		InputText:    "please plan " + canaries[0],
		Granularity:  5,
		ContextHints: []string{canaries[1]},
		TemplateIDs:  []string{canaries[2]},
	}
	echo := func(status int) anthropictest.Response {
		return anthropictest.Response{Status: status, Body: []byte(`{"type":"error","error":{"type":"x","message":"you said ` + canaries[0] + ` ` + canaries[3] + `"}}`)}
	}
	scripts := map[string][]anthropictest.Response{
		"529 echo":   {echo(529), echo(529), echo(529)},
		"400 echo":   {echo(400)},
		"429 echo":   {echo(429), echo(429), echo(429)},
		"bad title":  {{Text: `{"steps":[{"title":"` + strings.Repeat(canaries[3], 40) + `"}]}`}},
		"garbage":    {{Text: canaries[3] + " not json"}},
		"refusal":    {{Text: canaries[3], StopReason: "refusal"}},
		"body":       {{Body: []byte(`{"content":"` + canaries[3] + `"}`)}},
		"recovered":  {echo(503), {Text: `{"steps":[{"title":"` + canaries[3] + `"}]}`}},
		"hang/cut":   {{Status: 200, Body: []byte(`{"content":[{"type":"text","text":"` + canaries[3]), Header: http.Header{"Content-Length": {"100000"}}}},
		"big header": {{Header: http.Header{"X-Echo": {strings.Repeat(canaries[3], 1<<15)}}}},
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
	h.srv.Enqueue(echo(529), echo(529), echo(529))
	_, _ = h.p.Generate(context.Background(), req)
	term := linesWithMsg(logLines(t, h.logs), "provider_retry_terminal")
	if len(term) != 1 || term[0]["level"] != "WARN" || term[0]["provider"] != "anthropic" ||
		term[0]["attempts"] != float64(3) || term[0]["error_class"] != "status_529" {
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

// A 200 whose body is cut off mid-way is a transport failure and retried,
// not an invalid answer.
func TestGenerateTruncatedBodyRetried(t *testing.T) {
	h := newHarness(t, nil)
	full := anthropictest.MessageBody(anthropictest.DefaultText, anthropictest.Usage{Input: 1, Output: 1})
	h.srv.Enqueue(anthropictest.Response{Body: full[:len(full)/2], Header: http.Header{"Content-Length": {strconv.Itoa(len(full))}}})
	out, err := h.p.Generate(context.Background(), testRequest())
	if err != nil {
		t.Fatalf("not retried: %v", err)
	}
	if h.srv.Count() != 2 || len(out.Steps) == 0 || out.Attempts != 2 {
		t.Errorf("%d requests, %d steps, attempts %d; want a second attempt that succeeds", h.srv.Count(), len(out.Steps), out.Attempts)
	}
}

func TestUsageClamped(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Enqueue(anthropictest.Response{Body: []byte(`{"type":"message","content":[{"type":"text","text":` +
		strconv.Quote(anthropictest.DefaultText) + `}],"usage":{"input_tokens":-5,"output_tokens":99999999999}}`)})
	out, err := h.p.Generate(context.Background(), testRequest())
	if err != nil {
		t.Fatal(err)
	}
	if out.Usage != (offload.TokenUsage{InputTokens: 0, OutputTokens: 1<<31 - 1}) {
		t.Errorf("usage = %+v", out.Usage)
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[int]string{429: "status_429", 529: "status_529", 404: "status_404", 42: "status_other", 1000: "status_other"} {
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
