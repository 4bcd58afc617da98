package openai

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// MaxResponseBytes caps every upstream response body the SDK reads. A valid
// answer is well under it (content is capped at 1 MiB, JSON escaping can grow
// it a few times); beyond it the read fails with errBodyTooLarge, which the
// adapter reports as provider_invalid_response instead of buffering
// whatever an upstream sends.
const MaxResponseBytes = 4 << 20

var errBodyTooLarge = errors.New("openai: response body too large")

// defaultTransport is tuned for many concurrent calls to one upstream: enough
// idle connections per host that a burst of 200 generates reuses them, and no
// per-host connection limit, so nothing here serialises upstream calls.
func defaultTransport() http.RoundTripper {
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return http.DefaultTransport
	}
	t := base.Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.MaxConnsPerHost = 0
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// capTransport wraps response bodies so that reading more than max bytes
// fails.
type capTransport struct {
	next http.RoundTripper
	max  int64
}

func (t capTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(r)
	if err != nil || res.Body == nil {
		return res, err
	}
	res.Body = &cappedBody{rc: res.Body, left: t.max}
	return res, nil
}

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

// bodyReadError marks a failure to read the upstream's body (connection
// reset, body shorter than its Content-Length): a transport failure, to be
// retried, where a body that reads fine but doesn't decode is an invalid
// answer.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "openai: reading response body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

func (b *cappedBody) Close() error { return b.rc.Close() }
