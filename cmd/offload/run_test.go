package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/internal/apptest"
	"github.com/offload-app/offload/openai/openaitest"
)

// startServer runs the real server in-process against a fake OpenAI.
func startServer(t *testing.T, env map[string]string) *apptest.Server {
	t.Helper()
	vars := map[string]string{"OFFLOAD_BUILD_VERSION": "v-test"}
	for k, v := range env {
		vars[k] = v
	}
	return apptest.Start(t, vars)
}

// failingServer fails the test when called: for paths that must stay offline.
func failingServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		w.WriteHeader(500)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// deadURL is the address of a closed listener.
func deadURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

// env is one user's environment: a state directory and a server.
type env struct {
	t      *testing.T
	state  string
	server string
}

func newEnv(t *testing.T, server string) *env {
	return &env{t: t, state: filepath.Join(t.TempDir(), "state"), server: server}
}

type result struct {
	code           int
	stdout, stderr string
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	vars := map[string]string{envStateDir: e.state, envAPIURL: e.server}
	var out, errb bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return vars[k] }, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// must runs args and fails the test unless it exits 0 with empty stderr.
func (e *env) must(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 || r.stderr != "" {
		e.t.Fatalf("offload %q: exit %d, stderr %q, stdout %q", args, r.code, r.stderr, r.stdout)
	}
	return r.stdout
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// oneLine checks a failure's stderr: exactly one line, starting "offload: ".
func oneLine(t *testing.T, r result) string {
	t.Helper()
	if r.code == 0 || !strings.HasPrefix(r.stderr, "offload: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("want one error line and a non-zero exit, got exit %d stderr %q", r.code, r.stderr)
	}
	return r.stderr
}

func TestHelp(t *testing.T) {
	e := newEnv(t, failingServer(t))
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"breakdown", "--help"}, {"--server", "http://x", "doctor", "-h"}} {
		out := e.must(args...)
		if !strings.Contains(out, "Commands:") || !strings.Contains(out, "breakdown TEXT") {
			t.Fatalf("%q: help = %q", args, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t, failingServer(t))
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"breakdown"}, "needs the task text"},
		{[]string{"breakdown", "x", "-g", "0"}, "granularity must be 1–5"},
		{[]string{"breakdown", "x", "-g", "six"}, "invalid value"},
		{[]string{"breakdown", "x", "--colour"}, "flag provided but not defined"},
		{[]string{"consent"}, "consent takes one of on, off, status"},
		{[]string{"consent", "maybe"}, "consent takes one of on, off, status"},
		{[]string{"usage", "reset"}, "usage takes status or sync"},
		{[]string{"health", "now"}, "health takes no arguments"},
		{[]string{"--server", "ftp://x", "health"}, "--server"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := e.run(tt.args...)
			line := oneLine(t, r)
			if r.code != exitUsage || !strings.Contains(line, tt.want) || r.stdout != "" {
				t.Fatalf("exit %d stderr %q stdout %q; want exit 2 mentioning %q", r.code, line, r.stdout, tt.want)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	srv := startServer(t, nil)
	e := newEnv(t, srv.URL)
	out := e.must("health")
	if out != fmt.Sprintf("ok: %s v-test (development) at %s\n", offload.ServiceName, srv.URL) {
		t.Fatalf("health = %q", out)
	}
	h := decode[struct {
		Status, Service, Version, Environment string
		RequestID                             string `json:"request_id"`
	}](t, e.must("health", "--json"))
	if h.Status != "ok" || h.Service != offload.ServiceName || h.Version != "v-test" || h.RequestID == "" {
		t.Fatalf("health json = %+v", h)
	}
	// --server wins over OFFLOAD_API_URL, before or after the command.
	dead := newEnv(t, srv.URL)
	for _, args := range [][]string{{"--server", deadURL(t), "health"}, {"health", "--server", deadURL(t)}} {
		line := oneLine(t, dead.run(args...))
		if !strings.Contains(line, "cannot reach the server") {
			t.Fatalf("%q: %q", args, line)
		}
	}
}

func TestSession(t *testing.T) {
	srv := startServer(t, nil)
	e := newEnv(t, srv.URL)
	if out := e.must("session"); !strings.HasPrefix(out, "session issued; expires ") {
		t.Fatalf("first session = %q", out)
	}
	if out := e.must("session"); !strings.HasPrefix(out, "session valid; expires ") {
		t.Fatalf("second session = %q", out)
	}
	s := decode[sessionOutput](t, e.must("session", "--renew", "--json"))
	if s.Status != "issued" || time.Until(s.ExpiresAt) < 50*time.Minute {
		t.Fatalf("session json = %+v", s)
	}
	// The token itself is never printed.
	raw, err := os.ReadFile(filepath.Join(e.state, "session.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Token string `json:"session_token"`
	}
	json.Unmarshal(raw, &f)
	if f.Token == "" || strings.Contains(e.must("session", "--json"), f.Token) || strings.Contains(e.must("session"), f.Token) {
		t.Fatal("token missing from the store or printed")
	}
}

func TestConsent(t *testing.T) {
	e := newEnv(t, failingServer(t))
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"consent", "status"}, "cloud AI: off"},
		{[]string{"consent", "on"}, "cloud AI: on"},
		{[]string{"consent", "status"}, "cloud AI: on"},
		{[]string{"consent", "off"}, "cloud AI: off"},
	}
	for _, s := range steps {
		if out := e.must(s.args...); !strings.HasPrefix(out, s.want) {
			t.Fatalf("%q = %q, want %q…", s.args, out, s.want)
		}
	}
	e.must("consent", "on")
	if c := decode[consentOutput](t, e.must("consent", "status", "--json")); !c.CloudAIEnabled {
		t.Fatal("consent json says off")
	}
}

