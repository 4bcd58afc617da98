package openai

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
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

func TestCapTransport(t *testing.T) {
	big := maxErrorBytes + 1000
	tests := []struct {
		name     string
		status   int
		size     int
		length   int64 // -1: not announced; -2: announce the true size
		wantErr  error
		wantRead int // at most this many bytes read from the upstream
	}{
		{"empty", 200, 0, -2, nil, 0},
		{"under", 200, 99, -1, nil, 99},
		{"at cap", 200, 100, -2, nil, 100},
		{"at cap unannounced", 200, 100, -1, nil, 100},
		{"over by one", 200, 101, -1, errBodyTooLarge, 101},
		{"over, unannounced", 200, 10000, -1, errBodyTooLarge, 101},
		{"over, announced: nothing read", 200, 10000, -2, errBodyTooLarge, 0},
		{"announced over but short", 200, 50, 101, errBodyTooLarge, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			length := tt.length
			if length == -2 {
				length = int64(tt.size)
			}
			var read int
			ct := capTransport{next: bodyTransport{tt.status, bytes.Repeat([]byte("x"), tt.size), length, &read}, max: 100}
			res, err := ct.RoundTrip(&http.Request{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(res.Body)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if len(got) > 100 || (tt.wantErr == nil && len(got) != tt.size) {
				t.Errorf("got %d bytes", len(got))
			}
			if read > tt.wantRead {
				t.Errorf("read %d bytes from upstream, want ≤ %d", read, tt.wantRead)
			}
			res.Body.Close()
		})
	}
	// Error bodies are capped at maxErrorBytes whatever the success cap.
	for _, length := range []int64{-1, int64(big)} {
		var read int
		ct := capTransport{next: bodyTransport{500, bytes.Repeat([]byte("x"), big), length, &read}, max: 1 << 20}
		res, _ := ct.RoundTrip(&http.Request{})
		if _, err := io.ReadAll(res.Body); !errors.Is(err, errBodyTooLarge) || read > maxErrorBytes+1 {
			t.Errorf("error body of %d (length %d): err %v after reading %d", big, length, err, read)
		}
	}
}

func TestTransportPool(t *testing.T) {
	p := newProvider(t, testOptions("http://127.0.0.1:1/v1"))
	ct, ok := p.hc.Transport.(capTransport)
	if !ok {
		t.Fatalf("transport %T is not capped", p.hc.Transport)
	}
	tr, ok := ct.next.(*http.Transport)
	if !ok {
		t.Fatalf("default transport is %T", ct.next)
	}
	if tr.MaxConnsPerHost != DefaultMaxConns || tr.MaxIdleConnsPerHost != DefaultMaxConns || tr.MaxIdleConns != DefaultMaxConns {
		t.Errorf("pool: conns/host %d, idle/host %d, idle %d; want all %d", tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost, tr.MaxIdleConns, DefaultMaxConns)
	}
	if tr.MaxResponseHeaderBytes != MaxResponseHeaderBytes || ct.max != DefaultMaxResponseBytes {
		t.Errorf("header cap %d, body cap %d", tr.MaxResponseHeaderBytes, ct.max)
	}

	o := testOptions("http://127.0.0.1:1/v1")
	o.MaxConns, o.MaxResponseBytes = 5000, 4096
	p = newProvider(t, o)
	ct = p.hc.Transport.(capTransport)
	tr = ct.next.(*http.Transport)
	if tr.MaxConnsPerHost != 5000 || tr.MaxIdleConnsPerHost != 5000 || tr.MaxIdleConns != 5000 || ct.max != 4096 {
		t.Errorf("pool not sized to MaxConns: %d/%d/%d, cap %d", tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost, tr.MaxIdleConns, ct.max)
	}

	custom := &http.Client{}
	o.HTTPClient = custom
	p = newProvider(t, o)
	if _, ok := p.hc.Transport.(capTransport); !ok || custom.Transport != nil {
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
		{"over the cap", limit + 1, -1, errBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newBodyReader(limit)
			full := r.left.Load()
			var read int
			ct := capTransport{next: bodyTransport{200, doc(tt.n), tt.size, &read}, max: limit}
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
