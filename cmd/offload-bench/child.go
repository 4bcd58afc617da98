package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/sqlite"
)

// With -server child every server runs in a process of its own, this same
// binary started again with childEnv naming its role, so that CPU time,
// peak RSS and goroutines are the server's alone, not shared with the load
// generator and the fake upstream (which stay in the bench process).
const childEnv = "OFFLOAD_BENCH_CHILD"

// Child roles.
const (
	roleAPI     = "api"     // the real server, wired by internal/app as cmd/offload-api wires it
	roleFloor   = "floor"   // the one-hop proxy floor
	roleCeiling = "ceiling" // the bare JSON handler
)

// Settings of the floor child, besides the role.
const (
	envFloorUpstream = "OFFLOAD_BENCH_UPSTREAM_URL"
	envFloorCall     = "OFFLOAD_BENCH_UPSTREAM_CALL" // file holding the captured upstream call as JSON
	envFloorConns    = "OFFLOAD_BENCH_FLOOR_CONNS"
)

// childHello is the one line a child writes on stdout once it listens.
type childHello struct {
	URL     string `json:"url,omitempty"`
	Control string `json:"control,omitempty"`
	Error   string `json:"error,omitempty"`
}

// procStats is what a child reports about itself on GET /stats. Peaks are
// since the last POST /reset (which also resets the kernel's VmHWM).
type procStats struct {
	CPUNs          int64  `json:"cpu_ns"` // getrusage(RUSAGE_SELF) user + system
	HWMBytes       uint64 `json:"vm_hwm_bytes"`
	RSSBytes       uint64 `json:"vm_rss_bytes"`
	Goroutines     int    `json:"goroutines"`
	PeakGoroutines int    `json:"peak_goroutines"`
	PeakHeapBytes  uint64 `json:"peak_heap_bytes"`
	Threads        int    `json:"threads"`
	HasStore       bool   `json:"has_store"`
	Commits        uint64 `json:"commits"`
	Writes         uint64 `json:"writes"`
	GOMAXPROCS     int    `json:"gomaxprocs"`
	GOGC           int    `json:"gogc"`
	MemoryLimit    int64  `json:"memory_limit"`
}

// childMain runs a child of the given role; it returns the exit status.
func childMain(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serveChild(ctx, role, os.Getenv, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "offload-bench child:", err)
		return 1
	}
	return 0
}

// serveChild serves role until stdin is closed (the parent's signal, and
// what happens when the parent dies) or ctx ends.
func serveChild(ctx context.Context, role string, getenv func(string) string, stdin io.Reader, stdout io.Writer) (err error) {
	hello := func(h childHello) {
		b, _ := json.Marshal(h)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	defer func() {
		if err != nil {
			hello(childHello{Error: err.Error()})
		}
	}()

	var (
		srv   *http.Server
		a     *app.App
		store *sqlite.Store
	)
	switch role {
	case roleAPI:
		// As cmd/offload-api does, before anything else.
		app.TuneRuntime(getenv)
		cfg, err := config.Load(getenv)
		if err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
		// The access log goes where cmd/offload-api sends it, stderr, which
		// the bench points at /dev/null: the write is part of the cost.
		a, err = app.New(ctx, cfg, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
		if err != nil {
			return err
		}
		defer a.Close()
		store, _ = a.Store().(*sqlite.Store)
		srv = a.HTTPServer("127.0.0.1:0")
	case roleFloor:
		call, err := readCall(getenv(envFloorCall))
		if err != nil {
			return err
		}
		conns, err := strconv.Atoi(getenv(envFloorConns))
		if err != nil || conns < 1 {
			return fmt.Errorf("%s must be a positive number", envFloorConns)
		}
		srv = referenceServer(floorHandler(getenv(envFloorUpstream), call, conns))
	case roleCeiling:
		srv = referenceServer(ceilingHandler())
	default:
		return fmt.Errorf("unknown role %q", role)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return err
	}
	sampler := newPeakSampler(10 * time.Millisecond)
	defer sampler.close()
	ctl := http.NewServeMux()
	ctl.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		st := sampler.stats()
		if store != nil {
			s := store.Stats()
			st.HasStore, st.Commits, st.Writes = true, s.Commits, s.Writes
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	ctl.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		sampler.reset()
		w.WriteHeader(http.StatusNoContent)
	})
	ctl.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	if a != nil && a.MetricsHandler() != nil {
		ctl.Handle("GET /metrics", a.MetricsHandler())
	}
	csrv := &http.Server{Handler: ctl, ReadHeaderTimeout: 5 * time.Second, ErrorLog: discardLog}

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- csrv.Serve(cln) }()
	hello(childHello{URL: "http://" + ln.Addr().String(), Control: "http://" + cln.Addr().String()})

	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	var serveErr error
	select {
	case <-ctx.Done():
	case <-eof:
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(srv.Shutdown(sctx), csrv.Shutdown(sctx))
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(serveErr, err)
	}
	if a != nil {
		err = errors.Join(err, a.Close())
	}
	return err
}

