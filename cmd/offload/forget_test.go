package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-app/offload/client"
)

// eraseFake follows the contract for sessions, reconcile and DELETE
// /v1/usage (the route the server grows in issue 16), keeping counts per
// install id.
type eraseFake struct {
	t       *testing.T
	refuse  bool // answer DELETE with 429 usage_rate_limited
	mu      sync.Mutex
	tokens  map[string]string           // token → install id
	counts  map[string]map[string]int64 // install id → feature → count
	deletes int
}

func newEraseFake(t *testing.T) (*eraseFake, string) {
	f := &eraseFake{t: t, tokens: map[string]string{}, counts: map[string]map[string]int64{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *eraseFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-ID", "req-"+r.Method)
	install := f.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	switch r.Method + " " + r.URL.Path {
	case "POST /v1/sessions/anonymous":
		var in struct {
			InstallID string `json:"install_id"`
		}
		json.Unmarshal(body, &in)
		tok := fmt.Sprintf("tok-%d", len(f.tokens)+1)
		f.tokens[tok] = in.InstallID
		fmt.Fprintf(w, `{"session_token":%q,"expires_at":%q}`, tok, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	case "POST /v1/usage/reconcile":
		var in struct {
			InstallID  string `json:"install_id"`
			Feature    string `json:"feature"`
			LocalCount int64  `json:"local_count"`
		}
		json.Unmarshal(body, &in)
		if install == "" || install != in.InstallID {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"code":"invalid_token","message":"Invalid session token","request_id":"r"}}`)
			return
		}
		if f.counts[install] == nil {
			f.counts[install] = map[string]int64{}
		}
		n := max(f.counts[install][in.Feature], in.LocalCount)
		f.counts[install][in.Feature] = n
		fmt.Fprintf(w, `{"server_count":%d,"effective_remaining":%d,"reconciled_at":%q}`, n, max(0, 100-n), time.Now().UTC().Format(time.RFC3339))
	case "DELETE /v1/usage":
		if install == "" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"code":"invalid_token","message":"Invalid session token","request_id":"r"}}`)
			return
		}
		if len(body) != 0 {
			f.t.Errorf("DELETE /v1/usage with a body: %q", body)
		}
		if f.refuse {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(429)
			fmt.Fprint(w, `{"error":{"code":"usage_rate_limited","message":"Too many usage requests; retry later","request_id":"req-DELETE"}}`)
			return
		}
		f.deletes++
		n := len(f.counts[install])
		delete(f.counts, install)
		fmt.Fprintf(w, `{"deleted":%d,"erased_at":"2026-02-16T12:00:00Z"}`, n)
	default:
		f.t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		w.WriteHeader(404)
	}
}

func (f *eraseFake) installs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.counts)
}

func localFiles(e *env) []string {
	var out []string
	for _, name := range []string{client.InstallIDFile, client.SessionFile, client.UsageFile, client.ConsentFile} {
		if _, err := os.Stat(e.file(name)); err == nil {
			out = append(out, name)
		}
	}
	return out
}

func TestForget(t *testing.T) {
	fake, url := newEraseFake(t)
	e := newEnv(t, url)
	e.must("breakdown", "on-device first")
	e.must("consent", "on")
	e.must("usage", "sync")
	if fake.installs() != 1 {
		t.Fatal("nothing on the fake server to erase")
	}
	out := e.must("forget")
	want := "server: erased this install's usage counts (1 row, at 2026-02-16T12:00:00Z, request id req-DELETE)\n" +
		"removed here: session (session.json), usage counts (usage.json), install id (install_id.json) (in " + e.state + ")\n" +
		"kept: your cloud AI setting (" + filepath.Join(e.state, client.ConsentFile) + ")\n"
	if out != want {
		t.Fatalf("forget =\n%s\nwant\n%s", out, want)
	}
	if fake.installs() != 0 || fake.deletes != 1 {
		t.Fatalf("server kept %d installs after %d deletes", fake.installs(), fake.deletes)
	}
	if got := localFiles(e); len(got) != 1 || got[0] != client.ConsentFile {
		t.Fatalf("files left = %v, want only consent.json", got)
	}
	// Starting again is a new install from zero.
	if out := e.must("usage"); !strings.HasPrefix(out, "breakdown: 0 ") {
		t.Fatalf("usage after forget = %q", out)
	}
	// The new install has no counts on the server; the erase's session and
	// the install id are what is left to remove. In JSON this time.
	got := decode[forgetOutput](t, e.must("forget", "--json"))
	if got.Server != client.ServerErased || got.Erasure == nil || got.Erasure.Deleted != 0 ||
		strings.Join(got.Removed, ",") != client.SessionFile+","+client.InstallIDFile {
		t.Fatalf("forget json = %+v", got)
	}
}

