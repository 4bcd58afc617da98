// Package ratelimit implements offload.Limiter with a fixed-window counter
// whose memory is bounded: windows that have passed are dropped, so a flood
// of distinct keys (install ids, client IPs) cannot grow the heap without
// limit.
package ratelimit

import (
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/offload-app/offload"
)

// shardBits sets the number of shards (64). Each shard has its own mutex so
// concurrent requests for different keys rarely meet on a lock; 64 is far
// more than the cores we run on, and an empty shard costs a few bytes.
const (
	shardBits = 6
	numShards = 1 << shardBits
)

// FixedWindow allows at most limit events per key in each window.
//
// Windows are aligned: window n covers [epoch+n·window, epoch+(n+1)·window)
// for every key, where epoch is the clock's time when the limiter was made.
// We chose aligned windows over per-key windows (starting at a key's first
// hit) because
//   - eviction is O(1) per shard: when the window index advances, every stored
//     counter is stale at once, so a shard drops its whole table (dropping,
//     not deleting entries, is what returns memory: a Go map never shrinks);
//     per-key windows would need a start time per key (more bytes) and an
//     O(n) scan under the lock to find expired ones;
//   - the worst case is the same: both let a client spend its limit at the
//     end of one window and again at the start of the next (2·limit within
//     one window's length), which is inherent to fixed windows.
//
// The cost is that every blocked client is told to come back at the same
// boundary; at the session and inference limits (a few to a hundred events
// per minute per key) that burst is negligible.
//
// Keys are not stored. A key is reduced to a 64-bit hash keyed with a random
// per-limiter seed (hash/maphash), which keeps each entry at 16 bytes (about
// 32 MiB at a million keys, at the tables' load factor) and keeps install ids
// out of the heap. Two keys that collide share a counter, so one may be
// limited early. With n keys live in one window the chance that any two
// collide is about n²/2⁶⁵: 2.7·10⁻⁸ at n = 1,000,000. The seed is random per
// limiter and no hash ever leaves it, so collisions cannot be aimed at a
// victim's key.
//
// Memory is proportional to the distinct keys seen in the current window;
// there is no hard cap, because a full limiter would have to either refuse
// every new key or stop counting, and the request rate the server can take
// already bounds the keys one window can see.
//
// Eviction needs no goroutine: the first Allow that sees a new window index
// drops every shard's stale table (64 lock/unlock pairs once per window), and
// a shard also resets itself when it is next touched. Sweep does the same on
// demand. Between a window's end and the next call the stale tables remain
// allocated; Len counts them until they are dropped.
type FixedWindow struct {
	limit  uint32
	window time.Duration
	clock  offload.Clock
	epoch  time.Time
	seed   maphash.Seed

	// swept is the highest window index for which the stale-shard sweep has
	// been started; it gates the amortised sweep in Allow to once per window.
	swept  atomic.Int64
	shards [numShards]shard
}

type shard struct {
	shardState
	// Pad to a multiple of a cache line so that neighbouring shards' locks
	// don't share one and bounce it between cores.
	_ [64 - unsafe.Sizeof(shardState{})%64]byte
}

type shardState struct {
	mu  sync.Mutex
	gen int64 // window index the counts in t belong to
	t   table // keyed hash → events allowed in window gen
}

var _ offload.Limiter = (*FixedWindow)(nil)

// NewFixedWindow returns a limiter allowing limit events per key per window.
// A nil clock means offload.SystemClock{}. It panics if limit < 1 or window <= 0:
// configuration validation guarantees both, so anything else is a bug.
// Limits above 2³²−1 are treated as 2³²−1.
func NewFixedWindow(limit int, window time.Duration, clock offload.Clock) *FixedWindow {
	if limit < 1 {
		panic(fmt.Sprintf("ratelimit: limit %d < 1", limit))
	}
	if window <= 0 {
		panic(fmt.Sprintf("ratelimit: window %v <= 0", window))
	}
	if clock == nil {
		clock = offload.SystemClock{}
	}
	l := &FixedWindow{
		limit:  uint32(min(uint64(limit), math.MaxUint32)),
		window: window,
		clock:  clock,
		// A clock.Now() value keeps its monotonic reading, so window
		// indices measured from it don't jump when the wall clock is set.
		epoch: clock.Now(),
		seed:  maphash.MakeSeed(),
	}
	return l
}

// Allow counts one event for key. If the key has used its limit in the
// current window it returns false and the time until the window ends (> 0,
// at most one window). Denied events are not counted.
func (l *FixedWindow) Allow(key string) (bool, time.Duration) {
	h := fold(maphash.String(l.seed, key))
	elapsed := l.clock.Now().Sub(l.epoch)
	g := l.index(elapsed)
	if g > l.swept.Load() {
		l.sweepOnce(g)
	}

	s := &l.shards[h>>(64-shardBits)]
	s.mu.Lock()
	if g > s.gen {
		s.t = table{} // every count is stale; let the GC have the slots
		s.gen = g
	} else if g < s.gen {
		// The clock went backwards (only fake clocks do); count in the
		// shard's newer window rather than resurrecting an old one.
		g = s.gen
	}
	slot := s.t.find(h)
	if slot != nil && slot.h == h {
		// The common repeat visit: one probe, counted in place.
		if slot.c >= l.limit {
			s.mu.Unlock()
			return false, l.retryAfter(g, elapsed)
		}
		slot.c++
	} else {
		s.t.set(h, 1) // limit ≥ 1, so a key's first event is always allowed
	}
	s.mu.Unlock()
	return true, 0
}

// Sweep drops the counters of windows that have ended and returns how many
// keys it evicted. Allow sweeps by itself once per window; Sweep is for tests,
// benchmarks and callers that want memory back before the next request.
func (l *FixedWindow) Sweep() int {
	g := l.index(l.clock.Now().Sub(l.epoch))
	l.advanceSwept(g)
	return l.sweep(g)
}

// Len returns the number of keys whose counters are held in memory. Until a
// sweep runs this includes keys of windows that have already ended.
func (l *FixedWindow) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.t.n
		s.mu.Unlock()
	}
	return n
}

// index returns the window index of elapsed. A negative elapsed (a fake
// clock set before the limiter was made) gives an index at or below 0, which
// Allow treats like any backwards step: it counts in the newest window.
func (l *FixedWindow) index(elapsed time.Duration) int64 {
	return int64(elapsed / l.window)
}

// retryAfter is the time from elapsed to the end of window g, clamped to
// (0, window] in case g was raised past the clock's window.
func (l *FixedWindow) retryAfter(g int64, elapsed time.Duration) time.Duration {
	d := time.Duration(g+1)*l.window - elapsed
	return min(max(d, 1), l.window)
}

// sweepOnce sweeps stale shards if no other caller has started the sweep for
// window g, so the work happens once per window, not once per Allow.
func (l *FixedWindow) sweepOnce(g int64) {
	if l.advanceSwept(g) {
		l.sweep(g)
	}
}

// advanceSwept raises swept to g and reports whether this call raised it.
func (l *FixedWindow) advanceSwept(g int64) bool {
	for {
		cur := l.swept.Load()
		if g <= cur {
			return false
		}
		if l.swept.CompareAndSwap(cur, g) {
			return true
		}
	}
}

// sweep drops every shard's table that belongs to a window before g.
func (l *FixedWindow) sweep(g int64) int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		if s.gen < g {
			n += s.t.n
			s.t = table{}
			s.gen = g
		}
		s.mu.Unlock()
	}
	return n
}
