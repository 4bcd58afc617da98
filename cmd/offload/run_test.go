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
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/client"
	"github.com/offload-app/offload/internal/apptest"
	"github.com/offload-app/offload/openai/openaitest"
)

// startServer runs the real server in-process against a fake OpenAI.
func startServer(t *testing.T, env map[string]string, opts ...apptest.Option) *apptest.Server {
	t.Helper()
	vars := map[string]string{"OFFLOAD_BUILD_VERSION": "v-test"}
	for k, v := range env {
		vars[k] = v
	}
	return apptest.Start(t, vars, opts...)
}

// pathCounter wraps the real server and counts requests per method and path.
type pathCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *pathCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if p.n == nil {
			p.n = map[string]int{}
		}
		p.n[r.Method+" "+r.URL.Path]++
		p.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (p *pathCounter) count(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[key]
}

func (p *pathCounter) keys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k := range p.n {
		out = append(out, k)
	}
	return out
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

// hungServer answers health and sessions but never a breakdown (or
// whatever path hang names): the request waits until the client gives up.
// onHang runs when a request starts to hang.
func hungServer(t *testing.T, hang string, onHang func()) string {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == hang:
			if onHang != nil {
				onHang()
			}
			select {
			case <-r.Context().Done():
			case <-release:
			}
		case r.URL.Path == "/v1/sessions/anonymous":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"session_token":"tok-hung","expires_at":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		case r.URL.Path == "/v1/usage/reconcile":
			fmt.Fprintf(w, `{"server_count":1,"effective_remaining":99,"reconciled_at":%q}`, time.Now().UTC().Format(time.RFC3339))
		default:
			fmt.Fprint(w, `{"steps":[{"title":"Cloud step","substeps":[]}],"provider":"fake","latency_ms":1,"usage":{"input_tokens":1,"output_tokens":1}}`)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: hung handlers return, Close can finish
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
	vars   map[string]string // more environment
	tune   func(*cli)        // changes the cli before it runs
}

func newEnv(t *testing.T, server string) *env {
	return &env{t: t, state: filepath.Join(t.TempDir(), "state"), server: server, vars: map[string]string{}}
}

type result struct {
	code           int
	stdout, stderr string
}

func (e *env) getenv(k string) string {
	switch k {
	case envStateDir:
		return e.state
	case envAPIURL:
		return e.server
	}
	return e.vars[k]
}

func (e *env) runCtx(ctx context.Context, args ...string) result {
	e.t.Helper()
	var out, errb bytes.Buffer
	c := newCLI(ctx, e.getenv, &out, &errb)
	if e.tune != nil {
		e.tune(c)
	}
	code := c.main(args)
	return result{code, out.String(), errb.String()}
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runCtx(context.Background(), args...)
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

func (e *env) file(name string) string { return filepath.Join(e.state, name) }

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

// oneLine checks a failure's stderr: exactly one line, starting "offload: ",
// with that prefix once.
func oneLine(t *testing.T, r result) string {
	t.Helper()
	if r.code == 0 || !strings.HasPrefix(r.stderr, "offload: ") || strings.Count(r.stderr, "\n") != 1 ||
		strings.Count(r.stderr, "offload:") != 1 || strings.Contains(r.stderr, "offload client") {
		t.Fatalf("want one error line and a non-zero exit, got exit %d stderr %q", r.code, r.stderr)
	}
	return r.stderr
}

var commands = []string{"health", "session", "consent", "breakdown", "usage", "forget", "doctor", "help"}

func TestHelp(t *testing.T) {
	e := newEnv(t, failingServer(t))
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"--server", "http://x", "-h"}} {
		if out := e.must(args...); !strings.Contains(out, "Commands:") || !strings.Contains(out, "forget [--local]") {
			t.Fatalf("%q: help = %q", args, out)
		}
	}
	for _, cmd := range commands {
		want, _ := commandHelp(cmd)
		for _, args := range [][]string{{cmd, "-h"}, {cmd, "--help"}, {"help", cmd}, {"--json", cmd, "x", "--help"}} {
			out := e.must(args...)
			if !strings.HasPrefix(out, want) || !strings.HasPrefix(out, "Usage: offload "+cmd) || strings.Contains(out, "Commands:") {
				t.Fatalf("%q: help = %q", args, out)
			}
		}
	}
	if out := e.must("breakdown", "-h"); !strings.Contains(out, "--cloud-timeout D") || !strings.Contains(out, "default 20s") {
		t.Fatalf("breakdown help = %q", out)
	}
}

