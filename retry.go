package offload

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"
)

// RetryPolicy is the provider retry policy of the contract, shared by every
// provider adapter.
type RetryPolicy struct {
	MaxAttempts   int
	BaseDelay     time.Duration
	MaxDelay      time.Duration
	MaxTotalDelay time.Duration
	JitterFactor  float64
}

// Backoff is the delay before retry n (n ≥ 1): min(MaxDelay, BaseDelay·2^(n−1))
// plus jitter of up to JitterFactor of that (r in [0,1) picks how much),
// capped at MaxDelay.
func (p RetryPolicy) Backoff(n int, r float64) time.Duration {
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	if d > p.MaxDelay || d < 0 {
		d = p.MaxDelay
	}
	jitter := float64(d) * p.JitterFactor * r
	if jitter > 0 && !math.IsInf(jitter, 0) {
		d += time.Duration(jitter)
	}
	if d > p.MaxDelay || d < 0 {
		d = p.MaxDelay
	}
	return d
}

// NextDelay decides whether retry n happens and after how long. The delay is
// the backoff, or the server's Retry-After when that is longer, never more
// than MaxDelay: the contract retries every 429, so a long Retry-After is
// honoured as far as our policy allows rather than ending the retries. When
// the delay would push the total sleep over MaxTotalDelay there is no retry:
// the existing deployment shrinks the last delay to the remaining budget
// instead, but a retry after a cut-short pause mostly meets the same
// overload again, so stopping spends the caller's time and our quota better.
func (p RetryPolicy) NextDelay(n int, r float64, slept, retryAfter time.Duration) (time.Duration, bool) {
	d := max(p.Backoff(n, r), min(retryAfter, p.MaxDelay))
	if slept+d > p.MaxTotalDelay {
		return 0, false
	}
	return d, true
}

// RetryAfter reads Retry-After-Ms or a delta-seconds Retry-After (the forms
// OpenAI and Anthropic send); anything else, or nothing, is zero.
func RetryAfter(h http.Header) time.Duration {
	if h == nil {
		return 0
	}
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < float64(time.Hour/time.Millisecond) {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 && s < float64(time.Hour/time.Second) {
			return time.Duration(s * float64(time.Second))
		}
	}
	return 0
}

// Sleep waits d or until ctx is done, whichever comes first.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
