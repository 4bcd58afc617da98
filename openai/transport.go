package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// DefaultMaxResponseBytes caps a success body when Options.MaxResponseBytes
// is 0. The largest valid plan (100 steps of 280 four-byte runes, every
// quote and backslash escaped again in the completion) is about 250 KB and
// a real one a few KB; 50 concurrent answers at the cap stay within the
// memory bound of a small server.
const DefaultMaxResponseBytes = 1 << 20

// maxErrorBytes caps an error body (status ≥ 400). Only the status is used;
// the SDK reads the body to build its error, and OpenAI's are a few hundred
// bytes.
const maxErrorBytes = 64 << 10

// MaxResponseHeaderBytes caps the upstream's response header. net/http's
// default is 10 MB, and 50 concurrent 10 MB headers were 2 GB of RSS.
const MaxResponseHeaderBytes = 64 << 10

var errBodyTooLarge = errors.New("openai: response body too large")

// newTransport is tuned for many concurrent calls to one upstream: maxConns
// connections at most and as many kept idle, so a burst as large as the
// server admits reuses its connections instead of closing those over the
// idle limit and dialling new ones (256 idle at 5,000 in flight churned
// 1,600 connections a second).
func newTransport(maxConns int) http.RoundTripper {
	t := &http.Transport{}
	if base, ok := http.DefaultTransport.(*http.Transport); ok {
		t = base.Clone() // proxy from the environment, dial and TLS timeouts, HTTP/2
	}
	t.MaxConnsPerHost = maxConns
	t.MaxIdleConnsPerHost = maxConns
	t.MaxIdleConns = maxConns
	t.IdleConnTimeout = 90 * time.Second
	t.MaxResponseHeaderBytes = MaxResponseHeaderBytes
	return t
}

// capTransport bounds every response body: max for a success, maxErrorBytes
// for an error status. A body announced larger than that is refused before
// a byte of it is read; one without a length fails when it passes the cap.
type capTransport struct {
	next http.RoundTripper
	max  int64
}

func (t capTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(r)
	if err != nil || res.Body == nil {
		return res, err
	}
	limit := t.max
	if res.StatusCode >= 400 {
		limit = min(limit, maxErrorBytes)
	}
	if res.ContentLength > limit {
		res.Body.Close() // unread: the connection is dropped, not drained
		res.Body, res.ContentLength = tooLarge{}, -1
		return res, nil
	}
	res.Body = &cappedBody{rc: res.Body, left: limit}
	return res, nil
}

type tooLarge struct{}

func (tooLarge) Read([]byte) (int, error) { return 0, errBodyTooLarge }
func (tooLarge) Close() error             { return nil }

type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// At the cap: one more byte means the body is too large; EOF means
		// it fitted exactly.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, errBodyTooLarge
		}
		if err != nil && err != io.EOF {
			err = &bodyReadError{err}
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err != nil && err != io.EOF {
		err = &bodyReadError{err}
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// bodyReadError marks a failure to read the upstream's body (connection
// reset, body shorter than its Content-Length): a transport failure, to be
// retried, where a body that reads fine but doesn't decode is an invalid
// answer.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "openai: reading response body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

// bodyBuffers recycles the buffers success bodies are read into. One that
// grew past maxPooledBuffer (a hostile answer near the cap) is dropped
// rather than kept for the next GC cycles.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, firstRead); return &b }}

const (
	firstRead       = 16 << 10 // a real answer is a few KB
	maxPooledBuffer = 64 << 10
)

// decodeBody reads a body whole and decodes it into dst. size is the
// announced length (-1 when unknown), trusted up to limit, the body's cap.
// The buffer doubles but never past limit+1, so a body cut off at the cap
// costs about twice the cap in all, not the four times of bytes.Buffer or
// io.ReadAll growing past it.
func decodeBody(body io.Reader, size, limit int64, dst any) error {
	bp := bodyBuffers.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= maxPooledBuffer {
			*bp = buf[:0]
			bodyBuffers.Put(bp)
		}
	}()
	if want := min(size, limit) + 1; size >= 0 && int64(cap(buf)) < want {
		buf = make([]byte, 0, want) // +1: room to read EOF
	}
	for {
		if len(buf) == cap(buf) {
			// Double, or straight to the most the cap lets through.
			n := 2 * int64(cap(buf))
			if n >= limit {
				n = max(limit+1, int64(cap(buf))+bytes.MinRead)
			}
			grown := make([]byte, len(buf), n)
			copy(grown, buf)
			buf = grown
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return json.Unmarshal(buf, dst)
}
