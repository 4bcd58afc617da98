// Package upstream is the HTTP plumbing both provider adapters put under
// their SDKs: a connection pool sized to the server's in-flight bound and
// caps on what an upstream's answer may make us read, whatever it sends.
package upstream

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// MaxHeaderBytes caps an upstream's response header block. The providers
// send a few hundred bytes; net/http's default (10 MB) let 50 concurrent
// hostile answers take 2 GB of RSS before any body cap applied.
const MaxHeaderBytes = 64 << 10

// MaxErrorBytes caps an error body (status ≥ 400). Only the status and the
// headers decide what happens, so a body cut off here changes nothing; the
// SDKs read it whole to build their errors (the providers' are a few
// hundred bytes, a proxy's HTML page a few KB), and thousands of calls in
// flight may do so at once.
const MaxErrorBytes = 8 << 10

// ErrBodyTooLarge is the read error of a body over its cap; the adapters
// report it as provider_invalid_response.
var ErrBodyTooLarge = errors.New("upstream: response body too large")

// NewTransport is tuned for many concurrent calls to one upstream: maxConns
// connections at most and as many kept idle, so a burst as large as the
// server admits reuses its connections instead of closing those over the
// idle limit and dialling new ones (256 idle at 5,000 in flight churned
// 1,600 connections a second).
func NewTransport(maxConns int) *http.Transport {
	t := &http.Transport{}
	if base, ok := http.DefaultTransport.(*http.Transport); ok {
		t = base.Clone() // proxy from the environment, dial and TLS timeouts, HTTP/2
	}
	t.MaxConnsPerHost = maxConns
	t.MaxIdleConnsPerHost = maxConns
	t.MaxIdleConns = maxConns
	t.IdleConnTimeout = 90 * time.Second
	t.MaxResponseHeaderBytes = MaxHeaderBytes
	return t
}

// CapHeaders returns rt with the header cap applied when rt is an
// *http.Transport without a tighter one; the caller's transport is cloned,
// never modified. Other round trippers are left as they are.
func CapHeaders(rt http.RoundTripper) http.RoundTripper {
	t, ok := rt.(*http.Transport)
	if !ok || (t.MaxResponseHeaderBytes > 0 && t.MaxResponseHeaderBytes <= MaxHeaderBytes) {
		return rt
	}
	t = t.Clone()
	t.MaxResponseHeaderBytes = MaxHeaderBytes
	return t
}

// CapBodies bounds every response body Next returns: Max for a success,
// MaxErrorBytes for an error status. A body announced larger than that is
// refused before a byte of it is read; one without a length fails with
// ErrBodyTooLarge when it passes the cap.
type CapBodies struct {
	Next http.RoundTripper
	Max  int64
}

func (t CapBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := t.Next.RoundTrip(r)
	if err != nil || res.Body == nil {
		return res, err
	}
	limit := t.Max
	if res.StatusCode >= 400 {
		limit = min(limit, MaxErrorBytes)
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

func (tooLarge) Read([]byte) (int, error) { return 0, ErrBodyTooLarge }
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
			return 0, ErrBodyTooLarge
		}
		if err != nil && err != io.EOF {
			err = &ReadError{err}
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err != nil && err != io.EOF {
		err = &ReadError{err}
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// ReadError marks a failure to read an upstream's body (connection reset,
// body shorter than its Content-Length): a transport failure, to be
// retried, where a body that reads fine but doesn't decode is an invalid
// answer.
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return "upstream: reading response body: " + e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }
