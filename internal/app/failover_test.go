package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/offload-app/offload/anthropic/anthropictest"
	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/internal/apptest"
	"github.com/offload-app/offload/openai/openaitest"
)

// TestFailoverThroughTheRealHandler runs the configured chain
// openai,anthropic against both fakes: OpenAI failing hands the request to
// Anthropic, a refused request is not sent on, and no canary reaches the
// logs on either path.
func TestFailoverThroughTheRealHandler(t *testing.T) {
	oai := openaitest.NewServer()
	defer oai.Close()
	ant := anthropictest.NewServer(anthropictest.WithRecording())
	defer ant.Close()
	logs := &apptest.Buffer{}
	cfg := testConfig(t, t.TempDir(), map[string]string{
		"OFFLOAD_AI_PROVIDER":               "openai,anthropic",
		"OFFLOAD_OPENAI_API_KEY":            "sk-test",
		"OFFLOAD_OPENAI_BASE_URL":           oai.URL,
		"OFFLOAD_ANTHROPIC_API_KEY":         "sk-ant-test",
		"OFFLOAD_ANTHROPIC_BASE_URL":        ant.URL,
		"OFFLOAD_OPENAI_RETRY_MAX_ATTEMPTS": "1",
		"OFFLOAD_METRICS_ADDR":              "127.0.0.1:0",
	})
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	post := func(path, tok string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("X-Offload-Cloud-Opt-In", "true")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	_, s := post("/v1/sessions/anonymous", "", map[string]string{"install_id": "install-failover", "app_version": "1", "platform": "ios"})
	tok := s["session_token"].(string)
	breakdown := func(canary string) (int, map[string]any) {
		return post("/v1/ai/breakdown/generate", tok, map[string]any{"input_text": canary + " clean the apartment", "granularity": 3})
	}

	if code, out := breakdown("CANARY-first"); code != 200 || out["provider"] != "openai" {
		t.Fatalf("healthy OpenAI: %d %v", code, out)
	}
	oai.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 503} })
	if code, out := breakdown("CANARY-failover"); code != 200 || out["provider"] != "anthropic" {
		t.Fatalf("OpenAI down: %d %v", code, out)
	}
	sent := ant.Requests()
	if len(sent) != 1 {
		t.Fatalf("anthropic got %d requests", len(sent))
	}
	// A refused request stays refused: the user's text is not sent to a
	// second company because the first said 400.
	oai.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 400} })
	if code, out := breakdown("CANARY-refused"); code != 502 || out["error"].(map[string]any)["code"] != "provider_request_failed" {
		t.Fatalf("refused: %d %v", code, out)
	}
	if n := len(ant.Requests()); n != 1 {
		t.Errorf("a refused request was sent on to anthropic (%d requests)", n)
	}

	text := logs.String()
	for _, c := range []string{"CANARY-first", "CANARY-failover", "CANARY-refused", "install-failover", tok} {
		if strings.Contains(text, c) {
			t.Errorf("logs hold %q", c)
		}
	}
	w := httptest.NewRecorder()
	a.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	m := w.Body.String()
	if !strings.Contains(m, `offload_provider_calls_total{outcome="ok",provider="anthropic"} 1`) || strings.Contains(m, "CANARY") {
		t.Errorf("provider metrics:\n%s", grep(m, "offload_provider_calls_total"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
