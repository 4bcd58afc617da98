package openai

import (
	"context"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/internal/upstream"
	"github.com/offload-app/offload/openai/openaitest"
)

// countConn counts the bytes read from an upstream connection.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// wire counts what p's default transport dials and reads.
type wire struct {
	dials, read atomic.Int64
}

// countWire makes p's default transport count its dials and the bytes it
// reads off the wire.
func countWire(t testing.TB, p *Provider) *wire {
	t.Helper()
	tr, ok := p.hc.Transport.(upstream.CapBodies).Next.(*http.Transport)
	if !ok {
		t.Fatal("not the default transport")
	}
	w := &wire{}
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		w.dials.Add(1)
		return countConn{c, &w.read}, nil
	}
	return w
}

// A hostile upstream gets a contract error, and the adapter reads no more of
// it than the caps (plus a read buffer's worth).
func TestHostileUpstream(t *testing.T) {
	const slack = 16 << 10 // net/http's read buffers
	valid := len(openaitest.CompletionBody(openaitest.DefaultContent, openaitest.Usage{}))
	tests := []struct {
		name     string
		resp     openaitest.Response
		timeout  time.Duration
		failure  offload.ProviderFailure
		class    string
		status   int
		attempts int
		maxRead  int64 // per attempt
		maxAlloc uint64
	}{
		{"11 MB header", openaitest.Response{HeaderBytes: 11 << 20}, 0,
			offload.ProviderRequestFailed, "transport", 0, 3, upstream.MaxHeaderBytes + slack, 1 << 20},
		{"50 MB body announced", openaitest.Response{BodyBytes: 50 << 20}, 0,
			offload.ProviderInvalidResponse, "body_too_large", 0, 1, slack, 1 << 20},
		{"50 MB chunked body", openaitest.Response{BodyBytes: 50 << 20, Chunked: true}, 0,
			offload.ProviderInvalidResponse, "body_too_large", 0, 1, DefaultMaxResponseBytes + slack, 3 * DefaultMaxResponseBytes},
		{"big header and chunked body", openaitest.Response{HeaderBytes: 40 << 10, BodyBytes: 50 << 20, Chunked: true}, 0,
			offload.ProviderInvalidResponse, "body_too_large", 0, 1, DefaultMaxResponseBytes + 40<<10 + slack, 3 * DefaultMaxResponseBytes},
		{"50 MB error body", openaitest.Response{Status: 503, BodyBytes: 50 << 20, Chunked: true}, 0,
			offload.ProviderRequestFailed, "status_503", 503, 3, upstream.MaxErrorBytes + slack, 1 << 20},
		{"slow drip", openaitest.Response{Drip: 20 * time.Millisecond}, 100 * time.Millisecond,
			offload.ProviderTimeout, "timeout", 0, 3, int64(valid), 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) {
				if tt.timeout > 0 {
					o.Timeout = tt.timeout
				}
			})
			wire := countWire(t, h.p)
			h.srv.Respond(func(openaitest.Request) openaitest.Response { return tt.resp })
			start := time.Now()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := h.p.Generate(context.Background(), testRequest())
			runtime.ReadMemStats(&after)
			pe := providerError(t, err)
			if pe.Failure != tt.failure || pe.Class != tt.class || pe.Status != tt.status ||
				pe.Attempts != tt.attempts || pe.Provider != ProviderName {
				t.Errorf("got %+v, want %v %s status %d after %d", pe, tt.failure, tt.class, tt.status, tt.attempts)
			}
			if n := wire.read.Load(); n > int64(tt.attempts)*tt.maxRead {
				t.Errorf("read %d bytes off the wire in %d attempts, want ≤ %d each", n, tt.attempts, tt.maxRead)
			}
			// The fake streams from shared buffers: what the process
			// allocated is the adapter's reading.
			if n := after.TotalAlloc - before.TotalAlloc; n > uint64(tt.attempts)*tt.maxAlloc {
				t.Errorf("allocated %d bytes in %d attempts, want ≤ %d each", n, tt.attempts, tt.maxAlloc)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// The pool keeps as many connections as MaxConns admits: waves of that many
// concurrent calls reuse the first wave's connections (with 256 idle per
// host, every wave past 256 in flight closed and redialled the rest), and
// more calls than MaxConns share them instead of dialling more.
func TestPoolReusesConnections(t *testing.T) {
	tests := []struct {
		name            string
		maxConns, calls int
	}{
		{"waves at the bound", 300, 300},
		{"over the bound", 10, 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The delay keeps every call of a wave in flight at once.
			srv := openaitest.NewServer(openaitest.WithDelay(50 * time.Millisecond))
			defer srv.Close()
			o := testOptions(srv.URL)
			o.MaxConns = tt.maxConns
			p := newProvider(t, o)
			wire := countWire(t, p)
			for wave := range 3 {
				var wg sync.WaitGroup
				var failed atomic.Int64
				for range tt.calls {
					wg.Go(func() {
						if _, err := p.Generate(context.Background(), testRequest()); err != nil {
							failed.Add(1)
						}
					})
				}
				wg.Wait()
				if n := failed.Load(); n > 0 {
					t.Fatalf("wave %d: %d calls failed", wave, n)
				}
			}
			if n := wire.dials.Load(); n > int64(tt.maxConns) {
				t.Errorf("%d dials for 3 waves of %d calls, want ≤ %d", n, tt.calls, tt.maxConns)
			}
		})
	}
}

// An error body cut off at its cap is still classified by its status and
// headers.
func TestOversizedErrorBodyKeepsRetryAfter(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		h := newHarness(t, nil)
		h.srv.Enqueue(openaitest.Response{Status: 429, BodyBytes: 1 << 20, Chunked: chunked, Header: http.Header{"Retry-After": {"1"}}})
		if _, err := h.p.Generate(context.Background(), testRequest()); err != nil {
			t.Fatalf("chunked %v: %v", chunked, err)
		}
		if s := h.slept(); len(s) != 1 || s[0] != time.Second {
			t.Errorf("chunked %v: sleeps %v, want [1s] from Retry-After", chunked, s)
		}
	}
}
