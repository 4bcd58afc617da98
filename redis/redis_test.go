package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/ratelimit"
	"github.com/offload-app/offload/redis"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
)

var testSecret = []byte("0123456789abcdef-test-secret")

// fakeClock drives the back-off and the log interval without sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// metrics records LimiterFallback calls.
type metrics struct {
	offload.NopMetrics
	mu        sync.Mutex
	fallbacks map[string]int
}

func (m *metrics) LimiterFallback(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fallbacks == nil {
		m.fallbacks = map[string]int{}
	}
	m.fallbacks[name]++
}

func (m *metrics) count(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fallbacks[name]
}

// open opens a Client with the test secret and, unless opts say otherwise, a
// check timeout long enough that a loaded machine (the race detector, CI)
// never falls back in a test that is not about falling back.
func open(t testing.TB, url string, opts ...redis.Option) *redis.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := redis.Open(ctx, url, append([]redis.Option{redis.WithKeySecret(testSecret), redis.WithTimeout(2 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serverMillis is the Redis server's clock in ms since the Unix epoch.
func serverMillis(t testing.TB, rdb *goredis.Client) int64 {
	t.Helper()
	now, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now.UnixMilli()
}

// TestAllowSemantics checks the fixed window against ratelimit.FixedWindow's
// contract: limit allowed per key, then denied with the time to the window's
// end, which is aligned to the Unix epoch on the server's clock; denied
// events are not counted; the key expires with its window.
func TestAllowSemantics(t *testing.T) {
	srv := startServer(t)
	c := open(t, srv.URL())
	rdb := srv.raw(t)

	tests := []struct {
		name   string
		limit  int
		window time.Duration
		calls  int
	}{
		{"one_per_minute", 1, time.Minute, 3},
		{"three_per_hour", 3, time.Hour, 7},
		{"eight_per_7s", 8, 7 * time.Second, 12},
		{"exactly_limit", 5, time.Minute, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := c.Limiter(tt.name, tt.limit, tt.window, nil)
			for _, key := range []string{"install-a", "install-b"} {
				allowed := 0
				for i := range tt.calls {
					before := serverMillis(t, rdb)
					ok, ra := l.Allow(key)
					after := serverMillis(t, rdb)
					if ok {
						allowed++
						if ra != 0 {
							t.Errorf("call %d allowed with retryAfter %v, want 0", i, ra)
						}
						continue
					}
					if i < tt.limit {
						t.Errorf("call %d of %s denied below the limit %d", i, key, tt.limit)
					}
					if ra <= 0 || ra > tt.window {
						t.Fatalf("retryAfter %v outside (0, %v]", ra, tt.window)
					}
					// The window ends at the next multiple of the window
					// since the epoch, on the server's clock.
					w := tt.window.Milliseconds()
					end := (after/w + 1) * w
					if (before/w+1)*w == end {
						want := time.Duration(end-before) * time.Millisecond
						low := time.Duration(end-after) * time.Millisecond
						if ra > want || ra < low {
							t.Errorf("retryAfter %v, want in [%v, %v] (window end on the server's clock)", ra, low, want)
						}
					}
				}
				if want := min(tt.calls, tt.limit); allowed != want {
					t.Errorf("%s: %d of %d allowed, want %d", key, allowed, tt.calls, want)
				}
				// Denied events are not counted, and the key lives no
				// longer than its window.
				rk := l.RedisKey(key)
				if c, err := rdb.HGet(context.Background(), rk, "c").Int(); err != nil || c != allowed {
					t.Errorf("stored count %d (%v), want %d", c, err, allowed)
				}
				ttl, err := rdb.PTTL(context.Background(), rk).Result()
				if err != nil || ttl <= 0 || ttl > tt.window {
					t.Errorf("PTTL %v (%v), want in (0, %v]", ttl, err, tt.window)
				}
			}
		})
	}
}

// TestWindowRollover puts counters of other windows in Redis (rather than
// waiting for real windows to pass) and checks that a stale one is reset and
// a newer one (the server's clock stepped back) is counted in.
func TestWindowRollover(t *testing.T) {
	srv := startServer(t)
	c := open(t, srv.URL())
	rdb := srv.raw(t)
	ctx := context.Background()
	const limit = 2
	window := time.Hour
	w := window.Milliseconds()

	tests := []struct {
		name      string
		offset    int64 // stored window index minus the current one
		wantOK    bool
		wantCount int
	}{
		{"previous_window_is_reset", -1, true, 1},
		{"old_window_is_reset", -1000, true, 1},
		{"same_window_is_full", 0, false, limit},
		{"newer_window_counts", 1, false, limit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := c.Limiter("rollover", limit, window, nil)
			key := "key-" + tt.name
			rk := l.RedisKey(key)
			idx := serverMillis(t, rdb) / w
			if err := rdb.HSet(ctx, rk, "w", idx+tt.offset, "c", limit).Err(); err != nil {
				t.Fatal(err)
			}
			if err := rdb.PExpire(ctx, rk, 10*window).Err(); err != nil {
				t.Fatal(err)
			}
			ok, ra := l.Allow(key)
			if ok != tt.wantOK {
				t.Fatalf("Allow = %v, want %v", ok, tt.wantOK)
			}
			if !ok && (ra <= 0 || ra > window) {
				t.Errorf("retryAfter %v outside (0, %v]", ra, window)
			}
			got, err := rdb.HMGet(ctx, rk, "w", "c").Result()
			if err != nil {
				t.Fatal(err)
			}
			stored, _ := strconv.ParseInt(fmt.Sprint(got[0]), 10, 64)
			count, _ := strconv.Atoi(fmt.Sprint(got[1]))
			if count != tt.wantCount {
				t.Errorf("count %d, want %d", count, tt.wantCount)
			}
			if tt.wantOK {
				// Reset into the current window (or the next, had the
				// test crossed a boundary), expiring with it.
				if stored < idx || stored > idx+1 {
					t.Errorf("stored window %d, want %d", stored, idx)
				}
				if ttl := rdb.PTTL(ctx, rk).Val(); ttl <= 0 || ttl > window {
					t.Errorf("PTTL %v, want in (0, %v]", ttl, window)
				}
			}
		})
	}
}

// TestSharedBetweenInstances: two Clients are two instances; with the same
// Redis, name and secret they share one limit, even when their clocks
// disagree (the windows are the server's).
func TestSharedBetweenInstances(t *testing.T) {
	srv := startServer(t)
	skewed := newFakeClock() // years off the real clock
	tests := []struct {
		name        string
		nameB       string
		secretB     []byte
		wantAllowed int
	}{
		{"shared", "per_ip", testSecret, 8},
		{"other_secret_is_not_shared", "per_ip", []byte("another-secret-of-16+-bytes"), 16},
		{"other_name_is_not_shared", "per_install", testSecret, 16},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := open(t, srv.URL())
			b := open(t, srv.URL(), redis.WithKeySecret(tt.secretB), redis.WithClock(skewed))
			la := a.Limiter("per_ip", 8, time.Minute, nil)
			lb := b.Limiter(tt.nameB, 8, time.Minute, nil)
			key := fmt.Sprintf("203.0.113.%d", i)
			allowed := 0
			for j := range 40 {
				l := la
				if j%2 == 1 {
					l = lb
				}
				if ok, _ := l.Allow(key); ok {
					allowed++
				}
			}
			if allowed != tt.wantAllowed {
				t.Errorf("%d allowed over both instances, want %d", allowed, tt.wantAllowed)
			}
			if a.Degraded() || b.Degraded() {
				t.Error("degraded with Redis up")
			}
		})
	}
}