func TestForgetWithoutTheServer(t *testing.T) {
	tests := []struct {
		name    string
		consent bool
		server  func(t *testing.T) string
		args    []string
		detail  string
	}{
		{"consent off", false, failingServer, nil, "cloud AI is off"},
		{"--local", true, failingServer, []string{"--local"}, "--local"},
		{"unreachable", true, deadURL, nil, "cannot reach the server (POST /v1/sessions/anonymous)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.server(t))
			e.must("consent", map[bool]string{true: "on", false: "off"}[tt.consent])
			e.must("usage") // an install id
			os.WriteFile(e.file(client.UsageFile), []byte(`{"version":1,"features":{"breakdown":{"local":2,"mirror":0}}}`), 0o600)
			out := e.must(append([]string{"forget"}, tt.args...)...)
			lines := strings.Split(out, "\n")
			if !strings.HasPrefix(lines[0], "server: its copy (if any) was not touched: "+tt.detail) ||
				lines[1] != "removed here: usage counts (usage.json), install id (install_id.json) (in "+e.state+")" {
				t.Fatalf("forget = %q", out)
			}
			if got := localFiles(e); len(got) != 1 {
				t.Fatalf("files left = %v", got)
			}
		})
	}
}

func TestForgetRefusedRemovesNothing(t *testing.T) {
	fake, url := newEraseFake(t)
	fake.refuse = true
	e := newEnv(t, url)
	e.must("consent", "on")
	e.must("usage", "sync")
	before := localFiles(e)
	line := oneLine(t, e.run("forget"))
	want := `offload: server answered 429 usage_rate_limited: Too many usage requests; retry in 30s (request id req-DELETE); ` +
		`nothing was removed: run "offload forget" again later, or "offload forget --local" to remove only this device's state` + "\n"
	if line != want {
		t.Fatalf("stderr =\n%s\nwant\n%s", line, want)
	}
	if got := localFiles(e); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("files %v, want %v kept", got, before)
	}
}

func TestForgetNothingStored(t *testing.T) {
	e := newEnv(t, failingServer(t))
	out := e.must("forget")
	if out != "server: its copy (if any) was not touched: no install id is stored here\n"+
		"removed here: nothing (no session, usage counts or install id in "+e.state+")\n"+
		"kept: your cloud AI setting ("+e.file(client.ConsentFile)+")\n" {
		t.Fatalf("forget = %q", out)
	}
	if _, err := os.Stat(e.state); err == nil {
		t.Fatal("forget created the state dir")
	}
}

func TestForgetCorruptInstallID(t *testing.T) {
	e := newEnv(t, failingServer(t))
	e.must("consent", "on")
	os.WriteFile(e.file(client.InstallIDFile), []byte("{"), 0o600)
	r := e.run("forget")
	if r.code != 0 || !strings.Contains(r.stderr, "install_id.json is corrupt") || strings.Count(r.stderr, "\n") != 1 ||
		!strings.HasPrefix(r.stdout, "server: its copy (if any) was not touched: the install id could not be read\nremoved here: install id (install_id.json)") {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestForgetRealServer runs against the real handler once the tree has the
// route; until then the fake above stands in for it.
func TestForgetRealServer(t *testing.T) {
	srv := startServer(t, nil)
	probe, err := http.NewRequest(http.MethodDelete, srv.URL+"/v1/usage", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(probe)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 404 || resp.StatusCode == 405 {
		t.Fatalf("the server has no DELETE /v1/usage (%d)", resp.StatusCode)
	}
	e := newEnv(t, srv.URL)
	e.must("consent", "on")
	e.must("breakdown", "Clean the garage") // a cloud count, reconciled
	out := e.must("forget")
	if !strings.HasPrefix(out, "server: erased this install's usage counts (1 row, at ") {
		t.Fatalf("forget = %q", out)
	}
	if got := localFiles(e); len(got) != 1 {
		t.Fatalf("files left = %v", got)
	}
}
