package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload/postgres/pgtest"
)

func TestParsePgFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // error substring; "" for none
	}{
		{nil, ""},
		{[]string{"-c", "8", "-d", "2s", "-rounds", "3", "-client", clientNetHTTP}, ""},
		{[]string{"-c", "0"}, "-c"},
		{[]string{"-d", "500ms"}, "at least 1s"},
		{[]string{"-rounds", "0"}, "-rounds"},
		{[]string{"-client", "curl"}, "-client"},
		{[]string{"extra"}, "unexpected"},
	} {
		_, err := parsePgFlags(tc.args, io.Discard)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestReadPgbenchLog(t *testing.T) {
	var h histogram
	var errs uint64
	if err := readPgbenchLog("testdata/pgbench_log.txt", &h, &errs); err != nil {
		t.Fatal(err)
	}
	if h.n != 4 || errs != 1 {
		t.Fatalf("%d latencies, %d failures; want 4 and 1", h.n, errs)
	}
	if p99 := h.quantile(0.99); p99 < 25*time.Millisecond || p99 > 40*time.Millisecond {
		t.Errorf("p99 %v, want about 31ms", p99)
	}
	if p50 := h.quantile(0.50); p50 < 4*time.Millisecond || p50 > 11*time.Millisecond {
		t.Errorf("p50 %v, want 5-10ms", p50)
	}
}

func TestMedian(t *testing.T) {
	runs := []pgRun{{Side: "pgbench", RPS: 3}, {Side: "offload", RPS: 10}, {Side: "pgbench", RPS: 1}, {Side: "pgbench", RPS: 2}}
	if m := median(runs, "pgbench"); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median(runs, "none"); m != 0 {
		t.Errorf("median of nothing = %v", m)
	}
}

// TestPostgresMode runs `offload-bench postgres` for a moment: both sides
// run, every reconcile is read back, the report is one JSON document.
func TestPostgresMode(t *testing.T) {
	pgtest.Database(t) // skips (or fails in CI) without a server
	if _, err := exec.LookPath("pgbench"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("pgbench is not installed (it comes with PostgreSQL)")
		}
		t.Skip("pgbench is not installed; install PostgreSQL to run this test")
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, []string{"offload-bench", "postgres", "-url", pgtest.AdminURL(), "-c", "4", "-d", "1s", "-warmup", "0",
		"-script", "../../postgres/testdata/reconcile_upsert.sql", "-json"}, &out, &errb)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	var rep pgReport
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("output: %v", err)
	}
	if len(rep.Runs) != 2 || rep.Runs[0].Side != "pgbench" || rep.Runs[1].Side != "offload" {
		t.Fatalf("runs %+v", rep.Runs)
	}
	for _, r := range rep.Runs {
		if r.Requests == 0 || r.RPS <= 0 || r.P99Ms <= 0 || r.Errors != 0 {
			t.Errorf("%s: %+v", r.Side, r)
		}
	}
	if rep.Ratio <= 0 || strings.Contains(rep.Server, "@") {
		t.Errorf("report %+v", rep)
	}
}