// TestConcurrentExactlyLimit: many goroutines over two instances, one key:
// exactly limit allowed, none answered by a fallback.
func TestConcurrentExactlyLimit(t *testing.T) {
	srv := startServer(t)
	m := &metrics{}
	opts := []redis.Option{redis.WithMetrics(m)}
	a, b := open(t, srv.URL(), opts...), open(t, srv.URL(), opts...)
	const limit, goroutines, calls = 50, 40, 5
	ls := []*redis.Limiter{a.Limiter("conc", limit, time.Hour, nil), b.Limiter("conc", limit, time.Hour, nil)}

	var allowed, denied atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for i := range calls {
				if ok, _ := ls[(g+i)%2].Allow("one-install"); ok {
					allowed.Add(1)
				} else {
					denied.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if got := allowed.Load(); got != limit {
		t.Errorf("%d allowed, want exactly %d", got, limit)
	}
	if got := allowed.Load() + denied.Load(); got != goroutines*calls {
		t.Errorf("%d answers, want %d", got, goroutines*calls)
	}
	if n := m.count("conc"); n != 0 {
		t.Errorf("%d fallbacks with Redis up", n)
	}
}

// TestKeysHashed: nothing in Redis names a client key in clear, and every
// key expires within its window.
func TestKeysHashed(t *testing.T) {
	srv := startServer(t)
	c := open(t, srv.URL())
	rdb := srv.raw(t)
	ctx := context.Background()
	window := 10 * time.Minute
	l := c.Limiter("session_ip", 2, window, nil)
	keys := []string{
		"0b7e5a1e-6c2f-4d8e-9a4b-3f1d2c5e7a90",
		"203.0.113.77",
		"2001:db8::1",
		"key:with:colons*and?globs",
		"canary-c4n4ry",
		"",
	}
	for _, k := range keys {
		l.Allow(k)
		l.Allow(k)
		l.Allow(k) // denied: the key must exist already
	}

	shape := regexp.MustCompile(`^offload:rl:session_ip:[A-Za-z0-9_-]{22}$`)
	var found []string
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		found = append(found, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(found) != len(keys) {
		t.Errorf("%d keys in Redis, want %d: %q", len(found), len(keys), found)
	}
	for _, rk := range found {
		if !shape.MatchString(rk) {
			t.Errorf("key %q does not have the hashed shape", rk)
		}
		for _, k := range keys {
			if k != "" && strings.Contains(rk, k) {
				t.Errorf("key %q holds the client key %q", rk, k)
			}
		}
		vals, err := rdb.HGetAll(ctx, rk).Result()
		if err != nil {
			t.Fatal(err)
		}
		for f, v := range vals {
			if _, err := strconv.ParseInt(v, 10, 64); err != nil || (f != "w" && f != "c") {
				t.Errorf("key %q holds %q=%q, want only the numbers w and c", rk, f, v)
			}
		}
		if ttl := rdb.PTTL(ctx, rk).Val(); ttl <= 0 || ttl > window {
			t.Errorf("key %q PTTL %v, want in (0, %v]", rk, ttl, window)
		}
	}
}

// instance is one Client of TestRedisKilled with what it observed.
type instance struct {
	c       *redis.Client
	l       *redis.Limiter
	metrics *metrics
	log     *syncBuffer
}

// TestRedisKilled kills Redis under two instances: both keep answering from
// their fallbacks (no error reaches the caller), count every fallback, log
// once a minute without the key, report Degraded and a failing Check, skip
// Redis during the back-off, and recover by themselves once Redis is back on
// the same port. A long outage also opens go-redis's dial breaker (after
// PoolSize failed dials it stops dialing and re-dials once a second in the
// background), which recovery must get through too.
func TestRedisKilled(t *testing.T) {
	tests := []struct {
		name   string
		probes int // failed probes during the outage, one per back-off
	}{
		{"short_outage", 3},
		{"long_outage_opens_the_dial_breaker", 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testRedisKilled(t, tt.probes) })
	}
}

func testRedisKilled(t *testing.T, probes int) {
	srv := startServer(t)
	clock := newFakeClock()
	const limit, canary = 3, "install-canary-9f2d"
	var insts []*instance
	for range 2 {
		in := &instance{metrics: &metrics{}, log: &syncBuffer{}}
		in.c = open(t, srv.URL(), redis.WithClock(clock), redis.WithMetrics(in.metrics),
			redis.WithLogger(slog.New(slog.NewTextHandler(in.log, nil))))
		in.l = in.c.Limiter("kill", limit, time.Hour, ratelimit.NewFixedWindow(limit, time.Hour, clock))
		insts = append(insts, in)
	}
	ctx := context.Background()

	// Up: shared.
	allowed := 0
	for i := range 2 * limit {
		if ok, _ := insts[i%2].l.Allow(canary); ok {
			allowed++
		}
	}
	if allowed != limit {
		t.Fatalf("%d allowed over both with Redis up, want %d", allowed, limit)
	}
	for i, in := range insts {
		if in.c.Degraded() || in.c.Check(ctx) != nil {
			t.Fatalf("instance %d degraded with Redis up", i)
		}
	}

	srv.kill()

	// Down: each instance answers alone from its fallback (a fresh
	// ratelimit.FixedWindow, so limit allowed per instance), quickly.
	const calls = 10
	for i, in := range insts {
		start := time.Now()
		allowed := 0
		for range calls {
			ok, ra := in.l.Allow(canary)
			if ok {
				allowed++
			} else if ra <= 0 || ra > time.Hour {
				t.Errorf("instance %d: fallback retryAfter %v", i, ra)
			}
		}
		// One call fails on the dead server (refused at once); the back-off
		// answers the others without trying.
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("instance %d: %d calls took %v with Redis down", i, calls, d)
		}
		if allowed != limit {
			t.Errorf("instance %d: %d allowed by the fallback, want %d", i, allowed, limit)
		}
		if n := in.metrics.count("kill"); n != calls {
			t.Errorf("instance %d: %d fallbacks counted, want %d", i, n, calls)
		}
		if !in.c.Degraded() {
			t.Errorf("instance %d not degraded with Redis down", i)
		}
		if err := in.c.Check(ctx); !errors.Is(err, redis.ErrUnavailable) {
			t.Errorf("instance %d: Check = %v, want ErrUnavailable", i, err)
		}
	}

	// Probes after each back-off fail again; a second line is logged only
	// a minute after the first.
	for range probes {
		clock.Advance(1100 * time.Millisecond)
		for _, in := range insts {
			in.l.Allow(canary)
		}
	}
	for i, in := range insts {
		if n := strings.Count(in.log.String(), "redis_limiter_fallback"); n != 1 {
			t.Errorf("instance %d: %d fallback lines within a minute, want 1:\n%s", i, n, in.log)
		}
	}
	clock.Advance(time.Minute)
	for _, in := range insts {
		in.l.Allow(canary)
	}
	for i, in := range insts {
		out := in.log.String()
		if n := strings.Count(out, "redis_limiter_fallback"); n != 2 {
			t.Errorf("instance %d: %d fallback lines after a minute, want 2:\n%s", i, n, out)
		}
		if !strings.Contains(out, "limiter=kill") || !regexp.MustCompile(`error_class=(unreachable|timeout)`).MatchString(out) {
			t.Errorf("instance %d: log lacks the limiter or the error class:\n%s", i, out)
		}
		if strings.Contains(out, canary) || strings.Contains(out, strconv.Itoa(srv.Port)) {
			t.Errorf("instance %d: log names the key or the server:\n%s", i, out)
		}
	}

	// Back, empty. Within the back-off the instances still answer in
	// process; after it, the next check goes to Redis.
	srv.restart(t)
	rdb := srv.raw(t)
	for _, in := range insts {
		in.l.Allow(canary)
	}
	if n := rdb.DBSize(ctx).Val(); n != 0 {
		t.Errorf("%d keys written during the back-off, want 0", n)
	}
	// Recovery takes the next probe, or, once go-redis's dial breaker is
	// open, its background re-dial (real time, up to a second).
	deadline := time.Now().Add(5 * time.Second)
	for {
		clock.Advance(1100 * time.Millisecond)
		degraded := false
		for _, in := range insts {
			in.l.Allow("recovery-probe")
			degraded = degraded || in.c.Degraded()
		}
		if !degraded {
			break
		}
		if probes <= 10 {
			t.Fatal("a short outage did not recover on the first probe after the back-off")
		}
		if time.Now().After(deadline) {
			t.Fatal("still degraded 5 s after Redis came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	allowed = 0
	for i := range 2 * limit {
		if ok, _ := insts[i%2].l.Allow(canary); ok {
			allowed++
		}
	}
	if allowed != limit {
		t.Errorf("%d allowed over both after recovery, want %d (shared again)", allowed, limit)
	}
	for i, in := range insts {
		if in.c.Degraded() {
			t.Errorf("instance %d still degraded after recovery", i)
		}
		if err := in.c.Check(ctx); err != nil {
			t.Errorf("instance %d: Check after recovery: %v", i, err)
		}
		if !strings.Contains(in.log.String(), "redis_limiter_recovered") {
			t.Errorf("instance %d: recovery not logged:\n%s", i, in.log)
		}
	}
}

// blackHole accepts connections and never answers: a Redis that hangs.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "redis://" + l.Addr().String()
}

// TestSlowRedis: a Redis that accepts but never answers costs one check its
// timeout, not every request, and never an error.
func TestSlowRedis(t *testing.T) {
	clock := newFakeClock()
	m := &metrics{}
	log := &syncBuffer{}
	start := time.Now()
	c := open(t, blackHole(t), redis.WithClock(clock), redis.WithMetrics(m),
		redis.WithCheckTimeout(100*time.Millisecond), redis.WithTimeout(30*time.Millisecond),
		redis.WithLogger(slog.New(slog.NewTextHandler(log, nil))))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Open took %v on a hanging Redis", d)
	}
	if !c.Degraded() {
		t.Error("not degraded after Open's probe hung")
	}
	l := c.Limiter("slow", 2, time.Minute, nil)

	tests := []struct {
		name    string
		advance time.Duration
		maxTime time.Duration
	}{
		{"in_backoff_answers_at_once", 0, 500 * time.Millisecond},
		{"probe_waits_the_timeout", 1100 * time.Millisecond, 2 * time.Second},
		{"back_in_backoff", 0, 500 * time.Millisecond},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Advance(tt.advance)
			start := time.Now()
			ok, _ := l.Allow(fmt.Sprint("k", i))
			if d := time.Since(start); d > tt.maxTime {
				t.Errorf("Allow took %v, want ≤ %v", d, tt.maxTime)
			}
			if !ok {
				t.Error("first event of a key denied by the fallback")
			}
			if n := m.count("slow"); n != i+1 {
				t.Errorf("%d fallbacks, want %d", n, i+1)
			}
		})
	}
	start = time.Now()
	if err := c.Check(context.Background()); !errors.Is(err, redis.ErrUnavailable) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("Check = %v, want ErrUnavailable (timeout)", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Check took %v", d)
	}
	if !strings.Contains(log.String(), "error_class=timeout") {
		t.Errorf("log lacks error_class=timeout:\n%s", log)
	}
}

