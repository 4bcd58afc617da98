package failover

import (
	"sync"
	"time"
)

// breaker is a consecutive-failures circuit breaker for one provider.
//
// It is our own rather than sony/gobreaker because the chain needs two
// things gobreaker cannot do: it reads time.Now itself (no clock to inject,
// so the cooldown could only be tested with real sleeps), and its two-step
// API reports outcomes only for requests it admitted, while the chain also
// sends requests its breaker refused (the last provider is always tried) and
// must let their success close the breaker. The whole of it is the eighty
// lines below.
//
// States: closed (every request goes through) → open after threshold
// consecutive failures (requests are refused for cooldown) → half-open (one
// probe goes through; its success closes the breaker, its failure opens it
// for another cooldown, a neutral end lets the next request probe).
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu       sync.Mutex
	state    state
	failures int // consecutive
	openedAt time.Time
	probing  bool // the half-open probe is in flight
}

type state int

const (
	closed state = iota
	open
	halfOpen
)

// transition is what a recorded outcome changed, for metrics and logs.
type transition int

const (
	unchanged   transition = iota
	opened                 // closed → open
	reopened               // half-open → open: the probe (or a forced call) failed
	closedAgain            // open or half-open → closed
)

// allow reports whether a request may go to the provider at now, and
// whether it is the half-open probe (which the caller must end with
// success, failure or release).
func (b *breaker) allow(now time.Time) (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == open {
		if now.Sub(b.openedAt) < b.cooldown {
			return false, false
		}
		b.state = halfOpen
	}
	if b.state == halfOpen {
		if b.probing {
			return false, false
		}
		b.probing = true
		return true, true
	}
	return true, false
}

// success records an answer (or a request the provider refused, which
// proves it is up).
func (b *breaker) success(probe bool) transition {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	b.failures = 0
	if b.state != closed {
		b.state = closed
		return closedAgain
	}
	return unchanged
}

// failure records a failed request that the chain fails over on.
func (b *breaker) failure(now time.Time, probe bool) transition {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	b.failures++
	switch b.state {
	case closed:
		if b.failures >= b.threshold {
			b.state, b.openedAt = open, now
			return opened
		}
	case halfOpen:
		b.state, b.openedAt = open, now
		return reopened
	}
	// Open: a forced call to the last provider failed; the cooldown runs on.
	return unchanged
}

// release ends a probe that proved nothing (the caller went away).
func (b *breaker) release(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// isOpen reports whether requests are being refused or probed (open or
// half-open).
func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state != closed
}