func TestVersion(t *testing.T) {
	e := newEnv(t, failingServer(t))
	for _, args := range [][]string{{"--version"}, {"health", "--version"}, {"--version", "breakdown", "x"}} {
		out := e.must(args...)
		if !strings.HasPrefix(out, "offload ") || strings.Count(out, "\n") != 1 || !strings.Contains(out, "go1.") {
			t.Fatalf("%q: %q", args, out)
		}
	}
	if _, err := os.Stat(e.state); err == nil {
		t.Fatal("--version touched the state")
	}
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t, failingServer(t))
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no command given (see offload --help)"},
		{[]string{"--bogus", "health"}, "flag provided but not defined: -bogus (see offload --help)"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"breakdown"}, "needs the task text (see offload breakdown --help)"},
		{[]string{"breakdown", "x", "-g", "0"}, "granularity must be 1–5"},
		{[]string{"breakdown", "x", "-g", "six"}, "invalid value"},
		{[]string{"breakdown", "x", "--colour"}, "breakdown: flag provided but not defined: -colour"},
		{[]string{"breakdown", "x", "--cloud-timeout", "0"}, "must be positive"},
		{[]string{"breakdown", "x", "--cloud-timeout", "soon"}, "want a duration"},
		{[]string{"consent"}, "consent takes one of on, off, status"},
		{[]string{"consent", "maybe"}, "consent takes one of on, off, status"},
		{[]string{"usage", "reset"}, "usage takes status or sync"},
		{[]string{"health", "now"}, "health takes no arguments"},
		{[]string{"forget", "everything"}, "forget takes no arguments"},
		{[]string{"help", "frobnicate"}, "help takes one command name"},
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

func TestServerURLWithV1GetsAHint(t *testing.T) {
	srv := startServer(t, nil)
	for _, tt := range []struct {
		name, server, flag, want string
	}{
		{"flag", "", srv.URL + "/v1", fmt.Sprintf(`--server %q: the base URL has no /v1 (use %q)`, srv.URL+"/v1", srv.URL)},
		{"env, trailing slash", srv.URL + "/v1/", "", fmt.Sprintf(`OFFLOAD_API_URL %q: the base URL has no /v1 (use %q)`, srv.URL+"/v1/", srv.URL)},
		{"a full route pasted", "", srv.URL + "/api/v1/health", fmt.Sprintf(`(use %q)`, srv.URL+"/api")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.server)
			args := []string{"health"}
			if tt.flag != "" {
				args = append(args, "--server", tt.flag)
			}
			r := e.run(args...)
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if r.code != exitFail || len(lines) != 2 || !strings.HasPrefix(lines[0], "offload: warning: ") ||
				!strings.Contains(lines[0], tt.want) || !strings.Contains(lines[1], "404 not_found") {
				t.Fatalf("exit %d stderr %q", r.code, r.stderr)
			}
		})
	}
	if r := newEnv(t, srv.URL+"/v1x").run("health"); strings.Contains(r.stderr, "/v1 (use") {
		t.Fatalf("hint for a path that is not /v1: %q", r.stderr)
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
	raw, err := os.ReadFile(e.file(client.SessionFile))
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
	// A corrupt session file is replaced, with a warning.
	os.WriteFile(e.file(client.SessionFile), []byte("{garbage"), 0o600)
	r := e.run("session")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "session issued") ||
		r.stderr != "offload: warning: state file "+e.file(client.SessionFile)+" is corrupt: not valid JSON of the expected shape; a new session is issued\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
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
	os.WriteFile(e.file(client.ConsentFile), []byte("{"), 0o600)
	line := oneLine(t, e.run("consent", "status"))
	if !strings.Contains(line, `is corrupt: not valid JSON of the expected shape (run "offload consent on" or "offload consent off" to rewrite it)`) {
		t.Fatalf("corrupt consent: %q", line)
	}
	e.must("consent", "off") // the user's choice rewrites it
}

type fallbackJSON struct {
	Reason            string `json:"reason"`
	Status            int    `json:"status"`
	Code              string `json:"code"`
	RequestID         string `json:"request_id"`
	RetryAfterSeconds int64  `json:"retry_after_seconds"`
	Message           string `json:"message"`
}