func TestOpen(t *testing.T) {
	refused := "redis://127.0.0.1:" + strconv.Itoa(freePort(t))
	tests := []struct {
		name         string
		url          string
		opts         []redis.Option
		wantErr      error
		wantDegraded bool
	}{
		{"bad_url_hides_password", "redis://user:s3cr3t-pw@host:notaport/0", nil, redis.ErrInvalidURL, false},
		{"bad_scheme", "http://user:s3cr3t-pw@127.0.0.1:6379", nil, redis.ErrInvalidURL, false},
		{"no_secret", refused, []redis.Option{redis.WithKeySecret(nil)}, redis.ErrNoSecret, false},
		{"short_secret", refused, []redis.Option{redis.WithKeySecret([]byte("fifteen-bytes.."))}, redis.ErrNoSecret, false},
		{"unreachable_starts_degraded", refused, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]redis.Option{redis.WithKeySecret(testSecret)}, tt.opts...)
			c, err := redis.Open(context.Background(), tt.url, opts...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("error quotes the password: %v", err)
				}
				return
			}
			defer c.Close()
			if c.Degraded() != tt.wantDegraded {
				t.Errorf("Degraded = %v, want %v", c.Degraded(), tt.wantDegraded)
			}
			if ok, _ := c.Limiter("open", 1, time.Minute, nil).Allow("k"); !ok {
				t.Error("first event denied")
			}
		})
	}
}

