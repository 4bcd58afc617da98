package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/postgres"
)

// pgOptions are the flags of `offload-bench postgres`.
type pgOptions struct {
	adminURL string
	pgbench  string
	script   string
	rounds   int
	writers  int
	maxConns int
	json     bool
	options  // -c, -d, -warmup, -client as for the HTTP runs
}

const pgUsage = `Usage: offload-bench postgres [flags]

Measures issue 12's target side by side on this machine: the reconcile route
of the real server wired on a PostgreSQL usage store, against a plain
single-statement upsert driven by pgbench at the same concurrency on the same
server. Both run on a scratch database that is created on -url's server and
dropped at the end. With -rounds N they alternate N times, so a neighbour's
load hits both alike.

Flags:
`

func parsePgFlags(args []string, stdout io.Writer) (o pgOptions, err error) {
	defer func() {
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			err = &usageError{err.Error()}
		}
	}()
	fs := flag.NewFlagSet("offload-bench postgres", flag.ContinueOnError)
	// Help goes to stdout (exit 0); a mistake is returned (exit 2).
	fs.SetOutput(io.Discard)
	fs.Usage = func() { fmt.Fprint(fs.Output(), pgUsage); fs.PrintDefaults() }
	fs.StringVar(&o.adminURL, "url", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL server, as a URL of a database where the user may CREATE DATABASE")
	fs.StringVar(&o.pgbench, "pgbench", "pgbench", "the pgbench binary (PostgreSQL's; e.g. /usr/lib/postgresql/15/bin/pgbench)")
	fs.StringVar(&o.script, "script", filepath.Join("postgres", "testdata", "reconcile_upsert.sql"), "pgbench script of the baseline")
	fs.IntVar(&o.rounds, "rounds", 1, "alternate pgbench and the server this many times")
	fs.IntVar(&o.writers, "writers", postgres.DefaultWriters, "reconcile groups in flight at once (postgres.WithWriters)")
	fs.IntVar(&o.maxConns, "max-conns", postgres.DefaultMaxConns, "the store's connection pool size (postgres.WithMaxConns)")
	fs.BoolVar(&o.json, "json", false, "print one JSON document instead of the table")
	fs.IntVar(&o.concurrency, "c", 64, "concurrent clients for both (pgbench -c, HTTP keep-alive connections)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration of each run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warmup of each HTTP run (pgbench has none)")
	fs.StringVar(&o.client, "client", clientLean, "HTTP load generator client: "+clientLean+" or "+clientNetHTTP)
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		fs.SetOutput(stdout)
		fs.Usage()
		return o, flag.ErrHelp
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case o.concurrency < 1:
		return o, errors.New("-c must be at least 1")
	case o.duration < time.Second:
		return o, errors.New("-d must be at least 1s (pgbench -T counts whole seconds)")
	case o.warmup < 0:
		return o, errors.New("-warmup must not be negative")
	case o.rounds < 1:
		return o, errors.New("-rounds must be at least 1")
	case o.client != clientLean && o.client != clientNetHTTP:
		return o, fmt.Errorf("-client must be %s or %s", clientLean, clientNetHTTP)
	}
	return o, nil
}

// pgRun is one measured run of either side.
type pgRun struct {
	Side      string   `json:"side"` // "pgbench" or "offload"
	Round     int      `json:"round"`
	Requests  uint64   `json:"requests"`
	Errors    uint64   `json:"errors"`
	RPS       float64  `json:"requests_per_second"`
	P50Ms     float64  `json:"p50_ms"`
	P99Ms     float64  `json:"p99_ms"`
	WritesPer *float64 `json:"writes_per_commit,omitempty"`
	// ClientCPUUs is the CPU per request of what drives PostgreSQL: the
	// pgbench process, or this process (server, load generator, pgx).
	ClientCPUUs float64 `json:"client_cpu_us_per_request,omitempty"`
	// PostgresCPUUs is the CPU per request of the PostgreSQL server's
	// processes (when it runs on this machine). Client plus server CPU per
	// request is the figure a neighbour's load does not move much.
	PostgresCPUUs float64 `json:"postgres_cpu_us_per_request,omitempty"`
	MachineBusy   float64 `json:"machine_cores_busy"`
}

