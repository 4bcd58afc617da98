package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/internal/apptest"
	"github.com/offload-app/offload/mock"
	"github.com/offload-app/offload/openai/openaitest"
)

func testConfig(t *testing.T, dir string, env map[string]string) config.Config {
	t.Helper()
	base := map[string]string{
		"OFFLOAD_USAGE_DB_PATH":                        filepath.Join(dir, "usage.sqlite3"),
		"OFFLOAD_SESSION_ISSUE_LIMIT_PER_IP":           "1000",
		"OFFLOAD_OPENAI_RETRY_BASE_DELAY_SECONDS":      "0",
		"OFFLOAD_OPENAI_RETRY_MAX_DELAY_SECONDS":       "0",
		"OFFLOAD_OPENAI_RETRY_MAX_TOTAL_DELAY_SECONDS": "0",
	}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := config.Load(func(k string) string { return base[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// canaries are unique strings for one path through the server.
type canaries struct{ input, hint, template, step string }

func newCanaries(path string) canaries {
	tag := strings.ReplaceAll(path, " ", "-")
	return canaries{"CANARY-input-" + tag, "CANARY-hint-" + tag, "CANARY-tpl-" + tag, "CANARY-step-" + tag}
}

func (c canaries) all() []string { return []string{c.input, c.hint, c.template, c.step} }

func (c canaries) body(granularity int, pad int) []byte {
	b, _ := json.Marshal(map[string]any{
		"input_text":    c.input + strings.Repeat(" x", pad),
		"granularity":   granularity,
		"context_hints": []string{c.hint},
		"template_ids":  []string{c.template},
	})
	return b
}

func stepsJSON(title string) string {
	return fmt.Sprintf(`{"steps":[{"title":%q,"substeps":[{"title":%q}]}]}`, title, title+"-sub")
}

// TestNoContentRetained pushes canary strings through every success and
// failure path of the breakdown route, then checks that no log line and no
// file in the data directory holds any of them.
func TestNoContentRetained(t *testing.T) {
	dir := t.TempDir()
	logs := &apptest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fake := openaitest.NewServer()
	defer fake.Close()

	cfg := testConfig(t, dir, map[string]string{
		"OFFLOAD_AI_PROVIDER":            "openai",
		"OFFLOAD_OPENAI_API_KEY":         "sk-CANARY-api-key",
		"OFFLOAD_OPENAI_BASE_URL":        fake.URL,
		"OFFLOAD_OPENAI_TIMEOUT_SECONDS": "0.2",
		"OFFLOAD_MAX_INPUT_CHARS":        "500",
	})
	a, err := app.New(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	var used []string
	send := func(path string, c canaries, optIn string, body []byte, ctx context.Context) int {
		t.Helper()
		used = append(used, c.all()...)
		tok := session(t, srv.URL, "install-"+strings.ReplaceAll(path, " ", "-"))
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/ai/breakdown/generate", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if optIn != "" {
			req.Header.Set("X-Offload-Cloud-Opt-In", optIn)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out bytes.Buffer
		out.ReadFrom(resp.Body)
		if resp.StatusCode != 200 {
			for _, s := range c.all() {
				if strings.Contains(out.String(), s) {
					t.Errorf("%s: error body echoes %q: %s", path, s, out.String())
				}
			}
		}
		return resp.StatusCode
	}

	tests := []struct {
		path   string
		script []openaitest.Response // answers of the fake upstream
		optIn  string
		gran   int
		pad    int
		want   int
	}{
		{"success", []openaitest.Response{{Content: stepsJSON("%s")}}, "true", 3, 0, 200},
		{"no consent", nil, "", 3, 0, 403},
		{"validation", nil, "true", 9, 0, 422},
		{"too large", nil, "true", 3, 400, 413},
		{"upstream 500", []openaitest.Response{{Status: 500}, {Status: 500}, {Status: 500}}, "true", 3, 0, 502},
		{"upstream 400", []openaitest.Response{{Status: 400, Body: []byte(`{"error":{"message":"%s"}}`)}}, "true", 3, 0, 502},
		{"upstream 429", []openaitest.Response{{Status: 429}, {Status: 429}, {Status: 429}}, "true", 3, 0, 502},
		{"invalid response", []openaitest.Response{{Content: `{"steps":"%s"}`}}, "true", 3, 0, 502},
		{"garbage response", []openaitest.Response{{Content: "not json %s"}}, "true", 3, 0, 502},
		{"timeout", []openaitest.Response{{Hang: true}, {Hang: true}, {Hang: true}}, "true", 3, 0, 504},
	}
	for _, tt := range tests {
		c := newCanaries(tt.path)
		for _, r := range tt.script {
			r.Content = strings.ReplaceAll(r.Content, "%s", c.step)
			r.Body = bytes.ReplaceAll(r.Body, []byte("%s"), []byte(c.step))
			fake.Enqueue(r)
		}
		if got := send(tt.path, c, tt.optIn, c.body(tt.gran, tt.pad), context.Background()); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.path, got, tt.want)
		}
	}

	// The app goes away while the provider works.
	c := newCanaries("cancelled")
	fake.Enqueue(openaitest.Response{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	sent, canceled := fake.Count(), fake.Canceled()
	go func() {
		for fake.Count() == sent { // wait until the upstream holds the request
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	send("cancelled", c, "true", c.body(3, 0), ctx)
	for deadline := time.Now().Add(5 * time.Second); fake.Canceled() == canceled; {
		if time.Now().After(deadline) {
			t.Fatal("the app's disconnect did not cancel the upstream call")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A provider that panics on the content.
	pc := newCanaries("panic")
	panicky := &mock.Provider{GenerateFn: func(context.Context, offload.BreakdownRequest) (offload.Breakdown, error) {
		panic(errors.New("provider exploded on " + pc.input))
	}}
	a2, err := app.New(context.Background(), testConfig(t, dir, map[string]string{"OFFLOAD_USAGE_DB_PATH": filepath.Join(dir, "second.sqlite3")}), logger, app.WithProvider(panicky))
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(a2.Handler())
	srv = srv2
	if got := send("panic", pc, "true", pc.body(3, 0), context.Background()); got != 500 {
		t.Errorf("panic: status %d", got)
	}
	srv2.Close()

	// The local provider's answer is content too.
	lc := newCanaries("local")
	a3, err := app.New(context.Background(), testConfig(t, dir, map[string]string{"OFFLOAD_AI_PROVIDER": "local", "OFFLOAD_USAGE_DB_PATH": filepath.Join(dir, "third.sqlite3")}), logger)
	if err != nil {
		t.Fatal(err)
	}
	srv3 := httptest.NewServer(a3.Handler())
	srv = srv3
	if got := send("local", lc, "true", lc.body(5, 0), context.Background()); got != 200 {
		t.Errorf("local: status %d", got)
	}
	srv3.Close()

	check := func(when string) {
		t.Helper()
		text := logs.String()
		for _, s := range append(used, "sk-CANARY-api-key") {
			if strings.Contains(text, s) {
				t.Errorf("%s: logs hold %q", when, s)
			}
		}
		// Positive control: install ids are stored by design, so a scan
		// that can't see them couldn't see a canary either.
		sawInstallID := false
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sawInstallID = sawInstallID || bytes.Contains(b, []byte("install-success"))
			for _, s := range used {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("%s: %s holds %q", when, filepath.Base(p), s)
				}
			}
			return nil
		})
		if !sawInstallID {
			t.Errorf("%s: the scan did not find the stored install id", when)
		}
	}
	check("while running")
	for _, x := range []*app.App{a, a2, a3} {
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
	}
	check("after close")
	if !strings.Contains(logs.String(), "provider_retry_terminal") {
		t.Errorf("expected provider failures to be logged:\n%s", logs)
	}
}

func session(t *testing.T, base, installID string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"install_id": installID, "app_version": "1", "platform": "ios"})
	resp, err := http.Post(base+"/v1/sessions/anonymous", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		SessionToken string `json:"session_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("session: %d %v", resp.StatusCode, err)
	}
	return out.SessionToken
}