type breakdownJSON struct {
	Source         string         `json:"source"`
	Steps          []offload.Step `json:"steps"`
	Provider       string         `json:"provider"`
	Usage          *offload.TokenUsage
	FallbackReason string `json:"fallback_reason"`
	RequestID      string `json:"request_id"`
}

func TestBreakdownConsentOffStaysOnDevice(t *testing.T) {
	e := newEnv(t, failingServer(t))
	r := e.run("breakdown", "Plan a party. Buy a cake; send invites", "-g", "2")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "1. ") || !strings.HasSuffix(r.stdout, "\nsource: on-device\n") {
		t.Fatalf("output = %q", r.stdout)
	}
	b := decode[breakdownJSON](t, e.must("breakdown", "--json", "Plan a party"))
	if b.Source != "on-device" || len(b.Steps) == 0 || b.Usage != nil || b.Provider != "" {
		t.Fatalf("json = %+v", b)
	}
	if out := e.must("usage"); out != "breakdown: 2 (local 2, server 0)\n" {
		t.Fatalf("usage = %q", out)
	}
}

func TestBreakdownCloud(t *testing.T) {
	srv := startServer(t, nil)
	e := newEnv(t, srv.URL)
	e.must("consent", "on")
	// Flags after the text, repeated, and "--" before text that looks like a flag.
	out := e.must("breakdown", "Write", "the", "report", "-g", "5", "--hint", "due Friday", "--hint", "short", "--template", "t1")
	if !strings.HasPrefix(out, "1. ") || !strings.Contains(out, fmt.Sprintf("source: cloud (openai), %d input + %d output tokens\n",
		openaitest.DefaultPromptTokens, openaitest.DefaultCompletionTokens)) {
		t.Fatalf("output = %q", out)
	}
	b := decode[breakdownJSON](t, e.must("breakdown", "--json", "--", "-not-a-flag"))
	if b.Source != "cloud" || b.Provider != "openai" || len(b.Steps) == 0 || b.Usage == nil ||
		b.Usage.OutputTokens != openaitest.DefaultCompletionTokens || b.RequestID == "" || b.FallbackReason != "" {
		t.Fatalf("json = %+v", b)
	}
	for _, s := range b.Steps {
		if s.Substeps == nil {
			t.Fatal("substeps missing from JSON")
		}
	}
	if srv.Upstream.Count() != 2 {
		t.Fatalf("upstream calls = %d, want 2", srv.Upstream.Count())
	}
}

func TestBreakdownFallsBack(t *testing.T) {
	t.Run("provider failure", func(t *testing.T) {
		srv := startServer(t, nil)
		srv.Upstream.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 500} })
		e := newEnv(t, srv.URL)
		e.must("consent", "on")
		out := e.must("breakdown", "Clean the garage")
		if !strings.Contains(out, "source: on-device (cloud failed: provider_request_failed, request id ") {
			t.Fatalf("output = %q", out)
		}
		b := decode[breakdownJSON](t, e.must("breakdown", "--json", "Clean the garage"))
		if b.Source != "on-device" || b.FallbackReason != "provider_request_failed" || b.RequestID == "" || len(b.Steps) == 0 {
			t.Fatalf("json = %+v", b)
		}
	})
	t.Run("server down", func(t *testing.T) {
		e := newEnv(t, deadURL(t))
		e.must("consent", "on")
		if out := e.must("breakdown", "Clean the garage"); !strings.HasSuffix(out, "source: on-device (cloud failed: unreachable)\n") {
			t.Fatalf("output = %q", out)
		}
	})
}

