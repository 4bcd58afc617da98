package main

// Tests that run the test binary itself as the CLI: in a pseudo-terminal
// (spinner, colour, Ctrl-C), under a real signal, and as another user.

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/offload-app/offload/client"
	"github.com/offload-app/offload/mock"
)

const envAsCLI = "OFFLOAD_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(envAsCLI) == "1" {
		main() // exits
	}
	os.Exit(m.Run())
}

// processWait bounds every wait on a child process.
const processWait = 20 * time.Second

// cliCommand is the test binary run as "offload args…" for e's state and
// server, with extra environment.
func cliCommand(t *testing.T, bin string, e *env, extra map[string]string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{envAsCLI + "=1", envStateDir + "=" + e.state, envAPIURL + "=" + e.server, "PATH=" + os.Getenv("PATH")}
	for k, v := range extra {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

func testBinary(t *testing.T) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("needs Unix signals and pseudo-terminals")
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// exitCode waits for cmd, bounded.
func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode()
	case <-time.After(processWait):
		cmd.Process.Kill()
		t.Fatalf("offload did not exit within %s", processWait)
		return -1
	}
}

// terminal is a child's pseudo-terminal: everything it printed, and a
// signal on each new chunk.
type terminal struct {
	tty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	more chan struct{}
}

func startInTerminal(t *testing.T, cmd *exec.Cmd) *terminal {
	t.Helper()
	if !slices.ContainsFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "TERM=") }) {
		cmd.Env = append(cmd.Env, "TERM=xterm-256color")
	}
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	term := &terminal{tty: tty, more: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			select {
			case term.more <- struct{}{}:
			default:
			}
			if err != nil { // EIO once the child has exited
				return
			}
		}
	}()
	return term
}

func (term *terminal) String() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// waitFor waits until the output contains s, bounded.
func (term *terminal) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(processWait)
	for !strings.Contains(term.String(), s) {
		select {
		case <-term.more:
		case <-deadline:
			t.Fatalf("no %q within %s; output %q", s, processWait, term.String())
		}
	}
}

// drained waits until the child has exited and its output is read.
func (term *terminal) drained(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	code := exitCode(t, cmd)
	// The reader ends on EIO after the exit; the last chunk may be in flight.
	deadline := time.After(processWait)
	for {
		select {
		case <-term.more:
			continue
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
		}
		return code, term.String()
	}
}

