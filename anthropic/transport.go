package anthropic

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// MaxResponseBytes caps every upstream response body the SDK reads. A valid
// answer is well under it (the text is capped at 1 MiB, JSON escaping can
// grow it a few times); beyond it the read fails with errBodyTooLarge, which
// the adapter reports as provider_invalid_response instead of buffering
// whatever an upstream sends.
const MaxResponseBytes = 4 << 20

// MaxResponseHeaderBytes caps the response header block. The Messages API
// sends a few hundred bytes of rate-limit and request-id headers; the
// net/http default (10 MiB) would let a hostile upstream make every attempt
// buffer megabytes before the body cap applies.
const MaxResponseHeaderBytes = 64 << 10

var errBodyTooLarge = errors.New("anthropic: response body too large")

// defaultTransport is tuned for many concurrent calls to one upstream, as
// the OpenAI adapter's: maxConns connections at most and as many kept idle,
// so a burst as large as the server admits reuses its connections instead of
// closing those over a smaller idle limit and dialling new ones.
func defaultTransport(maxConns int) http.RoundTripper {
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return http.DefaultTransport
	}
	t := base.Clone()
	t.MaxIdleConns = maxConns
	t.MaxIdleConnsPerHost = maxConns
	t.MaxConnsPerHost = maxConns
	t.IdleConnTimeout = 90 * time.Second
	t.MaxResponseHeaderBytes = MaxResponseHeaderBytes
	return t
}

// capHeaders returns rt with the header cap applied when rt is an
// *http.Transport without a tighter one; the caller's transport is cloned,
// never modified. Other round trippers are left as they are.
func capHeaders(rt http.RoundTripper) http.RoundTripper {
	t, ok := rt.(*http.Transport)
	if !ok || (t.MaxResponseHeaderBytes > 0 && t.MaxResponseHeaderBytes <= MaxResponseHeaderBytes) {
		return rt
	}
	t = t.Clone()
	t.MaxResponseHeaderBytes = MaxResponseHeaderBytes
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

func (b *cappedBody) Close() error { return b.rc.Close() }

// bodyReadError marks a failure to read the upstream's body (connection
// reset, body shorter than its Content-Length): a transport failure, to be
// retried, where a body that reads fine but doesn't decode is an invalid
// answer.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "anthropic: reading response body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }
