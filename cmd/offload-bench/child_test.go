package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary be its own server child, as the bench
// binary is with -server child.
func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(childMain(role))
	}
	os.Exit(m.Run())
}

// TestRunChildServers runs each server in a child process and checks that
// the server's own figures and the ratios to the floor are reported.
func TestRunChildServers(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := shortRun("-server", "child", "-client", clientLean, "-endpoints", "ceiling,floor,generate,reconcile-hot",
		"-server-env", "GOGC=150")
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	rep := decodeReport(t, stdout.Bytes())
	if rep.Mode != serverChild || rep.UpstreamRequestBytes == 0 {
		t.Errorf("mode %q, upstream request %d bytes: want child, > 0", rep.Mode, rep.UpstreamRequestBytes)
	}
	for _, ep := range []string{epCeiling, epFloor, epGenerate, epReconcileHot} {
		e := rep.endpoint(ep)
		if e == nil {
			t.Errorf("%s missing", ep)
			continue
		}
		if e.Requests == 0 || e.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors (%v)", ep, e.Requests, e.Errors, e.ErrorSamples)
		}
		s := e.Server
		if s == nil || s.CPUPerRequestUs <= 0 || s.PeakRSSBytes == 0 || s.PeakGoroutines == 0 || s.Threads == 0 {
			t.Errorf("%s: server figures %+v, want CPU, RSS, goroutines and threads measured", ep, s)
		}
		if e.UpstreamNewConnsPerSec == nil {
			t.Errorf("%s: upstream connections not counted", ep)
		}
	}
	g := rep.endpoint(epGenerate)
	if g == nil || g.VsFloor == nil || g.CPUVsFloor == nil {
		t.Fatalf("generate: no ratio to the floor: %+v", g)
	}
	if g.Server.GOGC != 150 {
		t.Errorf("API child GOGC = %d, want 150 from -server-env", g.Server.GOGC)
	}
	if f := rep.endpoint(epFloor); f != nil && f.Server != nil && f.Server.GOGC != 100 {
		t.Errorf("floor child GOGC = %d, want Go's default 100 (-server-env is the API's)", f.Server.GOGC)
	}
	if !strings.Contains(strings.Join(rep.ServerEnv, " "), "OFFLOAD_AI_MAX_IN_FLIGHT=") {
		t.Errorf("server env %v does not say the admission bound", rep.ServerEnv)
	}
}

// TestRunOverhead runs both overhead measurements in-process.
func TestRunOverhead(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"offload-bench", "-d", "300ms", "-warmup", "50ms", "-json", "-client", clientLean,
		"-endpoints", "overhead,overhead-open", "-rate", "200", "-upstream-delay", "5ms"}
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	rep := decodeReport(t, stdout.Bytes())
	if len(rep.Overhead) != 2 {
		t.Fatalf("%d overhead results, want 2", len(rep.Overhead))
	}
	for _, o := range rep.Overhead {
		for name, s := range map[string]latencySummary{"direct": o.Direct, "floor": o.Floor, "server": o.Server} {
			if s.Requests == 0 || s.Errors != 0 {
				t.Errorf("%s %s: %d requests, %d errors", o.Endpoint, name, s.Requests, s.Errors)
			}
			// Every request waits for the 5 ms upstream.
			if s.P50Ms < 5 || s.P50Ms > s.P99Ms || s.P99Ms > s.MaxMs {
				t.Errorf("%s %s: p50 %v p99 %v max %v, want 5 ms ≤ p50 ≤ p99 ≤ max", o.Endpoint, name, s.P50Ms, s.P99Ms, s.MaxMs)
			}
		}
		if o.OverheadP50Ms != o.Server.P50Ms-o.Direct.P50Ms {
			t.Errorf("%s: overhead p50 %v is not server minus direct", o.Endpoint, o.OverheadP50Ms)
		}
	}
	open := rep.Overhead[1]
	// 200 req/s for 300 ms is 60 scheduled requests per target.
	if open.Endpoint != epOverheadOpen || open.Server.Requests < 55 || open.Server.Requests > 65 {
		t.Errorf("open loop: %s sent %d requests, want about 60", open.Endpoint, open.Server.Requests)
	}
}

// TestFakeUpstreamCountsConnections checks the count the report's "new
// upstream connections" comes from, and the capture of the first request.
func TestFakeUpstreamCountsConnections(t *testing.T) {
	up, err := startUpstream(0)
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	post := func(c *http.Client, body string) {
		t.Helper()
		resp, err := c.Post(up.URL+"/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, up.body) {
			t.Fatalf("status %d body %q", resp.StatusCode, b)
		}
	}
	keepAlive := &http.Client{Transport: &http.Transport{}}
	for i := range 5 {
		post(keepAlive, "first"+strings.Repeat("x", i))
	}
	if n := up.newConns(); n != 1 {
		t.Errorf("5 keep-alive requests: %d connections, want 1", n)
	}
	noKeepAlive := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for range 3 {
		post(noKeepAlive, "again")
	}
	if n := up.newConns(); n != 4 {
		t.Errorf("then 3 requests without keep-alive: %d connections, want 4", n)
	}
	if c := up.request(); c == nil || string(c.body) != "first" {
		t.Errorf("captured %+v, want the first request", c)
	}
}

// TestFloorHandler checks that the floor sends the captured call and
// returns the upstream's answer unchanged.
func TestFloorHandler(t *testing.T) {
	call := &capturedRequest{body: []byte(`{"model":"m","messages":[]}`), header: http.Header{
		"Authorization": {"Bearer k"}, "Content-Type": {"application/json"}, "X-Stainless-Lang": {"go"},
	}}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/chat/completions" || !bytes.Equal(b, call.body) || r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"answer":1}`)
	}))
	defer upstream.Close()
	floor := httptest.NewServer(floorHandler(upstream.URL+"/v1", call, 4))
	defer floor.Close()
	ctx := t.Context()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, floor.URL+"/v1/ai/breakdown/generate", strings.NewReader(benchInput))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(b) != `{"answer":1}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("floor answered %d %q (%s)", resp.StatusCode, b, resp.Header.Get("Content-Type"))
	}
}
