package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
)

// shortRun is a run too short to mean anything as a figure; it checks that
// everything is wired and every endpoint works under load.
func shortRun(extra ...string) []string {
	return append([]string{"offload-bench", "-d", "200ms", "-warmup", "0", "-c", "4", "-json", "-limiter-keys", "20000", "-installs", "20"}, extra...)
}

func decodeReport(t *testing.T, out []byte) report {
	t.Helper()
	var rep report
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("output is not one JSON report: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("output holds more than one JSON document:\n%s", out)
	}
	return rep
}

func TestRunMeasuresEveryEndpoint(t *testing.T) {
	for _, client := range []string{clientNetHTTP, clientLean} {
		t.Run(client, func(t *testing.T) { testEveryEndpoint(t, client) })
	}
}

func testEveryEndpoint(t *testing.T, client string) {
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), shortRun("-client", client), &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	rep := decodeReport(t, stdout.Bytes())
	if rep.Client != client {
		t.Errorf("report says client %q, want %q", rep.Client, client)
	}

	for _, ep := range defaultEndpoints() {
		if ep == epLimiter {
			continue
		}
		e := rep.endpoint(ep)
		if e == nil {
			t.Errorf("endpoint %s missing from the report", ep)
			continue
		}
		if e.Requests == 0 || e.Errors != 0 || e.RPS <= 0 {
			t.Errorf("%s: requests=%d errors=%d rps=%v, want requests > 0, no errors (samples %v)",
				ep, e.Requests, e.Errors, e.RPS, e.ErrorSamples)
		}
		if e.VsCeiling == nil || e.CPUVsCeiling == nil || e.CPUPerRequestUs <= 0 {
			t.Errorf("%s: ratio to the ceiling %v, by CPU %v, CPU per request %v: want all measured",
				ep, e.VsCeiling, e.CPUVsCeiling, e.CPUPerRequestUs)
		}
		if e.P50Ms > e.P99Ms || e.P99Ms > e.MaxMs {
			t.Errorf("%s: quantiles out of order: p50 %v p99 %v max %v", ep, e.P50Ms, e.P99Ms, e.MaxMs)
		}
	}
	for ep, installs := range map[string]int{epReconcile: 4, epReconcileHot: 1, epReconcileMany: 20} {
		rec := rep.endpoint(ep)
		if rec == nil || rec.Durability == nil || !rec.Durability.ok() || rec.Durability.Installs != installs {
			t.Errorf("%s durability = %+v, want %d installs read back, none lost", ep, rec, installs)
		}
	}
	rec := rep.endpoint(epReconcile)
	if rec != nil && (rec.ReconcilesPerCommit == nil || *rec.ReconcilesPerCommit < 1) {
		t.Errorf("reconcile writes per commit = %v, want ≥ 1", rec.ReconcilesPerCommit)
	}
	if l := rep.Limiter; l == nil || l.Keys != 20000 || l.LiveKeys != 40000 || l.KeysAfter != 0 {
		t.Errorf("limiter = %+v, want 20000 keys per limiter live, none after eviction", l)
	}
	if rep.PeakHeapBytes == 0 || rep.PeakRSSBytes == 0 {
		t.Errorf("peak heap %d, RSS %d: want both measured", rep.PeakHeapBytes, rep.PeakRSSBytes)
	}
	if !strings.HasPrefix(rep.Summary, "offload-bench ") || strings.Contains(rep.Summary, "\n") {
		t.Errorf("summary %q is not one line", rep.Summary)
	}
}

func TestRunTextTable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"offload-bench", "-d", "100ms", "-warmup", "0", "-c", "2", "-endpoints", "ceiling,health,limiter", "-limiter-keys", "1000"}
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"endpoint", "req/s", "p99 ms", "vs ceiling", "ceiling", "health",
		"limiter memory", "after eviction", "share this machine's cores"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "offload-bench ") {
		t.Errorf("last line %q is not the summary", last)
	}
	if strings.Contains(out, "session") || strings.Contains(out, "reconcile") {
		t.Errorf("endpoints not asked for were run:\n%s", out)
	}
}