func TestBreakdownPolicyErrorIsOneLine(t *testing.T) {
	srv := startServer(t, map[string]string{"OFFLOAD_ENFORCE_QUOTA": "true", "OFFLOAD_DEFAULT_FEATURE_QUOTA": "0"})
	e := newEnv(t, srv.URL)
	e.must("consent", "on")
	r := e.run("breakdown", "Secret diary plans")
	line := oneLine(t, r)
	if r.code != exitFail || r.stdout != "" || !strings.Contains(line, "429 quota_exceeded") ||
		!strings.Contains(line, "request id ") || !strings.Contains(line, "retry in ") || strings.Contains(line, "Secret") {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, line)
	}
	if out := e.must("usage"); out != "breakdown: 0 (local 0, server 0)\n" {
		t.Fatalf("a refused breakdown was counted: %q", out)
	}
}

func TestUsage(t *testing.T) {
	srv := startServer(t, nil)
	e := newEnv(t, srv.URL)
	if out := e.must("usage", "status"); out != "breakdown: 0 (local 0, server 0)\n" {
		t.Fatalf("usage = %q", out)
	}
	if line := oneLine(t, e.run("usage", "sync")); !strings.Contains(line, `run "offload consent on"`) {
		t.Fatalf("sync with consent off: %q", line)
	}
	e.must("breakdown", "one") // on-device, consent off
	e.must("consent", "on")
	e.must("breakdown", "two") // cloud: the server counts it too
	if out := e.must("usage", "sync"); out != "breakdown: 2 (sent 2, server 2, 98 remaining)\n" {
		t.Fatalf("sync = %q", out)
	}
	type row struct {
		Feature            string  `json:"feature"`
		Local              int64   `json:"local_count"`
		Mirror             int64   `json:"server_mirror"`
		Displayed          int64   `json:"displayed"`
		Sent               *int64  `json:"sent_count"`
		ServerCount        *int64  `json:"server_count"`
		EffectiveRemaining *int64  `json:"effective_remaining"`
		RequestID          *string `json:"request_id"`
	}
	st := decode[struct{ Features []row }](t, e.must("usage", "--json"))
	if len(st.Features) != 1 || st.Features[0] != (row{Feature: "breakdown", Local: 2, Mirror: 2, Displayed: 2}) {
		t.Fatalf("usage json = %+v", st)
	}
	sy := decode[struct{ Features []row }](t, e.must("usage", "sync", "--json"))
	if f := sy.Features[0]; f.ServerCount == nil || *f.ServerCount != 2 || *f.Sent != 2 || *f.EffectiveRemaining != 98 || f.RequestID == nil {
		t.Fatalf("sync json = %+v", sy)
	}
}

func TestCorruptStateIsOneClearLine(t *testing.T) {
	e := newEnv(t, failingServer(t))
	e.must("usage")
	path := filepath.Join(e.state, "usage.json")
	os.WriteFile(path, []byte("{garbage"), 0o600)
	line := oneLine(t, e.run("breakdown", "anything"))
	if !strings.Contains(line, "corrupt state file "+path) {
		t.Fatalf("stderr = %q", line)
	}
}

func TestDoctorHealthy(t *testing.T) {
	srv := startServer(t, nil)
	e := newEnv(t, srv.URL)
	e.must("consent", "on")
	out := e.must("doctor")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{"state", "reachability", "health", "session", "reconcile", "breakdown"}
	if len(lines) != len(want) {
		t.Fatalf("doctor = %q", out)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "✓ "+want[i]) {
			t.Fatalf("line %d = %q, want ✓ %s", i, l, want[i])
		}
	}
	d := decode[doctorOutput](t, e.must("doctor", "--json"))
	if !d.OK || len(d.Checks) != 6 || d.Server != srv.URL {
		t.Fatalf("doctor json = %+v", d)
	}

	// Consent off: the breakdown check is skipped, which is not a failure.
	e.must("consent", "off")
	out = e.must("doctor")
	if !strings.Contains(out, "- breakdown    skipped: cloud AI is off") || strings.Contains(out, "✗") {
		t.Fatalf("doctor with consent off = %q", out)
	}
	if srv.Upstream.Count() != 2 {
		t.Fatalf("upstream calls = %d, want 2 (none with consent off)", srv.Upstream.Count())
	}
}

