package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload/internal/apptest"
	"github.com/offload-app/offload/openai/openaitest"
)

func getenvFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// server is run() in a goroutine.
type server struct {
	base    string
	metrics string // the metrics listener, "" when off
	logs    *apptest.Buffer
	cancel  context.CancelFunc
	done    chan error
}

// start runs the server on a free port and waits for its startup log line.
func start(t *testing.T, env map[string]string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{logs: &apptest.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	if _, ok := env["OFFLOAD_METRICS_ADDR"]; !ok {
		env = withEnv(env, "OFFLOAD_METRICS_ADDR", "127.0.0.1:0")
	}
	go func() {
		s.done <- run(ctx, []string{"offload-api", "-addr", "127.0.0.1:0"}, getenvFrom(env), io.Discard, s.logs)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
		for sc.Scan() {
			var line struct {
				Msg, Addr   string
				MetricsAddr string `json:"metrics_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "offload-api started" {
				s.base = "http://" + line.Addr
				if line.MetricsAddr != "" {
					s.metrics = "http://" + line.MetricsAddr
				}
				t.Cleanup(func() { s.stop(t) })
				return s
			}
		}
		select {
		case err := <-s.done:
			t.Fatalf("run returned early: %v\n%s", err, s.logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("server did not start:\n%s", s.logs)
	return nil
}

// withEnv returns a copy of env with more variables set.
func withEnv(env map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(env)+len(kv)/2)
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	if err := <-s.done; err != nil {
		t.Errorf("run: %v", err)
	}
}

func post(t *testing.T, url, tok string, body any, header ...string) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
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

func session(t *testing.T, base, installID string) string {
	t.Helper()
	code, out := post(t, base+"/v1/sessions/anonymous", "", map[string]string{"install_id": installID, "app_version": "1", "platform": "ios"})
	if code != 200 {
		t.Fatalf("session: %d %v", code, out)
	}
	return out["session_token"].(string)
}

func TestRunZeroConfigServesEveryRoute(t *testing.T) {
	dir := t.TempDir()
	s := start(t, map[string]string{"OFFLOAD_USAGE_DB_PATH": filepath.Join(dir, "nested", "usage.sqlite3")})

	resp, err := http.Get(s.base + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]string
	json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if health["status"] != "ok" || health["environment"] != "development" || health["version"] != "dev" {
		t.Errorf("health = %v", health)
	}

	tok := session(t, s.base, "install-zero-config")
	code, out := post(t, s.base+"/v1/ai/breakdown/generate", tok,
		map[string]any{"input_text": "clean the apartment and then do the laundry", "granularity": 3},
		"X-Offload-Cloud-Opt-In", "true")
	if code != 200 || out["provider"] != "local" || len(out["steps"].([]any)) == 0 {
		t.Errorf("local breakdown: %d %v", code, out)
	}
	code, out = post(t, s.base+"/v1/usage/reconcile", tok, map[string]any{"install_id": "install-zero-config", "feature": "breakdown", "local_count": 0})
	if code != 200 || out["server_count"] != 1.0 {
		t.Errorf("the breakdown was not counted server-side: %d %v", code, out)
	}

	logs := s.logs.String()
	if !strings.Contains(logs, `"provider":"local"`) || !strings.Contains(logs, `"store":"sqlite:`) || !strings.Contains(logs, `"version":"dev"`) {
		t.Errorf("startup line lacks metadata:\n%s", logs)
	}
	if strings.Contains(logs, tok) || strings.Contains(logs, "install-zero-config") || strings.Contains(logs, "laundry") {
		t.Errorf("logs hold content:\n%s", logs)
	}
}

// A reconciled count survives a restart of the server on the same file.
func TestRunCountSurvivesRestart(t *testing.T) {
	env := map[string]string{"OFFLOAD_USAGE_DB_PATH": filepath.Join(t.TempDir(), "usage.sqlite3"),
		"OFFLOAD_SESSION_SECRET": "restart-test-secret-restart-test-secret"}
	s := start(t, env)
	tok := session(t, s.base, "install-restart")
	if code, out := post(t, s.base+"/v1/usage/reconcile", tok, map[string]any{"install_id": "install-restart", "feature": "breakdown", "local_count": 42}); code != 200 {
		t.Fatalf("reconcile: %d %v", code, out)
	}
	s.stop(t)

	s = start(t, env)
	// The token from before the restart still verifies (same secret).
	code, out := post(t, s.base+"/v1/usage/reconcile", tok, map[string]any{"install_id": "install-restart", "feature": "breakdown", "local_count": 1})
	if code != 200 || out["server_count"] != 42.0 {
		t.Fatalf("after restart: %d %v", code, out)
	}
}

func TestRunGracefulShutdownFinishesInFlight(t *testing.T) {
	fake := openaitest.NewServer(openaitest.WithDelay(400 * time.Millisecond))
	defer fake.Close()
	s := start(t, map[string]string{
		"OFFLOAD_USAGE_DB_PATH":   filepath.Join(t.TempDir(), "usage.sqlite3"),
		"OFFLOAD_OPENAI_API_KEY":  "test-key",
		"OFFLOAD_OPENAI_BASE_URL": fake.URL,
	})
	tok := session(t, s.base, "install-shutdown")
	type result struct {
		code int
		out  map[string]any
	}
	got := make(chan result, 1)
	go func() {
		code, out := post(t, s.base+"/v1/ai/breakdown/generate", tok,
			map[string]any{"input_text": "pack for the trip", "granularity": 2}, "X-Offload-Cloud-Opt-In", "true")
		got <- result{code, out}
	}()
	for fake.Count() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	s.stop(t) // returns once the in-flight request has been answered
	select {
	case r := <-got:
		if r.code != 200 || r.out["provider"] != "openai" {
			t.Fatalf("in-flight request: %d %v", r.code, r.out)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request not answered")
	}
	if _, err := http.Get(s.base + "/v1/health"); err == nil {
		t.Error("server still accepting after shutdown")
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	canary := "changeme"
	tests := []struct {
		name    string
		env     map[string]string
		mention string
	}{
		{"production without secret", map[string]string{"OFFLOAD_ENVIRONMENT": "production", "OFFLOAD_AI_PROVIDER": "local"}, "OFFLOAD_SESSION_SECRET"},
		{"production placeholder secret", map[string]string{"OFFLOAD_ENVIRONMENT": "production", "OFFLOAD_AI_PROVIDER": "local", "OFFLOAD_SESSION_SECRET": canary}, "OFFLOAD_SESSION_SECRET"},
		{"retry settings disagree", map[string]string{"OFFLOAD_AI_RETRY_MAX_ATTEMPTS": "2", "OFFLOAD_OPENAI_RETRY_MAX_ATTEMPTS": "3"}, "OFFLOAD_OPENAI_RETRY_MAX_ATTEMPTS"},
		{"bad number", map[string]string{"OFFLOAD_SESSION_TTL_SECONDS": "soon"}, "OFFLOAD_SESSION_TTL_SECONDS"},
		{"bad flag", nil, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := map[string]string{"OFFLOAD_USAGE_DB_PATH": filepath.Join(dir, "usage.sqlite3"), "OFFLOAD_LISTEN_ADDR": "127.0.0.1:0"}
			for k, v := range tt.env {
				env[k] = v
			}
			args := []string{"offload-api"}
			if tt.env == nil {
				args = append(args, "-bogus")
			}
			var stderr apptest.Buffer
			err := run(context.Background(), args, getenvFrom(env), io.Discard, &stderr)
			if err == nil {
				t.Fatal("run accepted bad configuration")
			}
			msg := err.Error() + stderr.String()
			if !strings.Contains(msg, tt.mention) {
				t.Errorf("message does not name %s: %s", tt.mention, msg)
			}
			if strings.Contains(err.Error(), canary) {
				t.Errorf("secret printed: %s", err)
			}
			if strings.Contains(stderr.String(), "offload-api started") {
				t.Error("server started listening")
			}
			if _, statErr := os.Stat(filepath.Join(dir, "usage.sqlite3")); !errors.Is(statErr, os.ErrNotExist) && tt.env != nil {
				t.Errorf("store opened before config was checked")
			}
		})
	}
}

func TestRunRefusesCorruptDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.sqlite3")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 400), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr apptest.Buffer
	err := run(context.Background(), []string{"offload-api"}, getenvFrom(map[string]string{"OFFLOAD_USAGE_DB_PATH": path, "OFFLOAD_LISTEN_ADDR": "127.0.0.1:0"}), io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "usage store") {
		t.Fatalf("corrupt database accepted: %v", err)
	}
}

// A breakdown that outlives the drain time is cancelled, not left running
// against a closed store, and the stop is still a clean one.
func TestRunDrainTimeoutCancelsInFlight(t *testing.T) {
	fake := openaitest.NewServer()
	defer fake.Close()
	fake.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Hang: true} })
	s := start(t, map[string]string{
		"OFFLOAD_USAGE_DB_PATH":            filepath.Join(t.TempDir(), "usage.sqlite3"),
		"OFFLOAD_OPENAI_API_KEY":           "test-key",
		"OFFLOAD_OPENAI_BASE_URL":          fake.URL,
		"OFFLOAD_SHUTDOWN_TIMEOUT_SECONDS": "0.2",
	})
	tok := session(t, s.base, "install-drain")
	got := make(chan int, 1)
	go func() {
		code, _ := post(t, s.base+"/v1/ai/breakdown/generate", tok,
			map[string]any{"input_text": "pack for the trip", "granularity": 2}, "X-Offload-Cloud-Opt-In", "true")
		got <- code
	}()
	for fake.Count() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	s.stop(t) // fails the test if run returns an error
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v", d)
	}
	if code := <-got; code < 500 {
		t.Errorf("cancelled request answered %d", code)
	}
	if fake.Canceled() != 1 {
		t.Errorf("upstream call not cancelled: %d", fake.Canceled())
	}
	if !strings.Contains(s.logs.String(), "drain timed out") {
		t.Errorf("no drain warning:\n%s", s.logs)
	}
}
