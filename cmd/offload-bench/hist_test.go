package main

import (
	"testing"
	"time"
)

func TestBucketBoundsContainValue(t *testing.T) {
	// Every value maps to a bucket whose midpoint is within the bucket
	// width (1/subCount) of it, and buckets are monotonic in the value.
	prev := -1
	for _, v := range []time.Duration{0, 1, 63, 64, 127, 128, 129, 255, 256, 1000, 4095, 4096,
		37 * time.Microsecond, time.Millisecond, 999 * time.Millisecond, 3 * time.Second, time.Minute} {
		i := bucketOf(v)
		if i < prev {
			t.Errorf("bucketOf(%d) = %d, below the previous value's bucket %d", v, i, prev)
		}
		prev = i
		mid := bucketMid(i)
		if diff := (mid - v).Abs(); float64(diff) > float64(v)/subCount+1 {
			t.Errorf("value %d: bucket %d midpoint %d is %d away", v, i, mid, diff)
		}
	}
	if got := bucketOf(1000 * time.Hour); got != numBuckets-1 {
		t.Errorf("huge value bucket = %d, want the last (%d)", got, numBuckets-1)
	}
	if got := bucketOf(-5); got != 0 {
		t.Errorf("negative value bucket = %d, want 0", got)
	}
}

func TestQuantiles(t *testing.T) {
	var h histogram
	// 1..1000 µs, one each: the nearest-rank q-quantile is q·1000 µs.
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.50, 500 * time.Microsecond},
		{0.95, 950 * time.Microsecond},
		{0.99, 990 * time.Microsecond},
		{1.00, 1000 * time.Microsecond},
		{0.0001, 1 * time.Microsecond},
	}
	for _, tt := range tests {
		got := h.quantile(tt.q)
		if diff := (got - tt.want).Abs(); float64(diff) > float64(tt.want)/subCount {
			t.Errorf("quantile(%v) = %v, want %v ±1.6%%", tt.q, got, tt.want)
		}
	}
	if h.max != time.Millisecond {
		t.Errorf("max = %v, want 1ms exactly", h.max)
	}

	var other histogram
	other.record(5 * time.Second)
	h.merge(&other)
	if h.n != 1001 || h.max != 5*time.Second || h.quantile(1) != 5*time.Second {
		t.Errorf("after merge n=%d max=%v q1=%v, want 1001, 5s, 5s", h.n, h.max, h.quantile(1))
	}
	var empty histogram
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %v, want 0", got)
	}
}

func TestJSONInt(t *testing.T) {
	key := []byte(serverCountKey)
	tests := []struct {
		body    string
		want    int64
		wantErr bool
	}{
		{`{"server_count":42,"effective_remaining":58}`, 42, false},
		{`{"effective_remaining":0,"server_count": 1234567}`, 1234567, false},
		{`{"server_count":0}`, 0, false},
		{`{"other":1}`, 0, true},
		{`{"server_count":"7"}`, 0, true},
		{`{"server_count":`, 0, true},
	}
	for _, tt := range tests {
		got, err := jsonInt([]byte(tt.body), key)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("jsonInt(%s) = %d, %v; want %d, error %v", tt.body, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzJSONInt(f *testing.F) {
	f.Add([]byte(`{"server_count":42}`))
	f.Add([]byte(`{"server_count":-1}`))
	f.Add([]byte(`"server_count":99999999999999999999999`))
	f.Add([]byte(`{"server_count":  }`))
	key := []byte(serverCountKey)
	f.Fuzz(func(t *testing.T, body []byte) {
		// Must not panic; any answer must be a plain decimal that was there.
		n, err := jsonInt(body, key)
		if err != nil && n != 0 {
			t.Fatalf("error %v with value %d", err, n)
		}
	})
}

func TestErrorCode(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"error":{"code":"invalid_token","message":"Invalid session token","request_id":"x"}}`, "invalid_token"},
		{`{"detail":"nope"}`, "(no error envelope)"},
		{`not json`, "(no error envelope)"},
	}
	for _, tt := range tests {
		if got := errorCode([]byte(tt.body)); got != tt.want {
			t.Errorf("errorCode(%s) = %q, want %q", tt.body, got, tt.want)
		}
	}
}