type pgReport struct {
	Date        string  `json:"date"`
	GoVersion   string  `json:"go_version"`
	CPUs        int     `json:"cpus"`
	Server      string  `json:"server"` // redacted
	Concurrency int     `json:"concurrency"`
	DurationMs  int64   `json:"duration_ms"`
	Client      string  `json:"client"`
	Runs        []pgRun `json:"runs"`
	Ratio       float64 `json:"offload_vs_pgbench"` // median offload req/s over median pgbench tps
	Met         bool    `json:"met"`
}

// runPostgres is `offload-bench postgres`.
func runPostgres(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parsePgFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := os.Stat(o.script); err != nil {
		return fmt.Errorf("pgbench script: %w (run from the module root or set -script)", err)
	}
	pgbenchBin, err := exec.LookPath(o.pgbench)
	if err != nil {
		return fmt.Errorf("pgbench not found (%w); install postgresql-client or set -pgbench", err)
	}
	dbURL, drop, err := scratchDatabase(ctx, o.adminURL)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, drop()) }()

	rep := &pgReport{
		Date: time.Now().UTC().Format(time.DateOnly), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		Server: postgres.Redact(dbURL), Concurrency: o.concurrency, DurationMs: o.duration.Milliseconds(), Client: o.client,
	}
	srv, err := startPgServer(ctx, o, dbURL)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.close()) }()

	for round := 1; round <= o.rounds && ctx.Err() == nil; round++ {
		pb, err := runPgbench(ctx, pgbenchBin, o, dbURL)
		if err != nil {
			return err
		}
		pb.Round = round
		rep.Runs = append(rep.Runs, pb)
		ours, err := srv.measure(ctx, o)
		if err != nil {
			return err
		}
		ours.Round = round
		rep.Runs = append(rep.Runs, ours)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rep.Ratio = median(rep.Runs, "offload") / max(median(rep.Runs, "pgbench"), 1e-9)
	rep.Met = rep.Ratio >= 1
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		return err
	}
	for _, r := range rep.Runs {
		if r.Errors > 0 {
			return fmt.Errorf("%s round %d: %d requests failed", r.Side, r.Round, r.Errors)
		}
	}
	return nil
}

func median(runs []pgRun, side string) float64 {
	var v []float64
	for _, r := range runs {
		if r.Side == side {
			v = append(v, r.RPS)
		}
	}
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func (r *pgReport) writeText(w io.Writer) error {
	fmt.Fprintf(w, "offload-bench postgres %s, %s, %d CPUs, %s, -c %d, -d %v, -client %s\n",
		r.Date, r.GoVersion, r.CPUs, r.Server, r.Concurrency, time.Duration(r.DurationMs)*time.Millisecond, r.Client)
	fmt.Fprintln(w, "pgbench, the server, its load generator and PostgreSQL share this machine's cores")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tside\trequests\treq/s\tp50 ms\tp99 ms\terrors\twrites/commit\tclient cpu µs/req\tpostgres cpu µs/req\ttotal\tmachine\t")
	us := func(v float64) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", v)
	}
	for _, run := range r.Runs {
		wpc, total := "-", 0.0
		if run.WritesPer != nil {
			wpc = fmt.Sprintf("%.1f", *run.WritesPer)
		}
		if run.ClientCPUUs > 0 && run.PostgresCPUUs > 0 {
			total = run.ClientCPUUs + run.PostgresCPUUs
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.0f\t%.2f\t%.2f\t%d\t%s\t%s\t%s\t%s\t%.2f\t\n",
			run.Round, run.Side, run.Requests, run.RPS, run.P50Ms, run.P99Ms, run.Errors, wpc,
			us(run.ClientCPUUs), us(run.PostgresCPUUs), us(total), run.MachineBusy)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	mark := "met"
	if !r.Met {
		mark = "MISSED"
	}
	_, err := fmt.Fprintf(w, "\n%s: reconcile route at %.2f× pgbench's plain upsert (median req/s over median tps)\n", mark, r.Ratio)
	return err
}

// scratchDatabase creates a database for this run on adminURL's server and
// returns its URL and a function that drops it.
func scratchDatabase(ctx context.Context, adminURL string) (string, func() error, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", nil, errors.New("-url must be a postgres:// URL")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "offload_bench_" + hex.EncodeToString(b)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s: %w", postgres.Redact(adminURL), err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(cctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create the scratch database: %w", err)
	}
	u.Path = "/" + name
	drop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return fmt.Errorf("drop the scratch database %s: %w", name, err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop the scratch database %s: %w", name, err)
		}
		return nil
	}
	return u.String(), drop, nil
}