// referenceServer is an http.Server with the API server's limits and
// timeouts around h, so a reference differs from the API by its handler.
func referenceServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:                      h,
		ReadHeaderTimeout:            5 * time.Second,
		ReadTimeout:                  30 * time.Second,
		WriteTimeout:                 2 * time.Minute,
		IdleTimeout:                  120 * time.Second,
		MaxHeaderBytes:               32 << 10,
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     discardLog,
	}
}

// callFile is the captured upstream call as the floor child reads it.
type callFile struct {
	Body   []byte      `json:"body"`
	Header http.Header `json:"header"`
}

func writeCall(path string, c *capturedRequest) error {
	b, err := json.Marshal(callFile{Body: c.body, Header: c.header})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func readCall(path string) (*capturedRequest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envFloorCall, err)
	}
	var c callFile
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", envFloorCall, err)
	}
	return &capturedRequest{body: c.Body, header: c.Header}, nil
}

// peakSampler tracks a child's peak goroutines and heap between resets.
type peakSampler struct {
	goroutines atomic.Int64
	heap       atomic.Uint64
	stop       chan struct{}
	wg         sync.WaitGroup
}

func newPeakSampler(interval time.Duration) *peakSampler {
	p := &peakSampler{stop: make(chan struct{})}
	p.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			p.observe()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	})
	return p
}

var sampledMetrics = []string{heapObjectsMetric, "/sched/goroutines:goroutines"}

func (p *peakSampler) observe() {
	s := make([]metrics.Sample, len(sampledMetrics))
	for i, n := range sampledMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		storeMax(&p.heap, s[0].Value.Uint64())
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		g := int64(s[1].Value.Uint64())
		for {
			cur := p.goroutines.Load()
			if g <= cur || p.goroutines.CompareAndSwap(cur, g) {
				break
			}
		}
	}
}

func storeMax(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// reset starts new peaks. Writing 5 to clear_refs resets VmHWM to the
// current RSS (Linux ≥ 4.0), so the peak RSS is the measured window's.
func (p *peakSampler) reset() {
	p.goroutines.Store(0)
	p.heap.Store(0)
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	p.observe()
}

func (p *peakSampler) stats() procStats {
	p.observe()
	hwm, rss := procStatus()
	gogc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gogc)
	return procStats{
		CPUNs:          int64(processCPU()),
		HWMBytes:       hwm,
		RSSBytes:       rss,
		Goroutines:     runtime.NumGoroutine(),
		PeakGoroutines: int(p.goroutines.Load()),
		PeakHeapBytes:  p.heap.Load(),
		Threads:        procThreads(),
		GOMAXPROCS:     runtime.GOMAXPROCS(0),
		GOGC:           gogc,
		MemoryLimit:    debug.SetMemoryLimit(-1),
	}
}

func (p *peakSampler) close() {
	close(p.stop)
	p.wg.Wait()
}

// child is a running child process, from the parent's side.
type child struct {
	role    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	url     string
	control string
	client  *http.Client
	exited  chan error
}

// startChild starts this binary as a child of role with env (KEY=VALUE
// entries) on top of this process's environment minus its OFFLOAD_*
// variables. Its stderr goes to /dev/null (the API's access log).
func startChild(ctx context.Context, role string, env []string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OFFLOAD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Env = append(cmd.Env, childEnv+"="+role)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{role: role, cmd: cmd, stdin: stdin, exited: make(chan error, 1),
		client: &http.Client{Timeout: 2 * time.Minute}}

	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
		c.exited <- cmd.Wait()
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	var h childHello
	select {
	case l, ok := <-line:
		if !ok {
			err = fmt.Errorf("%s child exited before listening: %v", role, <-c.exited)
		} else if jerr := json.Unmarshal([]byte(l), &h); jerr != nil {
			err = fmt.Errorf("%s child: unexpected output %q", role, l)
		} else if h.Error != "" {
			err = fmt.Errorf("%s child: %s", role, h.Error)
		}
	case <-t.C:
		err = fmt.Errorf("%s child did not listen within 30 s", role)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		c.kill()
		return nil, err
	}
	c.url, c.control = h.URL, h.Control
	return c, nil
}

func (c *child) stats() (procStats, error) {
	var st procStats
	resp, err := c.client.Get(c.control + "/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s child stats: status %d", c.role, resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (c *child) reset() error {
	resp, err := c.client.Post(c.control+"/reset", "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// profile writes a CPU profile of the child over the next d to path.
func (c *child) profile(d time.Duration, path string) error {
	secs := max(1, int(d.Round(time.Second).Seconds()))
	resp, err := c.client.Get(c.control + "/debug/pprof/profile?seconds=" + strconv.Itoa(secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s child profile: status %d", c.role, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// close asks the child to drain and exit (stdin closed), and kills it if
// it has not within 20 s.
func (c *child) close() error {
	_ = c.stdin.Close()
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case err := <-c.exited:
		if err != nil {
			return fmt.Errorf("%s child: %w", c.role, err)
		}
		return nil
	case <-t.C:
		c.kill()
		return fmt.Errorf("%s child did not exit within 20 s; killed", c.role)
	}
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
}
