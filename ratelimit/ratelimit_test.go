package ratelimit

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is an offload.Clock that moves only when the test says so. It is
// safe for concurrent use so the concurrency tests can share it.
type fakeClock struct {
	ns atomic.Int64 // offset from the base instant
}

func (c *fakeClock) Now() time.Time {
	return time.Unix(1748779200, c.ns.Load()) // 2025-06-01T12:00:00Z
}

func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// step is one event in a scripted sequence: advance the clock by after, then
// Allow(key) and expect ok and retry.
type step struct {
	after time.Duration
	key   string
	ok    bool
	retry time.Duration
}

func TestAllowSequences(t *testing.T) {
	const w = time.Minute
	tests := []struct {
		name  string
		limit int
		steps []step
	}{
		{
			name:  "limit 3 then deny",
			limit: 3,
			steps: []step{
				{0, "a", true, 0},
				{time.Second, "a", true, 0},
				{time.Second, "a", true, 0},
				{time.Second, "a", false, 57 * time.Second},
				{time.Second, "a", false, 56 * time.Second},
			},
		},
		{
			name:  "limit 1",
			limit: 1,
			steps: []step{
				{0, "a", true, 0},
				{0, "a", false, w},
				{30 * time.Second, "a", false, 30 * time.Second},
				{30 * time.Second, "a", true, 0}, // exactly at the boundary: new window
				{0, "a", false, w},
			},
		},
		{
			name:  "keys are independent",
			limit: 2,
			steps: []step{
				{0, "a", true, 0},
				{0, "a", true, 0},
				{0, "a", false, w},
				{0, "b", true, 0},
				{0, "192.0.2.1", true, 0},
				{0, "b", true, 0},
				{0, "b", false, w},
				{0, "192.0.2.1", true, 0},
				{0, "192.0.2.1", false, w},
				{0, "", true, 0}, // the empty key is a key like any other
			},
		},
		{
			name:  "reset after the window",
			limit: 2,
			steps: []step{
				{10 * time.Second, "a", true, 0},
				{0, "a", true, 0},
				{0, "a", false, 50 * time.Second},
				{50*time.Second - time.Nanosecond, "a", false, time.Nanosecond},
				{time.Nanosecond, "a", true, 0},
				{0, "a", true, 0},
				{0, "a", false, w},
				{3 * w, "a", true, 0}, // several idle windows later
			},
		},
		{
			name:  "denied events are not counted",
			limit: 1,
			steps: []step{
				{0, "a", true, 0},
				{0, "a", false, w},
				{0, "a", false, w},
				{w, "a", true, 0},
				{0, "a", false, w},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{}
			l := NewFixedWindow(tt.limit, w, clock)
			for i, s := range tt.steps {
				clock.Advance(s.after)
				ok, retry := l.Allow(s.key)
				if ok != s.ok || retry != s.retry {
					t.Fatalf("step %d: Allow(%q) = %v, %v; want %v, %v", i, s.key, ok, retry, s.ok, s.retry)
				}
			}
		})
	}
}

func TestRetryAfterThroughTheWindow(t *testing.T) {
	const w = 10 * time.Second
	tests := []struct {
		at   time.Duration // offset into the window of the denied call
		want time.Duration
	}{
		{0, w},
		{time.Nanosecond, w - time.Nanosecond},
		{time.Second, 9 * time.Second},
		{5*time.Second + 500*time.Millisecond, 4*time.Second + 500*time.Millisecond},
		{w - time.Millisecond, time.Millisecond},
		{w - time.Nanosecond, time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.at.String(), func(t *testing.T) {
			clock := &fakeClock{}
			l := NewFixedWindow(1, w, clock)
			clock.Advance(7 * w) // not the first window: boundaries stay aligned
			if ok, _ := l.Allow("k"); !ok {
				t.Fatal("first event denied")
			}
			clock.Advance(tt.at)
			ok, retry := l.Allow("k")
			if ok {
				t.Fatal("second event allowed")
			}
			if retry != tt.want {
				t.Fatalf("retryAfter = %v, want %v", retry, tt.want)
			}
			clock.Advance(retry)
			if ok, _ := l.Allow("k"); !ok {
				t.Fatal("denied after waiting retryAfter")
			}
		})
	}
}