var pgbenchTPS = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)

// runPgbench runs the baseline script and reads its per-transaction log
// (-l) for the latency percentiles pgbench 15 does not print.
func runPgbench(ctx context.Context, bin string, o pgOptions, dbURL string) (pgRun, error) {
	dir, err := os.MkdirTemp("", "offload-pgbench-")
	if err != nil {
		return pgRun{}, err
	}
	defer os.RemoveAll(dir)
	busy0, total0 := machineBusy()
	pg0, pgOK := postgresCPU()
	secs := strconv.Itoa(int(o.duration.Round(time.Second).Seconds()))
	cmd := exec.CommandContext(ctx, bin, "-n", "-c", strconv.Itoa(o.concurrency), "-j", "2", "-T", secs,
		"-f", o.script, "-l", "--log-prefix", filepath.Join(dir, "log"), dbURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return pgRun{}, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	busy1, total1 := machineBusy()
	pg1, pgOK1 := postgresCPU()
	m := pgbenchTPS.FindSubmatch(out)
	if m == nil {
		return pgRun{}, fmt.Errorf("pgbench printed no tps line:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	run := pgRun{Side: "pgbench", RPS: tps}
	if total1 > total0 {
		run.MachineBusy = float64(busy1-busy0) / float64(total1-total0) * float64(runtime.NumCPU())
	}
	var h histogram
	logs, _ := filepath.Glob(filepath.Join(dir, "log.*"))
	for _, f := range logs {
		if err := readPgbenchLog(f, &h, &run.Errors); err != nil {
			return pgRun{}, err
		}
	}
	run.Requests = h.n
	run.P50Ms, run.P99Ms = ms(h.quantile(0.50)), ms(h.quantile(0.99))
	if n := float64(h.n + run.Errors); n > 0 {
		ps := cmd.ProcessState
		run.ClientCPUUs = float64((ps.UserTime() + ps.SystemTime()).Microseconds()) / n
		if pgOK && pgOK1 {
			run.PostgresCPUUs = float64((pg1 - pg0).Microseconds()) / n
		}
	}
	return run, nil
}

// readPgbenchLog reads "client_id transaction_no time script_no time_epoch
// time_us" lines; time is the latency in µs, or "failed" for an error.
func readPgbenchLog(path string, h *histogram, errs *uint64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		us, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			*errs++
			continue
		}
		h.record(time.Duration(us) * time.Microsecond)
	}
	return sc.Err()
}

// pgServer is the real server wired on a PostgreSQL store.
type pgServer struct {
	app   *app.App
	store *postgres.Store
	sv    *served
	pl    *planner
	heap  *heapSampler
	tr    *http.Transport
}

func startPgServer(ctx context.Context, o pgOptions, dbURL string) (_ *pgServer, err error) {
	store, err := postgres.Open(ctx, dbURL, postgres.WithWriters(o.writers), postgres.WithMaxConns(o.maxConns))
	if err != nil {
		return nil, err
	}
	env := benchEnv("local", filepath.Join(os.TempDir(), "offload-bench-unused.sqlite3"), "http://127.0.0.1:1")
	limit := strconv.Itoa(limitOutOfTheWay)
	env["OFFLOAD_USAGE_RECONCILE_LIMIT_PER_INSTALL"] = limit
	env["OFFLOAD_USAGE_RECONCILE_LIMIT_PER_IP"] = limit
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("configuration: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	a, err := app.New(ctx, cfg, logger, app.WithUsageStore(store)) // the App closes the store
	if err != nil {
		store.Close()
		return nil, err
	}
	s := &pgServer{app: a, store: store}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.sv, err = serve(a.HTTPServer("127.0.0.1:0")); err != nil {
		return nil, err
	}
	s.tr = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: o.concurrency + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	s.pl = &planner{ctx: ctx, client: &http.Client{Transport: s.tr}, runID: hex.EncodeToString(b)}
	s.heap = startHeapSampler(20 * time.Millisecond)
	return s, nil
}

// measure runs the reconcile route once, on fresh installs, with the
// offload-bench machinery (warmup, histogram, durability read-back).
func (s *pgServer) measure(ctx context.Context, o pgOptions) (pgRun, error) {
	s.pl.runID += "x" // fresh installs every round
	before := s.store.Stats()
	pg0, pgOK := postgresCPU()
	row, err := measure(ctx, o.options, s.pl, epReconcile, s.sv.url, nil, nil, nil, s.heap)
	if err != nil {
		return pgRun{}, fmt.Errorf("reconcile on postgres: %w", err)
	}
	pg1, pgOK1 := postgresCPU()
	s.tr.CloseIdleConnections()
	after := s.store.Stats()
	if row.Durability != nil && !row.Durability.ok() {
		return pgRun{}, errors.New("an acknowledged usage count was not read back")
	}
	run := pgRun{Side: "offload", Requests: row.Requests, Errors: row.Errors, RPS: row.RPS,
		P50Ms: row.P50Ms, P99Ms: row.P99Ms, ClientCPUUs: row.CPUPerRequestUs, MachineBusy: row.MachineCores}
	if c := after.Commits - before.Commits; c > 0 {
		v := float64(after.Writes-before.Writes) / float64(c)
		run.WritesPer = &v
		// Over every reconcile the store did meanwhile (warmup and
		// read-back included), as the CPU was measured over all of them.
		if pgOK && pgOK1 {
			run.PostgresCPUUs = float64((pg1 - pg0).Microseconds()) / float64(after.Writes-before.Writes)
		}
	}
	return run, nil
}

func (s *pgServer) close() error {
	var errs []error
	if s.heap != nil {
		s.heap.close()
	}
	if s.tr != nil {
		s.tr.CloseIdleConnections()
	}
	if s.sv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errs = append(errs, s.sv.srv.Shutdown(ctx))
		if err := <-s.sv.errc; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, s.app.Close())
	return errors.Join(errs...)
}

// postgresCPU is the CPU time used by the PostgreSQL server on this
// machine: every live process named postgres, plus what their reaped
// children used (the postmaster's cutime/cstime), so the backends of
// pgbench's connections, gone by the time it is read, still count. false
// where /proc does not show one.
func postgresCPU() (time.Duration, bool) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	var ticks uint64
	found := false
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		open, close := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
		if open < 0 || close < open || string(b[open+1:close]) != "postgres" {
			continue
		}
		f := strings.Fields(string(b[close+1:]))
		if len(f) < 15 {
			continue
		}
		for _, v := range f[11:15] { // utime, stime, cutime, cstime
			n, _ := strconv.ParseUint(v, 10, 64)
			ticks += n
		}
		found = true
	}
	// USER_HZ is 100 on every Linux this runs on.
	return time.Duration(ticks) * (time.Second / 100), found
}