type breakdownJSON struct {
	Source    string         `json:"source"`
	Steps     []offload.Step `json:"steps"`
	Provider  string         `json:"provider"`
	Usage     *offload.TokenUsage
	RequestID string        `json:"request_id"`
	Fallback  *fallbackJSON `json:"fallback"`
	Warnings  []string      `json:"warnings"`
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
	if b.Source != "on-device" || len(b.Steps) == 0 || b.Usage != nil || b.Provider != "" || b.Fallback != nil {
		t.Fatalf("json = %+v", b)
	}
	if out := e.must("usage"); out != "breakdown: 2 (local 2, server 0, remaining unknown until a sync)\n" {
		t.Fatalf("usage = %q", out)
	}
}

func TestBreakdownCloud(t *testing.T) {
	srv := startServer(t, nil)
	e := newEnv(t, srv.URL)
	e.must("consent", "on")
	// Flags after the text, repeated, and "--" before text that looks like a flag.
	out := e.must("breakdown", "Write", "the", "report", "-g", "5", "--hint", "due Friday", "--hint", "short", "--template", "t1")
	if !strings.HasPrefix(out, "1. ") || !strings.HasSuffix(out, fmt.Sprintf("source: cloud (openai), %d input + %d output tokens\n",
		openaitest.DefaultPromptTokens, openaitest.DefaultCompletionTokens)) {
		t.Fatalf("output = %q", out)
	}
	b := decode[breakdownJSON](t, e.must("breakdown", "--json", "--", "-not-a-flag"))
	if b.Source != "cloud" || b.Provider != "openai" || len(b.Steps) == 0 || b.Usage == nil ||
		b.Usage.OutputTokens != openaitest.DefaultCompletionTokens || b.RequestID == "" || b.Fallback != nil {
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

// TestBreakdownFallsBack: with consent on, every way the cloud can be
// unavailable or refuse still ends in steps, exit 0, and one stderr line
// that says why with the code, the request id and Retry-After.
func TestBreakdownFallsBack(t *testing.T) {
	long := strings.Repeat("Plan the move. ", 334)[:5000]
	tests := []struct {
		name   string
		server func(t *testing.T) string
		before func(e *env) // runs after consent on
		args   []string     // after "breakdown"
		code   string       // in the source line and on stderr
		want   []string     // more on stderr
	}{
		{
			name: "provider fails (5xx)",
			server: func(t *testing.T) string {
				srv := startServer(t, nil)
				srv.Upstream.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 500} })
				return srv.URL
			},
			code: "provider_request_failed", want: []string{"server answered 502 provider_request_failed", "(request id "},
		},
		{
			name: "provider answers garbage",
			server: func(t *testing.T) string {
				srv := startServer(t, nil)
				srv.Upstream.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Content: "not a plan"} })
				return srv.URL
			},
			code: "provider_invalid_response", want: []string{"server answered 502 provider_invalid_response", "(request id "},
		},
		{
			name: "inference rate limited",
			server: func(t *testing.T) string {
				return startServer(t, map[string]string{"OFFLOAD_AI_INFERENCE_LIMIT_PER_INSTALL": "1"}).URL
			},
			before: func(e *env) { e.must("breakdown", "warm up") },
			code:   "inference_rate_limited", want: []string{"429 inference_rate_limited: Too many AI requests; retry in ", "(request id "},
		},
		{
			name: "quota exceeded",
			server: func(t *testing.T) string {
				return startServer(t, map[string]string{"OFFLOAD_ENFORCE_QUOTA": "true", "OFFLOAD_DEFAULT_FEATURE_QUOTA": "0"}).URL
			},
			code: "quota_exceeded", want: []string{"429 quota_exceeded: AI action limit reached; retry in ", "(request id "},
		},
		{
			name:   "task too large",
			server: func(t *testing.T) string { return startServer(t, nil).URL },
			args:   []string{long},
			code:   "request_too_large", want: []string{"413 request_too_large", "(request id "},
		},
		{
			name:   "validation (422)",
			server: func(t *testing.T) string { return startServer(t, nil).URL },
			args:   []string{"--hint", strings.Repeat("h", 281)},
			code:   "validation_error", want: []string{"422 validation_error", "(request id "},
		},
		{
			name: "401 after the refresh",
			server: func(t *testing.T) string {
				return startServer(t, nil, apptest.WithWrap(func(h http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						if r.URL.Path == "/v1/ai/breakdown/generate" {
							r.Header.Set("Authorization", "Bearer not-a-token")
						}
						h.ServeHTTP(w, r)
					})
				})).URL
			},
			code: "invalid_token", want: []string{"401 invalid_token", "(request id "},
		},
		{
			name: "no session to be had",
			server: func(t *testing.T) string {
				return startServer(t, map[string]string{"OFFLOAD_SESSION_ISSUE_LIMIT_PER_INSTALL": "1"}).URL
			},
			before: func(e *env) { e.must("session"); os.Remove(e.file(client.SessionFile)) },
			code:   "session_rate_limited", want: []string{"429 session_rate_limited", "retry in ", "(request id "},
		},
		{
			name:   "unreachable",
			server: deadURL,
			code:   "unreachable", want: []string{"cannot reach the server (POST /v1/sessions/anonymous)"},
		},
		{
			name:   "hung server, cloud timeout",
			server: func(t *testing.T) string { return hungServer(t, "/v1/ai/breakdown/generate", nil) },
			args:   []string{"--cloud-timeout", "300ms"},
			code:   "timeout", want: []string{"no answer from the server within 300ms (POST /v1/ai/breakdown/generate)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.server(t))
			e.must("consent", "on")
			if tt.before != nil {
				tt.before(e)
			}
			args := append([]string{"breakdown", "Clean the garage"}, tt.args...)
			r := e.run(args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "1. ") || !strings.HasSuffix(r.stdout, "\nsource: on-device (cloud not used: "+tt.code+")\n") {
				t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "offload: cloud not used: ") || !strings.HasSuffix(r.stderr, "; the steps were made on this device\n") ||
				strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "Clean the garage") || strings.Count(r.stderr, "retry") > 1 {
				t.Fatalf("stderr = %q", r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Fatalf("stderr %q lacks %q", r.stderr, w)
				}
			}
			if out := e.must("usage", "--json"); !strings.Contains(out, `"local_count": `) {
				t.Fatalf("usage = %q", out)
			}
		})
	}
}