func TestDoctorBroken(t *testing.T) {
	brokenHealth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-ID", "req-broken-1")
		w.WriteHeader(500)
		w.Write([]byte(`{"error":{"code":"internal_error","message":"Internal server error","request_id":"req-broken-1"}}`))
	}))
	t.Cleanup(brokenHealth.Close)

	tests := []struct {
		name      string
		server    func(t *testing.T) string
		consent   bool
		corrupt   bool
		wantFail  string // the check that fails
		wantID    string // a request id the ✗ line must show ("*" any)
		wantSkips []string
	}{
		{
			name: "provider failing",
			server: func(t *testing.T) string {
				srv := startServer(t, nil)
				srv.Upstream.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 500} })
				return srv.URL
			},
			consent: true, wantFail: "breakdown", wantID: "*",
		},
		{
			name:   "server errors",
			server: func(*testing.T) string { return brokenHealth.URL },
			// Health and session both fail, and the session failure skips the rest.
			wantFail: "health", wantID: "req-broken-1", wantSkips: []string{"reconcile", "breakdown"},
		},
		{
			name: "session rate limited",
			server: func(t *testing.T) string {
				return startServer(t, map[string]string{"OFFLOAD_SESSION_ISSUE_LIMIT_PER_IP": "1"}).URL
			},
			wantFail: "session", wantID: "*",
		},
		{
			name:     "unreachable",
			server:   deadURL,
			wantFail: "reachability", wantSkips: []string{"health", "session", "reconcile", "breakdown"},
		},
		{
			name:     "corrupt state",
			server:   failingServer,
			corrupt:  true,
			wantFail: "state", wantSkips: []string{"reachability", "health", "session", "reconcile", "breakdown"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.server(t))
			if tt.consent {
				e.must("consent", "on")
			}
			if tt.name == "session rate limited" {
				e.must("session") // uses up the one issue allowed per window
			}
			if tt.corrupt {
				e.must("consent", "status")
				os.WriteFile(filepath.Join(e.state, "consent.json"), []byte("nope"), 0o600)
			}
			r := e.run("doctor")
			if r.code != exitFail || r.stderr != "" {
				t.Fatalf("exit %d stderr %q, want 1 and the report on stdout", r.code, r.stderr)
			}
			var failLine string
			for _, l := range strings.Split(r.stdout, "\n") {
				if strings.HasPrefix(l, "✗ "+tt.wantFail) {
					failLine = l
				}
			}
			if failLine == "" {
				t.Fatalf("no ✗ %s line in %q", tt.wantFail, r.stdout)
			}
			switch tt.wantID {
			case "":
			case "*":
				if !strings.Contains(failLine, "(request id ") {
					t.Fatalf("✗ line without request id: %q", failLine)
				}
			default:
				if !strings.Contains(failLine, "(request id "+tt.wantID+")") {
					t.Fatalf("✗ line %q, want request id %s", failLine, tt.wantID)
				}
			}
			for _, s := range tt.wantSkips {
				if !strings.Contains(r.stdout, "- "+s) {
					t.Fatalf("%s not skipped in %q", s, r.stdout)
				}
			}
			d := decode[doctorOutput](t, e.run("doctor", "--json").stdout)
			if d.OK {
				t.Fatalf("doctor json ok for a broken deployment: %+v", d)
			}
			for _, ck := range d.Checks {
				if ck.Name == tt.wantFail && (ck.OK || ck.Skipped || (tt.wantID != "" && ck.RequestID == "")) {
					t.Fatalf("json check = %+v", ck)
				}
			}
		})
	}
}

func TestPrintTree(t *testing.T) {
	steps := []offload.Step{
		{Title: "Top \x1b[31mred", Substeps: []offload.Step{
			{Title: "Sub", Substeps: []offload.Step{{Title: "Deep\nline", Substeps: []offload.Step{}}}},
		}},
		{Title: "Second", Substeps: []offload.Step{}},
	}
	var b bytes.Buffer
	printTree(&b, steps, "")
	want := "1. Top  [31mred\n   - Sub\n     - Deep line\n2. Second\n"
	if b.String() != want {
		t.Fatalf("tree =\n%q\nwant\n%q", b.String(), want)
	}
}

func TestSpinner(t *testing.T) {
	var b apptest.Buffer
	stop := startSpinner(&b, "asking the cloud", time.Millisecond)
	time.Sleep(20 * time.Millisecond) // let a few frames draw
	stop()
	stop() // idempotent
	out := b.String()
	if !strings.Contains(out, "⠋ asking the cloud…") || !strings.HasSuffix(out, "\r\033[K") {
		t.Fatalf("spinner output = %q", out)
	}
	if isTerminal(&b) {
		t.Fatal("a buffer is not a terminal")
	}
}

func TestNoSpinnerWithBuffers(t *testing.T) {
	srv := startServer(t, nil)
	e := newEnv(t, srv.URL)
	e.must("consent", "on")
	if r := e.run("breakdown", "Tidy the desk"); r.stderr != "" || r.code != 0 {
		t.Fatalf("stderr %q exit %d, want no spinner output", r.stderr, r.code)
	}
}

// FuzzCleanLine: server text printed to the terminal never carries a
// control character (no escape sequences, no line breaks).
func FuzzCleanLine(f *testing.F) {
	for _, s := range []string{"plain", "\x1b[2J", "a\nb\rc", "\u0085\u009b", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range cleanLine(s) {
			if unicode.IsControl(r) {
				t.Fatalf("control character %U left in %q", r, cleanLine(s))
			}
		}
	})
}
