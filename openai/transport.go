package openai

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxResponseBytes caps a success body when Options.MaxResponseBytes
// is 0. The largest valid plan (100 steps of 280 four-byte runes, every
// quote and backslash escaped again in the completion) is about 250 KB and
// a real one a few KB. What all concurrent reads hold is bounded besides
// (bodyBudget).
const DefaultMaxResponseBytes = 1 << 20

// maxErrorBytes caps an error body (status ≥ 400). Only the status and
// headers are used, so a body cut off here changes nothing; the SDK reads
// it whole to build its error (OpenAI's are a few hundred bytes, a proxy's
// HTML page a few KB), and thousands of calls in flight may do so at once.
const maxErrorBytes = 8 << 10

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

// A success body is read into pooled chunks: a real answer (a few KB) fits
// in the first, and a hostile one near the cap takes chunks that go back to
// the pool for the next read instead of leaving a trail of ever larger
// buffers for the collector, which at a high GOGC let the heap grow to
// several times the live bytes.
const chunkSize = 32 << 10

type chunk = [chunkSize]byte

var chunks = sync.Pool{New: func() any { return new(chunk) }}

// bodyBudget bounds what all the reads of one Provider hold at once beyond
// their first chunk: the body cap bounds one answer, this bounds a flood of
// them however many calls the server admits.
const bodyBudget = 64 << 20

var errBodyBudget = errors.New("openai: response bodies over the memory budget")

// bodyReader reads success bodies under a per-body cap and a memory budget
// shared by every concurrent read.
type bodyReader struct {
	limit int64        // a body's cap (capTransport enforces it)
	left  atomic.Int64 // budget bytes not held by a read
}

func newBodyReader(limit int64) *bodyReader {
	r := &bodyReader{limit: limit}
	r.left.Store(max(bodyBudget, 2*limit)) // one body at the cap always fits
	return r
}

// decode reads a body whole and decodes it into dst. A chunk it cannot take
// from the budget fails the read with errBodyBudget.
func (r *bodyReader) decode(body io.Reader, dst any) error {
	var (
		stack [4]*chunk
		parts = append(stack[:0], chunks.Get().(*chunk))
		n     int   // bytes in the last part
		held  int64 // budget taken
	)
	defer func() {
		for _, c := range parts {
			chunks.Put(c)
		}
		r.left.Add(held)
	}()
	take := func(b int64) bool {
		if r.left.Add(-b) < 0 {
			r.left.Add(b)
			return false
		}
		held += b
		return true
	}
	for {
		if n == chunkSize {
			if !take(chunkSize) {
				return errBodyBudget
			}
			parts, n = append(parts, chunks.Get().(*chunk)), 0
		}
		m, err := body.Read(parts[len(parts)-1][n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if len(parts) == 1 {
		return json.Unmarshal(parts[0][:n], dst)
	}
	size := (len(parts)-1)*chunkSize + n
	if !take(int64(size)) {
		return errBodyBudget
	}
	whole := make([]byte, 0, size)
	for _, c := range parts[:len(parts)-1] {
		whole = append(whole, c[:]...)
	}
	return json.Unmarshal(append(whole, parts[len(parts)-1][:n]...), dst)
}
