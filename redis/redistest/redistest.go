// Package redistest starts a redis-server of a test's own on a free
// loopback port, so the test can kill and restart it. Without the binary it
// skips, saying how to install it, except in CI (CI=true), where it fails.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Server is a redis-server this test started on a free loopback port, so it
// can kill and restart it; it is killed when the test ends.
type Server struct {
	t    testing.TB
	bin  string
	Port int
	dir  string
	out  *Buffer

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a redis-server for t. Without the binary it skips,
// saying how to get it, except in CI (CI=true), where the test must run.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal("redis-server not on PATH in CI (.ci/run installs it)")
		}
		t.Skip("redis-server not on PATH: install it (apt-get install redis-server) to run the tests that need Redis")
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), out: &Buffer{}}
	// A port found free can be taken before redis-server binds it; try a
	// few.
	for attempt := 0; ; attempt++ {
		s.Port = FreePort(t)
		err := s.startOnce()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("redis-server did not start: %v\n%s", err, s.out.String())
		}
	}
	t.Cleanup(s.Kill)
	return s
}

// FreePort is a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// startOnce starts redis-server on s.Port and waits (bounded) until it
// answers PING.
func (s *Server) startOnce() error {
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--daemonize", "no", "--logfile", "")
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done

	rdb := goredis.NewClient(&goredis.Options{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), DialTimeout: 100 * time.Millisecond,
		MaxRetries: -1, DisableIdentity: true,
	})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("exited: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("no PING answer in 10s: %w", err)
		}
	}
}

// Restart starts the server again on the same port, with an empty dataset.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.startOnce(); err != nil {
		t.Fatalf("redis-server did not restart: %v\n%s", err, s.out.String())
	}
}

// Kill stops the server at once (SIGKILL: no shutdown handshake with the
// clients, like a crash or a network partition) and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		if s.t != nil {
			s.t.Errorf("redis-server pid %d did not exit in 10s", s.cmd.Process.Pid)
		}
	}
	s.cmd = nil
}

// Raw is a plain go-redis client of the server, for looking at what the
// limiters stored.
func (s *Server) Raw(t testing.TB) *goredis.Client {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), DisableIdentity: true,
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Buffer is a bytes.Buffer safe for concurrent writers (a process's
// output, a logger).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