func TestClockGoingBackwards(t *testing.T) {
	const w = time.Minute
	tests := []struct {
		name string
		back time.Duration // how far the clock steps back after two windows
	}{
		{"within the window", 10 * time.Second},
		{"to the previous window", w},
		{"before the limiter was made", 3 * w},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{}
			l := NewFixedWindow(1, w, clock)
			clock.Advance(2*w + 20*time.Second)
			if ok, _ := l.Allow("k"); !ok {
				t.Fatal("first event denied")
			}
			// A step back must not hand out a fresh window.
			clock.Advance(-tt.back)
			ok, retry := l.Allow("k")
			if ok {
				t.Fatal("allowed after the clock went backwards")
			}
			if retry <= 0 || retry > w {
				t.Fatalf("retryAfter = %v, want in (0, %v]", retry, w)
			}
			// Once the clock is past the newest window again, the key resets.
			clock.Advance(tt.back + 40*time.Second)
			if ok, _ := l.Allow("k"); !ok {
				t.Fatal("denied in the next window")
			}
		})
	}
}

func TestLargeLimitAndSystemClock(t *testing.T) {
	l := NewFixedWindow(1<<40, time.Hour, nil)
	for i := range 1000 {
		if ok, _ := l.Allow("k"); !ok {
			t.Fatalf("event %d denied under a huge limit", i)
		}
	}
}

func TestNewFixedWindowRejectsBadArguments(t *testing.T) {
	tests := []struct {
		name   string
		limit  int
		window time.Duration
	}{
		{"zero limit", 0, time.Second},
		{"negative limit", -1, time.Second},
		{"zero window", 1, 0},
		{"negative window", 1, -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			NewFixedWindow(tt.limit, tt.window, &fakeClock{})
		})
	}
}

func TestConcurrentAllowOneKey(t *testing.T) {
	const (
		limit      = 37
		goroutines = 64
		calls      = 50
	)
	clock := &fakeClock{}
	l := NewFixedWindow(limit, time.Minute, clock)
	for window := range 3 {
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range calls {
					if ok, retry := l.Allow("install"); ok {
						allowed.Add(1)
					} else if retry <= 0 {
						t.Errorf("denied with retryAfter %v", retry)
					}
				}
			})
		}
		wg.Wait()
		if got := allowed.Load(); got != limit {
			t.Fatalf("window %d: %d allowed, want %d", window, got, limit)
		}
		clock.Advance(time.Minute)
	}
}

func TestConcurrentManyKeysAcrossWindows(t *testing.T) {
	// Goroutines race Allow against the amortised sweep at each window
	// change; every key must still get exactly limit per window.
	const (
		limit      = 3
		goroutines = 16
		keys       = 200
	)
	clock := &fakeClock{}
	l := NewFixedWindow(limit, time.Second, clock)
	for window := range 4 {
		counts := make([]atomic.Int64, keys)
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range keys {
					k := (i + g*13) % keys
					if ok, _ := l.Allow("key-" + strconv.Itoa(k)); ok {
						counts[k].Add(1)
					}
				}
			})
		}
		wg.Go(func() { l.Sweep() })
		wg.Go(func() { l.Len() })
		wg.Wait()
		for k := range counts {
			if got := counts[k].Load(); got != limit {
				t.Fatalf("window %d key %d: %d allowed, want %d", window, k, got, limit)
			}
		}
		clock.Advance(time.Second)
	}
}

