package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload-app/offload/internal/apptest"
	"github.com/offload-app/offload/postgres/pgtest"
)

const strongSecret = "a-long-and-varied-production-secret-0123456789"

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// As the existing deployment: production without an AI key starts, says so
// once, and answers breakdowns 503 provider_unavailable.
func TestRunProductionWithoutAIKeyStarts(t *testing.T) {
	s := start(t, map[string]string{
		"OFFLOAD_ENVIRONMENT":    "production",
		"OFFLOAD_SESSION_SECRET": strongSecret,
		"OFFLOAD_USAGE_DB_PATH":  filepath.Join(t.TempDir(), "usage.sqlite3"),
	})
	tok := session(t, s.base, "install-nokey-1")
	code, out := post(t, s.base+"/v1/ai/breakdown/generate", tok, map[string]any{"input_text": "x", "granularity": 3}, "X-Offload-Cloud-Opt-In", "true")
	if code != 503 || out["error"].(map[string]any)["code"] != "provider_unavailable" {
		t.Errorf("breakdown without key: %d %v", code, out)
	}
	var warnings int
	sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"level":"WARN"`) && strings.Contains(sc.Text(), "OFFLOAD_OPENAI_API_KEY") {
			warnings++
		}
	}
	if warnings != 1 {
		t.Errorf("%d warning lines naming the key, want 1:\n%s", warnings, s.logs)
	}
}

// A start that fails after config (port taken, bad flag) leaves no
// database file behind: the store is opened only once the listeners are up.
func TestRunFailedStartLeavesNoDatabase(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"api port taken", map[string]string{"OFFLOAD_LISTEN_ADDR": taken.Addr().String()}, nil},
		{"metrics port taken", map[string]string{"OFFLOAD_LISTEN_ADDR": "127.0.0.1:0", "OFFLOAD_METRICS_ADDR": taken.Addr().String()}, nil},
		{"bad flag", map[string]string{"OFFLOAD_LISTEN_ADDR": "127.0.0.1:0"}, []string{"-bogus"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "usage.sqlite3")
			env := withEnv(tt.env, "OFFLOAD_USAGE_DB_PATH", path)
			err := run(context.Background(), append([]string{"offload-api"}, tt.args...), getenvFrom(env), io.Discard, io.Discard)
			if err == nil {
				t.Fatal("start succeeded")
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("database file created by a failed start (%v)", err)
			}
		})
	}
}

func TestRunVersionHelpAndUsageErrors(t *testing.T) {
	var out, errOut apptest.Buffer
	if err := run(context.Background(), []string{"offload-api", "--version"}, getenvFrom(nil), &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "offload-api ") {
		t.Errorf("--version: %v %q", err, out.String())
	}
	for _, h := range []string{"-h", "--help"} {
		var out, errOut apptest.Buffer
		if err := run(context.Background(), []string{"offload-api", h}, getenvFrom(nil), &out, &errOut); err != nil || !strings.Contains(out.String(), "Usage: offload-api") || errOut.String() != "" {
			t.Errorf("%s: %v stdout %q stderr %q", h, err, out.String(), errOut.String())
		}
	}
	for _, args := range [][]string{{"--bogus"}, {"extra"}} {
		err := run(context.Background(), append([]string{"offload-api"}, args...), getenvFrom(nil), io.Discard, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error (exit 2)", args, err)
		}
	}
}

// Metrics are served on their own listener, never on the API's.
func TestRunMetricsOnTheirOwnListener(t *testing.T) {
	s := start(t, map[string]string{"OFFLOAD_USAGE_DB_PATH": filepath.Join(t.TempDir(), "usage.sqlite3")})
	if s.metrics == "" {
		t.Fatalf("no metrics listener:\n%s", s.logs)
	}
	get(t, s.base+"/v1/health")
	code, body := get(t, s.metrics+"/metrics")
	if code != 200 || !strings.Contains(body, `offload_http_requests_total{method="GET",route="GET /v1/health",status="200"} 1`) || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics %d:\n%s", code, body)
	}
	if code, _ := get(t, s.base+"/metrics"); code != 404 {
		t.Errorf("/metrics on the API listener: %d", code)
	}
	off := start(t, map[string]string{"OFFLOAD_USAGE_DB_PATH": filepath.Join(t.TempDir(), "usage.sqlite3"), "OFFLOAD_METRICS_ADDR": "off"})
	if off.metrics != "" {
		t.Errorf("metrics served although off: %s", off.metrics)
	}
}

// On shutdown /readyz answers 503 at once, for the ready delay, while the
// listener still serves; then the drain runs.
func TestRunReadyzFailsFirstOnShutdown(t *testing.T) {
	s := start(t, map[string]string{"OFFLOAD_USAGE_DB_PATH": filepath.Join(t.TempDir(), "usage.sqlite3"), "OFFLOAD_SHUTDOWN_READY_DELAY_SECONDS": "2"})
	if code, body := get(t, s.base+"/readyz"); code != 200 || !strings.Contains(body, `"usage_store":"ok"`) {
		t.Fatalf("readyz before shutdown: %d %s", code, body)
	}
	s.cancel()
	s.cancel = nil
	deadline := time.Now().Add(2 * time.Second)
	code, body := 0, ""
	for time.Now().Before(deadline) {
		if code, body = get(t, s.base+"/readyz"); code == 503 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code != 503 || !strings.Contains(body, `"draining":"failing"`) {
		t.Errorf("readyz during the ready delay: %d %s", code, body)
	}
	if code, _ := get(t, s.base+"/v1/health"); code != 200 {
		t.Errorf("the listener stopped serving during the ready delay: %d", code)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no stop after the ready delay")
	}
}

// TestMain runs main() in a child process when asked to, so a test can send
// it real signals.
func TestMain(m *testing.M) {
	if os.Getenv("OFFLOAD_API_TEST_MAIN") == "1" {
		os.Args = []string{"offload-api"}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A second SIGTERM during the drain ends the process at once.
func TestSecondSignalEndsTheDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OFFLOAD_API_TEST_MAIN=1",
		"OFFLOAD_LISTEN_ADDR=127.0.0.1:0", "OFFLOAD_METRICS_ADDR=off",
		"OFFLOAD_USAGE_DB_PATH="+filepath.Join(t.TempDir(), "usage.sqlite3"),
		"OFFLOAD_SHUTDOWN_READY_DELAY_SECONDS=60")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(want string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("process ended before %q", want)
				}
				if strings.Contains(l, want) {
					return
				}
			case <-timeout:
				cmd.Process.Kill()
				t.Fatalf("no %q", want)
			}
		}
	}
	waitLine("offload-api started")
	cmd.Process.Signal(syscall.SIGTERM)
	waitLine("shutting down") // now waiting out the 60 s ready delay
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("second signal took %v", d)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("a second SIGTERM did not end the process")
	}
}

// With OFFLOAD_DATABASE_URL the server runs on PostgreSQL: no SQLite file
// is made, and the startup line names the store and host, never the
// password.
func TestRunOnPostgres(t *testing.T) {
	url := pgtest.Database(t)
	withPassword := strings.Replace(url, "postgres://postgres@", "postgres://postgres:CANARY-pw@", 1)
	if withPassword == url {
		t.Fatalf("unexpected test database URL shape")
	}
	path := filepath.Join(t.TempDir(), "usage.sqlite3")
	s := start(t, map[string]string{"OFFLOAD_DATABASE_URL": withPassword, "OFFLOAD_USAGE_DB_PATH": path})
	tok := session(t, s.base, "install-on-postgres")
	if code, out := post(t, s.base+"/v1/usage/reconcile", tok, map[string]any{"install_id": "install-on-postgres", "feature": "breakdown", "local_count": 3}); code != 200 || out["server_count"] != 3.0 {
		t.Fatalf("reconcile on postgres: %d %v", code, out)
	}
	logs := s.logs.String()
	if !strings.Contains(logs, `"store":"postgres:`) || !strings.Contains(logs, "127.0.0.1") || strings.Contains(logs, "CANARY-pw") {
		t.Errorf("startup line:\n%s", logs)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a SQLite file was created beside PostgreSQL (%v)", err)
	}
}