func TestCtrlCInATerminal(t *testing.T) {
	bin := testBinary(t)
	e := newEnv(t, hungServer(t, "/v1/ai/breakdown/generate", nil))
	e.must("consent", "on")
	cmd := cliCommand(t, bin, e, nil, "breakdown", "Clean the garage")
	term := startInTerminal(t, cmd)
	term.waitFor(t, "asking the cloud… 0s")
	if _, err := term.tty.Write([]byte{0x03}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	code, out := term.drained(t, cmd)
	if code != 130 || !strings.Contains(out, "\r\x1b[Koffload: interrupted\r\n") || strings.Contains(out, "source:") || strings.Contains(out, "cannot reach") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

func TestSpinnerCountsSecondsThenFallsBack(t *testing.T) {
	bin := testBinary(t)
	e := newEnv(t, hungServer(t, "/v1/ai/breakdown/generate", nil))
	e.must("consent", "on")
	cmd := cliCommand(t, bin, e, nil, "breakdown", "Clean the garage", "--cloud-timeout", "1500ms")
	term := startInTerminal(t, cmd)
	term.waitFor(t, "asking the cloud… 1s")
	code, out := term.drained(t, cmd)
	if code != 0 || !strings.Contains(out, "\r\x1b[Koffload: cloud not used: no answer from the server within 1.5s") ||
		!strings.Contains(out, "1. ") || !strings.Contains(out, "source: on-device (cloud not used: timeout)") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

func TestTerminalColourAndNoColor(t *testing.T) {
	bin := testBinary(t)
	srv := startServer(t, nil)
	for _, tt := range []struct {
		name  string
		extra map[string]string
		color bool
	}{
		{"terminal", nil, true},
		{"NO_COLOR", map[string]string{envNoColor: "1"}, false},
		{"TERM=dumb", map[string]string{"TERM": "dumb"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, srv.URL)
			cmd := cliCommand(t, bin, e, tt.extra, "doctor")
			term := startInTerminal(t, cmd)
			code, out := term.drained(t, cmd)
			if code != 0 || !strings.Contains(out, "health") {
				t.Fatalf("exit %d, output %q", code, out)
			}
			if has := strings.Contains(out, "\x1b[32m✓\x1b[0m"); has != tt.color || (!tt.color && strings.ContainsRune(out, '\x1b')) {
				t.Fatalf("colour %v, output %q", has, out)
			}
		})
	}
	t.Run("NO_COLOR: no spinner", func(t *testing.T) {
		e := newEnv(t, hungServer(t, "/v1/ai/breakdown/generate", nil))
		e.must("consent", "on")
		cmd := cliCommand(t, bin, e, map[string]string{envNoColor: "1"}, "breakdown", "Clean the garage", "--cloud-timeout", "300ms")
		term := startInTerminal(t, cmd)
		code, out := term.drained(t, cmd)
		if code != 0 || strings.Contains(out, "asking the cloud") || strings.ContainsRune(out, '\x1b') ||
			!strings.Contains(out, "offload: cloud not used: no answer from the server within 300ms") {
			t.Fatalf("exit %d, output %q", code, out)
		}
	})
}

// A real SIGTERM to the process: the same clean stop, as 128+15.
func TestSignalledProcess(t *testing.T) {
	bin := testBinary(t)
	hanging := make(chan struct{}, 1)
	e := newEnv(t, hungServer(t, "/v1/ai/breakdown/generate", func() { hanging <- struct{}{} }))
	e.must("consent", "on")
	cmd := cliCommand(t, bin, e, nil, "breakdown", "Clean the garage")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hanging:
	case <-time.After(processWait):
		cmd.Process.Kill()
		t.Fatal("the breakdown never reached the server")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, cmd); code != 143 || stderr.String() != "offload: interrupted\n" || stdout.Len() != 0 {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestBreakdownWithUnwritableStateDir: consent on in a directory the user
// cannot write; the cloud plan is still shown, with the two warnings.
// Root writes anywhere, so as root the CLI runs as nobody.
func TestBreakdownWithUnwritableStateDir(t *testing.T) {
	srv := startServer(t, nil)
	base, err := os.MkdirTemp("", "offload-ro-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(base, "state"), 0o700); os.RemoveAll(base) })
	e := newEnv(t, srv.URL)
	e.state = filepath.Join(base, "state")
	e.must("consent", "on")
	e.must("usage") // an install id

	var r result
	if os.Geteuid() == 0 {
		r = runAsNobody(t, base, e, "breakdown", "Clean the garage")
	} else {
		if err := os.Chmod(e.state, 0o500); err != nil {
			t.Fatal(err)
		}
		r = e.run("breakdown", "Clean the garage")
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if r.code != 0 || !strings.Contains(r.stdout, "source: cloud (openai)") || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "offload: warning: save session: write state: ") || !strings.HasSuffix(lines[0], "permission denied; the session is kept for this run only") ||
		!strings.HasPrefix(lines[1], "offload: warning: write state: ") || !strings.HasSuffix(lines[1], "permission denied; this breakdown was not counted") {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(e.file(client.SessionFile)); err == nil {
		t.Fatal("a session was written into the read-only dir")
	}
}

func runAsNobody(t *testing.T, base string, e *env, args ...string) result {
	t.Helper()
	bin := filepath.Join(base, "offload.test")
	src, err := os.Open(testBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	// nobody may enter and read, not write.
	for _, p := range []string{base, e.state} {
		os.Chmod(p, 0o755)
	}
	entries, _ := os.ReadDir(e.state)
	for _, en := range entries {
		os.Chmod(filepath.Join(e.state, en.Name()), 0o644)
	}
	cmd := cliCommand(t, bin, e, nil, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return result{exitCode(t, cmd), stdout.String(), stderr.String()}
}

// frameWriter hands each Write to the test, so it can pace the spinner.
type frameWriter chan string

func (w frameWriter) Write(p []byte) (int, error) { w <- string(p); return len(p), nil }

func TestSpinnerShowsElapsedSeconds(t *testing.T) {
	clk := mock.NewClock(time.Date(2026, 2, 16, 12, 0, 0, 0, time.UTC))
	frames := make(frameWriter)
	tick := make(chan time.Time)
	next := func() string {
		t.Helper()
		select {
		case f := <-frames:
			return f
		case <-time.After(5 * time.Second):
			t.Fatal("no frame")
			return ""
		}
	}
	stop := drawSpinner(frames, "asking the cloud", clk.Now, tick)
	if f := next(); f != "\r⠋ asking the cloud… 0s\x1b[K" {
		t.Fatalf("frame 0 = %q", f)
	}
	for _, step := range []struct {
		advance time.Duration
		want    string
	}{
		{1500 * time.Millisecond, "\r⠙ asking the cloud… 1s\x1b[K"},
		{2 * time.Second, "\r⠹ asking the cloud… 3s\x1b[K"},
	} {
		clk.Advance(step.advance)
		tick <- clk.Now()
		if f := next(); f != step.want {
			t.Fatalf("frame = %q, want %q", f, step.want)
		}
	}
	stopped := make(chan struct{})
	go func() { stop(); stop(); close(stopped) }()
	if f := next(); f != "\r\x1b[K" {
		t.Fatalf("erase = %q", f)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not return")
	}
}
