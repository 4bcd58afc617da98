package openai

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/offload-app/offload/internal/upstream"
)

// bodyTransport answers status with the body, announcing length (-1: none).
type bodyTransport struct {
	status int
	body   []byte
	length int64
	read   *int // bytes read from the body
}

func (b bodyTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: b.status, ContentLength: b.length,
		Body: io.NopCloser(&countReader{r: bytes.NewReader(b.body), n: b.read})}, nil
}

type countReader struct {
	r io.Reader
	n *int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += n
	return n, err
}

func TestTransportPool(t *testing.T) {
	p := newProvider(t, testOptions("http://127.0.0.1:1/v1"))
	ct, ok := p.hc.Transport.(upstream.CapBodies)
	if !ok {
		t.Fatalf("transport %T is not capped", p.hc.Transport)
	}
	tr, ok := ct.Next.(*http.Transport)
	if !ok {
		t.Fatalf("default transport is %T", ct.Next)
	}
	if tr.MaxConnsPerHost != DefaultMaxConns || tr.MaxIdleConnsPerHost != DefaultMaxConns || tr.MaxIdleConns != DefaultMaxConns {
		t.Errorf("pool: conns/host %d, idle/host %d, idle %d; want all %d", tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost, tr.MaxIdleConns, DefaultMaxConns)
	}
	if tr.MaxResponseHeaderBytes != upstream.MaxHeaderBytes || ct.Max != DefaultMaxResponseBytes {
		t.Errorf("header cap %d, body cap %d", tr.MaxResponseHeaderBytes, ct.Max)
	}

	o := testOptions("http://127.0.0.1:1/v1")
	o.MaxConns, o.MaxResponseBytes = 5000, 4096
	p = newProvider(t, o)
	ct = p.hc.Transport.(upstream.CapBodies)
	tr = ct.Next.(*http.Transport)
	if tr.MaxConnsPerHost != 5000 || tr.MaxIdleConnsPerHost != 5000 || tr.MaxIdleConns != 5000 || ct.Max != 4096 {
		t.Errorf("pool not sized to MaxConns: %d/%d/%d, cap %d", tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost, tr.MaxIdleConns, ct.Max)
	}

	custom := &http.Client{}
	o.HTTPClient = custom
	p = newProvider(t, o)
	if _, ok := p.hc.Transport.(upstream.CapBodies); !ok || custom.Transport != nil {
		t.Error("a caller's client must be capped without being modified")
	}
}

func TestBodyReader(t *testing.T) {
	const limit = 100 << 10
	doc := func(n int) []byte { // a JSON string of n bytes in all
		return append(append([]byte(`"`), bytes.Repeat([]byte("a"), n-2)...), '"')
	}
	tests := []struct {
		name    string
		n       int
		size    int64 // announced; -1 none
		wantErr error
	}{
		{"small", 100, -1, nil},
		{"small announced", 100, 100, nil},
		{"several chunks", chunkSize * 3, -1, nil},
		{"one chunk exactly", chunkSize, -1, nil},
		{"at the cap", limit, -1, nil},
		{"at the cap announced", limit, limit, nil},
		{"announced short", 100, 5000, nil},
		{"over the cap", limit + 1, -1, upstream.ErrBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newBodyReader(limit)
			full := r.left.Load()
			var read int
			ct := upstream.CapBodies{Next: bodyTransport{200, doc(tt.n), tt.size, &read}, Max: limit}
			res, err := ct.RoundTrip(&http.Request{})
			if err != nil {
				t.Fatal(err)
			}
			var s string
			err = r.decode(res.Body, &s)
			if !errors.Is(err, tt.wantErr) || (err == nil && len(s) != tt.n-2) {
				t.Errorf("err %v, decoded %d bytes; want %v", err, len(s), tt.wantErr)
			}
			if r.left.Load() != full {
				t.Errorf("budget left %d after the read, want all %d back", r.left.Load(), full)
			}
		})
	}
}

// Concurrent reads share one budget: a read that would take more than is
// left fails at once, and every read gives back what it took.
func TestBodyReaderBudget(t *testing.T) {
	r := newBodyReader(1 << 20)
	full := r.left.Load()
	if full != bodyBudget {
		t.Fatalf("budget %d, want %d", full, bodyBudget)
	}
	r.left.Store(5 << 19) // room for one body near the cap (its chunks, then the whole), not two

	// A read that stays in flight, holding a buffer near the cap.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var s string
		done <- r.decode(pr, &s)
	}()
	if _, err := pw.Write(append([]byte(`"`), bytes.Repeat([]byte("a"), 900<<10)...)); err != nil {
		t.Fatal(err)
	}
	if r.left.Load() > 5<<19-(800<<10) {
		t.Fatalf("an in-flight read of 900 KiB holds only %d bytes of budget", 5<<19-r.left.Load())
	}
	// A second one past what is left fails; a small one still passes.
	var s string
	big := append(append([]byte(`"`), bytes.Repeat([]byte("b"), 1000<<10)...), '"')
	if err := r.decode(bytes.NewReader(big), &s); !errors.Is(err, errBodyBudget) {
		t.Errorf("second big read: %v, want errBodyBudget", err)
	}
	if err := r.decode(bytes.NewReader([]byte(`"small"`)), &s); err != nil || s != "small" {
		t.Errorf("small read under pressure: %v", err)
	}
	if _, err := pw.Write([]byte(`"`)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("first read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first read did not end")
	}
	if r.left.Load() != 5<<19 {
		t.Errorf("budget left %d, want all back", r.left.Load())
	}
}