func TestEviction(t *testing.T) {
	const (
		w    = time.Minute
		keys = 5000
	)
	tests := []struct {
		name     string
		evict    func(l *FixedWindow)
		wantLen  int
		wantSwpt int // what an explicit Sweep evicts after evict ran
	}{
		{"Sweep", func(l *FixedWindow) {}, 0, keys},
		{"next Allow", func(l *FixedWindow) { l.Allow("newcomer") }, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{}
			l := NewFixedWindow(2, w, clock)
			for i := range keys {
				l.Allow(fmt.Sprintf("k%d", i))
			}
			if got := l.Len(); got != keys {
				t.Fatalf("Len = %d after %d keys", got, keys)
			}
			if got := l.Sweep(); got != 0 {
				t.Fatalf("Sweep inside the window evicted %d keys", got)
			}
			clock.Advance(w - time.Nanosecond)
			if got := l.Sweep(); got != 0 || l.Len() != keys {
				t.Fatalf("Sweep 1ns before the end evicted %d, Len = %d", got, l.Len())
			}

			clock.Advance(time.Nanosecond)
			if got := l.Len(); got != keys {
				t.Fatalf("Len = %d before any sweep; stale maps should still be held", got)
			}
			tt.evict(l)
			if got := l.Sweep(); got != tt.wantSwpt {
				t.Fatalf("Sweep evicted %d, want %d", got, tt.wantSwpt)
			}
			if got := l.Len(); got != tt.wantLen {
				t.Fatalf("Len = %d after eviction, want %d", got, tt.wantLen)
			}
			// The evicted keys start afresh.
			if ok, _ := l.Allow("k0"); !ok {
				t.Fatal("evicted key denied")
			}
		})
	}
}

func TestMemoryIsBounded(t *testing.T) {
	// 100,000 keys at the 1,000,000-key budget (64 MiB live, 8 MiB after
	// eviction) scaled down, with slack: a limiter that stored the key
	// strings or never evicted would fail one bound or the other.
	const keys = 100_000
	r, err := MeasureMemory(keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name string
		Measurement
	}{{"install ids", r.InstallID}, {"ipv4", r.IPv4}} {
		t.Logf("%s: %d keys: live %.2f MiB, after eviction %.2f MiB", m.name, keys, m.LiveMiB(), m.AfterEvictMiB())
		if m.LiveKeys != keys {
			t.Errorf("%s: Len = %d when full, want %d", m.name, m.LiveKeys, keys)
		}
		if limit := int64(keys * 64); m.LiveBytes > limit {
			t.Errorf("%s: live heap %d B > %d B (64 B per key)", m.name, m.LiveBytes, limit)
		}
		if m.LiveBytes < keys*8 {
			t.Errorf("%s: live heap %d B < 8 B per key: the measurement is broken", m.name, m.LiveBytes)
		}
		if limit := int64(1 << 20); m.AfterEvictBytes > limit {
			t.Errorf("%s: heap after eviction %d B > %d B", m.name, m.AfterEvictBytes, limit)
		}
	}
}

func TestMeasureMemoryRejectsNoKeys(t *testing.T) {
	if _, err := MeasureMemory(0); err == nil {
		t.Fatal("MeasureMemory(0) succeeded")
	}
}

func TestKeyGeneratorsAreDistinctAndWellFormed(t *testing.T) {
	for _, g := range []struct {
		name   string
		next   func() string
		length func(string) bool
	}{
		{"install ids", installIDKeys(), func(s string) bool { return len(s) == 36 && s[14] == '4' }},
		{"ipv4", ipv4Keys(), func(s string) bool { return len(s) >= 7 && len(s) <= 15 }},
	} {
		seen := make(map[string]bool)
		for range 70_000 { // past the 65,536 boundary of the IPv4 generator's low bytes
			k := g.next()
			if seen[k] || !g.length(k) {
				t.Fatalf("%s: repeated or malformed key %q", g.name, k)
			}
			seen[k] = true
		}
	}
}