func TestClose(t *testing.T) {
	srv := startServer(t)
	m := &metrics{}
	c := open(t, srv.URL(), redis.WithMetrics(m))
	l := c.Limiter("close", 1, time.Minute, nil)
	if ok, _ := l.Allow("k"); !ok {
		t.Fatal("first event denied")
	}
	for range 2 {
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	// Answered by the fallback: its own count, so the key starts afresh.
	if ok, _ := l.Allow("k"); !ok || m.count("close") != 1 {
		t.Errorf("after Close: allowed %v, %d fallbacks; want the fallback to answer", ok, m.count("close"))
	}
	if !c.Degraded() || !errors.Is(c.Check(context.Background()), redis.ErrUnavailable) {
		t.Error("closed client reports healthy")
	}
}

func TestLimiterPanics(t *testing.T) {
	c, err := redis.Open(context.Background(), "redis://127.0.0.1:1", redis.WithKeySecret(testSecret),
		redis.WithCheckTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		name   string
		lname  string
		limit  int
		window time.Duration
	}{
		{"empty_name", "", 1, time.Minute},
		{"name_with_colon", "a:b", 1, time.Minute},
		{"upper_case_name", "PerIP", 1, time.Minute},
		{"zero_limit", "x", 0, time.Minute},
		{"sub_ms_window", "x", 1, time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			c.Limiter(tt.lname, tt.limit, tt.window, nil)
		})
	}
}

// TestSetDriverLogger: go-redis's own lines (one per failed dial) go to the
// given logger at debug level rather than to stderr.
func TestSetDriverLogger(t *testing.T) {
	out := &syncBuffer{}
	redis.SetDriverLogger(slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(logging.Enable) // go-redis's default, for the other tests
	c := open(t, "redis://127.0.0.1:"+strconv.Itoa(freePort(t)), redis.WithCheckTimeout(100*time.Millisecond))
	if !c.Degraded() {
		t.Fatal("not degraded on a refused port")
	}
	if got := out.String(); !strings.Contains(got, "level=DEBUG msg=redis_driver") || !strings.Contains(got, "dial") {
		t.Errorf("driver log = %q, want a debug redis_driver line about the dial", got)
	}
}
