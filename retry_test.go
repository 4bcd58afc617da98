package offload

import (
	"net/http"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	def := RetryPolicy{BaseDelay: 250 * time.Millisecond, MaxDelay: 2 * time.Second, JitterFactor: 0.25}
	ms := time.Millisecond
	tests := []struct {
		name string
		p    RetryPolicy
		n    int
		r    float64
		want time.Duration
	}{
		{"first, no jitter", def, 1, 0, 250 * ms},
		{"second doubles", def, 2, 0, 500 * ms},
		{"third doubles", def, 3, 0, 1000 * ms},
		{"fourth reaches max", def, 4, 0, 2000 * ms},
		{"far out stays at max", def, 60, 0, 2000 * ms},
		{"half jitter", def, 1, 0.5, 250*ms + 31250*time.Microsecond},
		{"almost full jitter", def, 3, 0.999, 1249750 * time.Microsecond},
		{"jitter beyond max capped", def, 4, 0.999, 2000 * ms},
		{"zero base", RetryPolicy{MaxDelay: time.Second, JitterFactor: 1}, 5, 0.9, 0},
		{"base above max", RetryPolicy{BaseDelay: 3 * time.Second, MaxDelay: time.Second}, 1, 0, time.Second},
		{"huge max no overflow", RetryPolicy{BaseDelay: time.Second, MaxDelay: 1 << 62, JitterFactor: 1}, 80, 0.999, 1 << 62},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Backoff(tt.n, tt.r); got != tt.want {
				t.Errorf("backoff(n=%d, r=%v) = %v, want %v", tt.n, tt.r, got, tt.want)
			}
		})
	}
}

func TestNextDelayBudget(t *testing.T) {
	p := RetryPolicy{BaseDelay: 250 * time.Millisecond, MaxDelay: 2 * time.Second, MaxTotalDelay: 4 * time.Second}
	tests := []struct {
		name       string
		n          int
		slept      time.Duration
		retryAfter time.Duration
		want       time.Duration
		ok         bool
	}{
		{"fits", 1, 0, 0, 250 * time.Millisecond, true},
		{"exactly fills budget", 4, 2 * time.Second, 0, 2 * time.Second, true},
		{"would exceed budget: stop, not shrink", 4, 2*time.Second + 1, 0, 0, false},
		{"retry-after longer than backoff", 1, 0, time.Second, time.Second, true},
		{"retry-after shorter than backoff", 3, 0, 10 * time.Millisecond, time.Second, true},
		{"retry-after above max delay is capped", 1, 0, 3 * time.Second, 2 * time.Second, true},
		{"retry-after over budget", 1, 3 * time.Second, 1500 * time.Millisecond, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := p.NextDelay(tt.n, 0, tt.slept, tt.retryAfter)
			if got != tt.want || ok != tt.ok {
				t.Errorf("nextDelay = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRetryAfterHeader(t *testing.T) {
	tests := []struct {
		h    http.Header
		want time.Duration
	}{
		{nil, 0},
		{http.Header{}, 0},
		{http.Header{"Retry-After": {"2"}}, 2 * time.Second},
		{http.Header{"Retry-After": {"0.5"}}, 500 * time.Millisecond},
		{http.Header{"Retry-After-Ms": {"150"}, "Retry-After": {"9"}}, 150 * time.Millisecond},
		{http.Header{"Retry-After": {"Wed, 21 Oct 2015 07:28:00 GMT"}}, 0},
		{http.Header{"Retry-After": {"-1"}}, 0},
		{http.Header{"Retry-After": {"NaN"}}, 0},
		{http.Header{"Retry-After": {"1e300"}}, 0},
		{http.Header{"Retry-After-Ms": {"junk"}, "Retry-After": {"1"}}, time.Second},
	}
	for _, tt := range tests {
		if got := RetryAfter(tt.h); got != tt.want {
			t.Errorf("retryAfter(%v) = %v, want %v", tt.h, got, tt.want)
		}
	}
}