// quotaServer answers every breakdown with the contract's quota refusal.
func quotaServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-ID", "req-quota-1")
		switch r.URL.Path {
		case "/v1/sessions/anonymous":
			fmt.Fprintf(w, `{"session_token":"tok-q","expires_at":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		default:
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(429)
			fmt.Fprint(w, `{"error":{"code":"quota_exceeded","message":"AI action limit reached","request_id":"req-quota-1"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestBreakdownQuotaAgainstFake(t *testing.T) {
	e := newEnv(t, quotaServer(t))
	e.must("consent", "on")
	r := e.run("breakdown", "Clean the garage")
	if r.code != 0 || !strings.HasSuffix(r.stdout, "source: on-device (cloud not used: quota_exceeded)\n") ||
		r.stderr != "offload: cloud not used: server answered 429 quota_exceeded: AI action limit reached; retry in 1h0m0s (request id req-quota-1); the steps were made on this device\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	b := decode[breakdownJSON](t, e.run("breakdown", "--json", "Clean the garage").stdout)
	want := fallbackJSON{Reason: "quota_exceeded", Status: 429, Code: "quota_exceeded", RequestID: "req-quota-1", RetryAfterSeconds: 3600,
		Message: "server answered 429 quota_exceeded: AI action limit reached; retry in 1h0m0s (request id req-quota-1)"}
	if b.Source != "on-device" || len(b.Steps) == 0 || b.Fallback == nil || *b.Fallback != want || b.RequestID != "req-quota-1" {
		t.Fatalf("json = %+v %+v", b, b.Fallback)
	}
}

// TestBreakdownLocalStateProblems: state that cannot be used is a warning,
// and the plan is still shown.
func TestBreakdownLocalStateProblems(t *testing.T) {
	srv := startServer(t, nil)
	tests := []struct {
		name     string
		consent  bool
		server   string
		spoil    func(e *env)
		source   string // the source line's start
		warnings []string
	}{
		{
			name: "corrupt session.json", consent: true, server: srv.URL,
			spoil:    func(e *env) { os.WriteFile(e.file(client.SessionFile), []byte("{tok-SECRET"), 0o600) },
			source:   "source: cloud (openai)",
			warnings: []string{"session.json is corrupt: not valid JSON of the expected shape; a new session is issued"},
		},
		{
			name: "corrupt consent.json", consent: true, server: failingServer(t),
			spoil:    func(e *env) { os.WriteFile(e.file(client.ConsentFile), []byte("nope"), 0o600) },
			source:   "source: on-device (cloud not used: consent_unreadable)",
			warnings: []string{`consent.json is corrupt: not valid JSON of the expected shape; cloud AI is treated as off (run "offload consent on" or "offload consent off" to rewrite it)`},
		},
		{
			name: "corrupt usage.json", consent: false, server: failingServer(t),
			spoil:    func(e *env) { os.WriteFile(e.file(client.UsageFile), []byte("{"), 0o600) },
			source:   "source: on-device",
			warnings: []string{"usage.json is corrupt: not valid JSON of the expected shape; this breakdown was not counted (fix or remove the file)"},
		},
		{
			name: "corrupt install_id.json", consent: true, server: srv.URL,
			spoil: func(e *env) {
				os.WriteFile(e.file(client.InstallIDFile), []byte(`{"version":1,"install_id":"x"}`), 0o600)
			},
			source:   "source: cloud (openai)",
			warnings: []string{`install_id.json is corrupt: install_id missing or malformed (fix it, or run "offload forget --local" to start as a new install); this run uses a temporary install id and saves nothing`},
		},
		{
			name: "state dir cannot be created", server: failingServer(t),
			spoil: func(e *env) {
				parent := filepath.Join(e.t.TempDir(), "a-file")
				os.WriteFile(parent, nil, 0o600)
				e.state = filepath.Join(parent, "state")
			},
			source:   "source: on-device",
			warnings: []string{"create state dir: mkdir ", "not a directory; this run uses a temporary install id and saves nothing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.server)
			e.must("consent", map[bool]string{true: "on", false: "off"}[tt.consent])
			tt.spoil(e)
			r := e.run("breakdown", "Clean the garage")
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			if r.code != 0 || !strings.HasPrefix(r.stdout, "1. ") || !strings.HasPrefix(lines[len(lines)-1], tt.source) {
				t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "offload: warning: ") || strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "SECRET") {
				t.Fatalf("stderr = %q, want one warning", r.stderr)
			}
			for _, w := range tt.warnings {
				if !strings.Contains(r.stderr, w) {
					t.Fatalf("stderr %q lacks %q", r.stderr, w)
				}
			}
		})
	}
}

func TestBreakdownInterrupted(t *testing.T) {
	for _, tt := range []struct {
		name  string
		cause error
		want  int
	}{
		{"ctrl-c", interrupted{os.Interrupt}, 130},
		{"sigterm", interrupted{syscall.SIGTERM}, 143},
		{"plain cancel", nil, 130},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			e := newEnv(t, hungServer(t, "/v1/ai/breakdown/generate", func() { cancel(tt.cause) }))
			e.must("consent", "on")
			r := e.runCtx(ctx, "breakdown", "Clean the garage")
			if r.code != tt.want || r.stderr != "offload: interrupted\n" || r.stdout != "" {
				t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			if out := e.must("usage"); !strings.HasPrefix(out, "breakdown: 0 ") {
				t.Fatalf("an interrupted breakdown was counted: %q", out)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	srv := startServer(t, nil)
	e := newEnv(t, srv.URL)
	if out := e.must("usage", "status"); out != "breakdown: 0 (local 0, server 0, remaining unknown until a sync)\n" {
		t.Fatalf("usage = %q", out)
	}
	if line := oneLine(t, e.run("usage", "sync")); !strings.Contains(line, `run "offload consent on"`) {
		t.Fatalf("sync with consent off: %q", line)
	}
	e.must("breakdown", "one") // on-device, consent off
	e.must("consent", "on")
	e.must("breakdown", "two") // cloud: the server counts it, and the counts are reconciled
	if out := e.must("usage", "sync"); out != "breakdown: 2 (sent 2, server 2, 98 remaining)\n" {
		t.Fatalf("sync = %q", out)
	}
	type row struct {
		Feature            string     `json:"feature"`
		Local              int64      `json:"local_count"`
		Mirror             int64      `json:"server_mirror"`
		Displayed          int64      `json:"displayed"`
		EffectiveRemaining *int64     `json:"effective_remaining"`
		SyncedAt           *time.Time `json:"synced_at"`
		Sent               *int64     `json:"sent_count"`
		ServerCount        *int64     `json:"server_count"`
		RequestID          *string    `json:"request_id"`
	}
	st := decode[struct{ Features []row }](t, e.must("usage", "--json"))
	if f := st.Features; len(f) != 1 || f[0].Local != 2 || f[0].Mirror != 2 || f[0].Displayed != 2 || f[0].EffectiveRemaining == nil ||
		*f[0].EffectiveRemaining != 98 || f[0].SyncedAt == nil || f[0].Sent != nil || f[0].ServerCount != nil {
		t.Fatalf("usage json = %+v", st)
	}
	sy := decode[struct{ Features []row }](t, e.must("usage", "sync", "--json"))
	if f := sy.Features[0]; f.ServerCount == nil || *f.ServerCount != 2 || *f.Sent != 2 || *f.EffectiveRemaining != 98 || f.RequestID == nil {
		t.Fatalf("sync json = %+v", sy)
	}
}

// TestAutoReconcile: a cloud breakdown reconciles the pending counts itself,
// once per run, and "offload usage" then shows the effective remaining.
func TestAutoReconcile(t *testing.T) {
	var seen pathCounter
	srv := startServer(t, nil, apptest.WithWrap(seen.wrap))
	e := newEnv(t, srv.URL)
	e.must("breakdown", "one") // on-device
	e.must("breakdown", "two")
	e.must("consent", "on")
	e.must("breakdown", "three") // cloud, then a reconcile of 3
	if n := seen.count("POST /v1/usage/reconcile"); n != 1 {
		t.Fatalf("reconciles = %d, want 1", n)
	}
	if out := e.must("usage"); out != "breakdown: 3 (local 3, server 3, 97 remaining)\n" {
		t.Fatalf("usage = %q", out)
	}
	// A breakdown that falls back does not reconcile.
	srv.Upstream.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 500} })
	e.run("breakdown", "four")
	if n := seen.count("POST /v1/usage/reconcile"); n != 1 {
		t.Fatalf("reconciles = %d after a fallback, want still 1", n)
	}
	if out := e.must("usage"); out != "breakdown: 4 (local 4, server 3, 96 remaining)\n" {
		t.Fatalf("usage = %q", out)
	}
}

func TestAutoReconcileIsBounded(t *testing.T) {
	e := newEnv(t, hungServer(t, "/v1/usage/reconcile", nil))
	e.must("consent", "on")
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		c := newCLI(context.Background(), e.getenv, &out, &errb)
		c.syncTimeout = 200 * time.Millisecond
		done <- result{c.main([]string{"breakdown", "Clean the garage"}), out.String(), errb.String()}
	}()
	select {
	case r := <-done:
		if r.code != 0 || !strings.HasSuffix(r.stdout, "source: cloud (fake), 1 input + 1 output tokens\n") || r.stderr != "" {
			t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the breakdown waited for a hung reconcile")
	}
	if out := e.must("usage"); out != "breakdown: 1 (local 1, server 0, remaining unknown until a sync)\n" {
		t.Fatalf("usage = %q", out)
	}
}

func TestCorruptStateIsOneClearLine(t *testing.T) {
	e := newEnv(t, failingServer(t))
	e.must("usage")
	path := e.file(client.UsageFile)
	os.WriteFile(path, []byte("{garbage"), 0o600)
	line := oneLine(t, e.run("usage"))
	if line != "offload: state file "+path+" is corrupt: not valid JSON of the expected shape (fix or remove the file)\n" {
		t.Fatalf("stderr = %q", line)
	}
}

func TestDoctorHealthy(t *testing.T) {
	var seen pathCounter
	srv := startServer(t, map[string]string{"OFFLOAD_SESSION_ISSUE_LIMIT_PER_INSTALL": "2"}, apptest.WithWrap(seen.wrap))
	e := newEnv(t, srv.URL)
	e.must("consent", "on")
	// Five runs in a minute: one session, reused, not five.
	var out string
	for range 5 {
		out = e.must("doctor")
	}
	if n := seen.count("POST /v1/sessions/anonymous"); n != 1 {
		t.Fatalf("sessions issued = %d, want 1", n)
	}
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
	if !strings.Contains(lines[0], e.state+": install_id.json ok, consent.json cloud AI on, session.json valid until ") ||
		!strings.Contains(lines[3], "reused, expires ") {
		t.Fatalf("doctor = %q", out)
	}
	d := decode[doctorOutput](t, e.must("doctor", "--json"))
	if !d.OK || len(d.Checks) != 6 || d.Server != srv.URL || d.Note != "" || len(d.Checks[0].Files) != 4 {
		t.Fatalf("doctor json = %+v", d)
	}
	for _, f := range d.Checks[0].Files {
		if !f.OK || f.Status == "" {
			t.Fatalf("file check = %+v", f)
		}
	}
}

func TestDoctorConsentOffSendsOnlyHealth(t *testing.T) {
	var seen pathCounter
	srv := startServer(t, nil, apptest.WithWrap(seen.wrap))
	e := newEnv(t, srv.URL)
	out := e.must("doctor")
	want := []string{
		"✓ state        " + e.state + ": install_id.json absent, consent.json absent (cloud AI off), session.json absent, usage.json absent",
		"✓ reachability " + srv.URL,
		"✓ health       " + offload.ServiceName + " v-test (development)",
		"- session      skipped: cloud AI is off",
		"- reconcile    skipped: cloud AI is off",
		"- breakdown    skipped: cloud AI is off",
		"note: " + fullCheckNote,
	}
	if out != strings.Join(want, "\n")+"\n" {
		t.Fatalf("doctor =\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
	if _, err := os.Stat(e.state); err == nil {
		t.Fatal("doctor with consent off created the state")
	}
	e.must("consent", "off")
	d := decode[doctorOutput](t, e.must("doctor", "--json"))
	if !d.OK || !strings.Contains(d.Note, `run "offload consent on", then "offload doctor"`) {
		t.Fatalf("doctor json = %+v", d)
	}
	if keys := seen.keys(); len(keys) != 1 || keys[0] != "GET /v1/health" || srv.Upstream.Count() != 0 {
		t.Fatalf("requests = %v, upstream %d; want only health", keys, srv.Upstream.Count())
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
		spoil     func(e *env)
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
			consent: true, wantFail: "health", wantID: "req-broken-1", wantSkips: []string{"reconcile", "breakdown"},
		},
		{
			name: "session rate limited",
			server: func(t *testing.T) string {
				return startServer(t, map[string]string{"OFFLOAD_SESSION_ISSUE_LIMIT_PER_IP": "1"}).URL
			},
			consent: true,
			spoil:   func(e *env) { e.must("session"); os.Remove(e.file(client.SessionFile)) },
			// The one issue allowed per window is used up.
			wantFail: "session", wantID: "*", wantSkips: []string{"reconcile", "breakdown"},
		},
		{
			name:     "unreachable",
			server:   deadURL,
			consent:  true,
			wantFail: "reachability", wantSkips: []string{"health", "session", "reconcile", "breakdown"},
		},
		{
			name:    "corrupt consent",
			server:  func(t *testing.T) string { return startServer(t, nil).URL },
			consent: true,
			spoil:   func(e *env) { os.WriteFile(e.file(client.ConsentFile), []byte("nope"), 0o600) },
			// Treated as off: the health check still runs.
			wantFail: "state", wantSkips: []string{"session", "reconcile", "breakdown"},
		},
		{
			name:     "corrupt usage",
			server:   func(t *testing.T) string { return startServer(t, nil).URL },
			consent:  true,
			spoil:    func(e *env) { os.WriteFile(e.file(client.UsageFile), []byte("nope"), 0o600) },
			wantFail: "state",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.server(t))
			if tt.consent {
				e.must("consent", "on")
			}
			if tt.spoil != nil {
				tt.spoil(e)
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

// Buffers are not terminals: no escape sequence in any output.
func TestPlainOutputWithoutATerminal(t *testing.T) {
	srv := startServer(t, nil)
	e := newEnv(t, srv.URL)
	e.must("consent", "on")
	for _, args := range [][]string{{"doctor"}, {"breakdown", "Tidy the desk"}, {"usage"}, {"--server", deadURL(t), "breakdown", "x"}} {
		r := e.run(args...)
		if strings.ContainsRune(r.stdout+r.stderr, '\x1b') || strings.Contains(r.stderr, "asking the cloud") {
			t.Fatalf("%q: stdout %q stderr %q", args, r.stdout, r.stderr)
		}
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
