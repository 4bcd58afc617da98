package upstream

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
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

func TestCapBodies(t *testing.T) {
	big := MaxErrorBytes + 1000
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
		{"over by one", 200, 101, -1, ErrBodyTooLarge, 101},
		{"over, unannounced", 200, 10000, -1, ErrBodyTooLarge, 101},
		{"over, announced: nothing read", 200, 10000, -2, ErrBodyTooLarge, 0},
		{"announced over but short", 200, 50, 101, ErrBodyTooLarge, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			length := tt.length
			if length == -2 {
				length = int64(tt.size)
			}
			var read int
			ct := CapBodies{Next: bodyTransport{tt.status, bytes.Repeat([]byte("x"), tt.size), length, &read}, Max: 100}
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
	// Error bodies are capped at MaxErrorBytes whatever the success cap.
	for _, length := range []int64{-1, int64(big)} {
		var read int
		ct := CapBodies{Next: bodyTransport{500, bytes.Repeat([]byte("x"), big), length, &read}, Max: 1 << 20}
		res, _ := ct.RoundTrip(&http.Request{})
		if _, err := io.ReadAll(res.Body); !errors.Is(err, ErrBodyTooLarge) || read > MaxErrorBytes+1 {
			t.Errorf("error body of %d (length %d): err %v after reading %d", big, length, err, read)
		}
	}
}

func TestTransportAndHeaderCap(t *testing.T) {
	tr := NewTransport(300)
	if tr.MaxConnsPerHost != 300 || tr.MaxIdleConnsPerHost != 300 || tr.MaxIdleConns != 300 || tr.MaxResponseHeaderBytes != MaxHeaderBytes {
		t.Errorf("pool %d/%d/%d, header cap %d", tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost, tr.MaxIdleConns, tr.MaxResponseHeaderBytes)
	}
	loose := &http.Transport{MaxResponseHeaderBytes: 10 << 20}
	capped, ok := CapHeaders(loose).(*http.Transport)
	if !ok || capped == loose || capped.MaxResponseHeaderBytes != MaxHeaderBytes || loose.MaxResponseHeaderBytes != 10<<20 {
		t.Error("a caller's transport must be capped on a clone, never modified")
	}
	tight := &http.Transport{MaxResponseHeaderBytes: 1 << 10}
	if CapHeaders(tight) != http.RoundTripper(tight) {
		t.Error("a tighter cap was replaced")
	}
}