// TestRunAgainstTarget loads an already running server (here one wired by
// app with the local provider) and reports what -target cannot measure.
func TestRunAgainstTarget(t *testing.T) {
	env := benchEnv("local", filepath.Join(t.TempDir(), "usage.sqlite3"), "http://127.0.0.1:1/v1")
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)

	var stdout, stderr bytes.Buffer
	args := []string{"offload-bench", "-d", "100ms", "-warmup", "0", "-c", "2", "-json",
		"-target", srv.URL + "/", "-endpoints", "ceiling,health,session,generate,generate-local,reconcile"}
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, stderr.String(), stdout.String())
	}
	rep := decodeReport(t, stdout.Bytes())
	if rep.Mode != "target" || rep.Target != srv.URL {
		t.Errorf("mode %q target %q, want target %s", rep.Mode, rep.Target, srv.URL)
	}
	var got []string
	for _, e := range rep.Endpoints {
		got = append(got, e.Endpoint)
		if e.Requests == 0 || e.Errors != 0 || e.VsCeiling != nil {
			t.Errorf("%s: requests=%d errors=%d vs ceiling %v", e.Endpoint, e.Requests, e.Errors, e.VsCeiling)
		}
	}
	if want := []string{epHealth, epSession, epGenerate, epReconcile}; !slices.Equal(got, want) {
		t.Errorf("measured %v, want %v", got, want)
	}
	var skippedEPs []string
	for _, s := range rep.Skipped {
		skippedEPs = append(skippedEPs, s.Endpoint)
	}
	if want := []string{epCeiling, epGenerateLocal}; !slices.Equal(skippedEPs, want) {
		t.Errorf("skipped %v, want %v", skippedEPs, want)
	}
	if rep.Limiter != nil {
		t.Errorf("limiter ran though not asked for")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(options) bool
	}{
		{"defaults", nil, "", func(o options) bool {
			return o.concurrency == 50 && o.duration.Seconds() == 10 && slices.Equal(o.endpoints, defaultEndpoints()) && !o.json &&
				o.client == clientNetHTTP && o.server == serverInProcess && o.rate == 1000 && o.installs == 10000
		}},
		{"list deduplicated and trimmed", []string{"-endpoints", " generate, reconcile,generate"}, "", func(o options) bool {
			return slices.Equal(o.endpoints, []string{epGenerate, epReconcile})
		}},
		{"unknown endpoint", []string{"-endpoints", "health,bogus"}, `unknown endpoint "bogus"`, nil},
		{"empty list", []string{"-endpoints", " , "}, "-endpoints is empty", nil},
		{"zero concurrency", []string{"-c", "0"}, "-c must be at least 1", nil},
		{"zero duration", []string{"-d", "0s"}, "-d must be positive", nil},
		{"negative warmup", []string{"-warmup", "-1s"}, "-warmup", nil},
		{"negative delay", []string{"-upstream-delay", "-1ms"}, "-upstream-delay", nil},
		{"target not a URL", []string{"-target", "localhost:8080"}, "-target must be", nil},
		{"stray argument", []string{"health"}, "unexpected arguments", nil},
		{"bad flag", []string{"-nope"}, "not defined", nil},
		{"unknown client", []string{"-client", "curl"}, "-client must be", nil},
		{"lean over https", []string{"-client", "lean", "-target", "https://example.test"}, "plain HTTP only", nil},
		{"lean", []string{"-client", "lean"}, "", func(o options) bool { return o.client == clientLean }},
		{"child", []string{"-server", "child", "-server-env", "GOGC=100", "-server-env", "OFFLOAD_METRICS_ADDR=off"}, "", func(o options) bool {
			return o.server == serverChild && slices.Equal(o.serverEnv, []string{"GOGC=100", "OFFLOAD_METRICS_ADDR=off"})
		}},
		{"unknown server", []string{"-server", "docker"}, "-server must be", nil},
		{"runtime env in-process", []string{"-server-env", "GOGC=100"}, "use -server child", nil},
		{"server env without value", []string{"-server-env", "GOGC"}, "KEY=VALUE", nil},
		{"trace with child", []string{"-server", "child", "-trace", "x"}, "this process only", nil},
		{"zero rate", []string{"-rate", "0"}, "-rate must be positive", nil},
		{"zero installs", []string{"-installs", "0"}, "-installs", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(append([]string{"offload-bench"}, tt.args...), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(o) {
				t.Fatalf("parseFlags = %+v, %v", o, err)
			}
		})
	}
}

func TestRunStopsWhenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var stdout bytes.Buffer
	err := run(ctx, []string{"offload-bench", "-d", "10s", "-endpoints", "health"}, &stdout, io.Discard)
	if err == nil {
		t.Fatalf("run with a canceled context returned nil; output:\n%s", stdout.String())
	}
}

func TestVersionHelpAndUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-h"}, {"--help"}, {"postgres", "-h"}} {
		var out, errOut strings.Builder
		if err := run(context.Background(), append([]string{"offload-bench"}, args...), &out, &errOut); err != nil || out.Len() == 0 || errOut.Len() != 0 {
			t.Errorf("%v: err %v, stdout %q, stderr %q", args, err, out.String(), errOut.String())
		}
	}
	for _, args := range [][]string{{"--bogus"}, {"-c", "0"}, {"-endpoints", "nope"}, {"extra"}, {"postgres", "--bogus"}} {
		err := run(context.Background(), append([]string{"offload-bench"}, args...), io.Discard, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error (exit 2)", args, err)
		}
	}
}
