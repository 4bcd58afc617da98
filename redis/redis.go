// Package redis shares rate limits between instances through one Redis
// server (github.com/redis/go-redis/v9).
//
// A Client owns one connection pool; each Limiter it makes implements
// offload.Limiter with the fixed-window semantics of ratelimit.FixedWindow
// (at most limit events per key per window, denied events not counted,
// retryAfter is the time to the window's end), counted in Redis so that N
// instances together allow limit events, not N·limit.
//
// Each check is one atomic Lua script (EVALSHA): it reads the server's clock
// (TIME), finds the window the instant falls in, counting windows from the
// Unix epoch so that every instance shares them whatever its own clock says,
// increments the key's count if it is below the limit and sets the key to
// expire at the window's end. No read-then-write happens in Go.
//
// Keys in Redis are keyed hashes: offload:rl:<limiter>:<22 base64url chars
// of HMAC-SHA256(secret, limiter, key)>. Whoever can read Redis sees neither
// install ids nor client IPs, and without the secret cannot test a guess.
//
// Redis is an optimisation of the limits, not a dependency of the service:
// when a check fails or takes longer than the per-check timeout (50 ms by
// default), the limiter answers from its in-process fallback, counts the
// fallback in offload.Metrics.LimiterFallback, logs it at most once a minute
// and skips Redis for a back-off (1 s) before one check probes it again, so
// a dead Redis does not add its timeout to every request. The first check
// that succeeds ends the degraded state.
package redis

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/offload-app/offload"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of the options.
const (
	// DefaultTimeout bounds one limiter check: tens of milliseconds, so a
	// slow Redis costs a request little before the fallback answers.
	DefaultTimeout = 50 * time.Millisecond
	// DefaultCheckTimeout bounds Check, Open's first probe, and each dial
	// and socket read or write.
	DefaultCheckTimeout = 500 * time.Millisecond
	// DefaultBackoff is how long checks skip Redis after one failed.
	DefaultBackoff = time.Second
	// MinSecretLen is the shortest key secret Open accepts.
	MinSecretLen = 16
)

// logInterval is the least time between two log lines of one kind per Client.
const logInterval = time.Minute

var (
	// ErrInvalidURL is returned by Open for a URL go-redis cannot parse. It
	// never quotes the URL, which may hold a password.
	ErrInvalidURL = errors.New("redis: invalid URL (want redis://, rediss:// or unix://)")
	// ErrNoSecret is returned by Open without a key secret of at least
	// MinSecretLen bytes.
	ErrNoSecret = errors.New("redis: key secret missing or shorter than 16 bytes")
	// ErrUnavailable is wrapped by Check's errors.
	ErrUnavailable = errors.New("redis: unavailable")
)

// Option configures Open.
type Option func(*options)

type options struct {
	secret       []byte
	timeout      time.Duration
	checkTimeout time.Duration
	backoff      time.Duration
	clock        offload.Clock
	logger       *slog.Logger
	metrics      offload.Metrics
}

// WithKeySecret sets the secret the keys' HMAC is keyed with (required, at
// least MinSecretLen bytes). Every instance sharing a Redis must use the same
// secret, or their keys differ and nothing is shared; DeriveKeySecret makes
// one from a secret the instances already share.
func WithKeySecret(secret []byte) Option {
	return func(o *options) { o.secret = append([]byte(nil), secret...) }
}

// WithTimeout bounds one limiter check, dial included (default 50 ms).
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithCheckTimeout bounds Check and Open's first probe, and is the socket
// dial, read and write timeout (default 500 ms).
func WithCheckTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.checkTimeout = d
		}
	}
}

// WithBackoff sets how long checks skip Redis after a failure before one of
// them probes it again (default 1 s; 0 probes on every check).
func WithBackoff(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.backoff = d
		}
	}
}

// WithClock sets the clock of the back-off and of the log interval (not of
// the windows, which follow the Redis server's clock).
func WithClock(c offload.Clock) Option {
	return func(o *options) {
		if c != nil {
			o.clock = c
		}
	}
}

// WithLogger sets where fallbacks and recoveries are logged (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithMetrics sets the receiver of LimiterFallback (default offload.NopMetrics).
func WithMetrics(m offload.Metrics) Option {
	return func(o *options) {
		if m != nil {
			o.metrics = m
		}
	}
}

// DeriveKeySecret derives the key secret from a secret every instance
// already shares (the session signing secret), so that operators have no
// second secret to distribute and the signing secret itself never keys
// anything else.
func DeriveKeySecret(shared []byte) []byte {
	m := hmac.New(sha256.New, shared)
	m.Write([]byte("offload redis limiter keys v1"))
	return m.Sum(nil)
}

// Client is a connection pool to one Redis server and the health state its
// limiters share. It is safe for concurrent use.
type Client struct {
	opt    options
	rdb    *goredis.Client
	script *goredis.Script

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// degraded is set by a failed check and cleared by the next successful
	// one. While it is set, checks skip Redis until the clock (UnixNano)
	// reaches retryAt; the one check that moves retryAt on probes Redis.
	degraded atomic.Bool
	retryAt  atomic.Int64

	// Clock readings (UnixNano) of the last log line of each kind; 0 is
	// "never", which the first line always passes.
	lastFailLog    atomic.Int64
	lastRecoverLog atomic.Int64
	loggedAny      atomic.Bool // a failure line was written, so a recovery is worth one
}

// Open makes a Client for the Redis at rawURL (redis://[user:pass@]host:port/db,
// rediss:// for TLS, or unix://), with dial, read and write timeouts bounded
// by the check timeout, no retries inside a check (a failed check falls back
// at once) and RESP3.
//
// Open fails only on configuration errors. It then probes Redis (PING and
// loading the script, bounded by ctx and the check timeout); if Redis does not
// answer, the failure is logged and the Client starts degraded: its limiters
// answer in process until Redis is reachable. An instance does not refuse to
// start because a non-critical service is down.
func Open(ctx context.Context, rawURL string, opts ...Option) (*Client, error) {
	o := options{
		timeout:      DefaultTimeout,
		checkTimeout: DefaultCheckTimeout,
		backoff:      DefaultBackoff,
		clock:        offload.SystemClock{},
		logger:       slog.New(slog.DiscardHandler),
		metrics:      offload.NopMetrics{},
	}
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.secret) < MinSecretLen {
		return nil, ErrNoSecret
	}
	ro, err := goredis.ParseURL(rawURL)
	if err != nil {
		// url.Parse's errors quote the whole URL, password included.
		return nil, ErrInvalidURL
	}
	// A check is bounded by its context; these bound what has no context
	// deadline of ours (background re-dials) and are never longer than a
	// readiness probe.
	ro.DialTimeout = o.checkTimeout
	ro.ReadTimeout = o.checkTimeout
	ro.WriteTimeout = o.checkTimeout
	ro.ContextTimeoutEnabled = true
	// A retried check would spend the request's time on a Redis that just
	// failed; the fallback answers instead and the back-off retries later.
	ro.MaxRetries = -1
	ro.DialerRetries = 1
	// Fewer commands per new connection (and none a Redis < 7.2 refuses).
	ro.DisableIdentity = true
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if ro.ClientName == "" {
		ro.ClientName = "offload"
	}

	c := &Client{opt: o, rdb: goredis.NewClient(ro), script: goredis.NewScript(allowScript)}
	if err := c.probe(ctx); err != nil {
		c.failed("", err)
	}
	return c, nil
}

// probe pings Redis and loads the script, so the first check is one EVALSHA.
func (c *Client) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opt.checkTimeout)
	defer cancel()
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return err
	}
	return c.script.Load(ctx, c.rdb).Err()
}

// Check pings Redis, bounded by ctx and the check timeout: the readiness
// check (non-critical: when it fails the limiters fall back, the service
// still serves). Its error wraps ErrUnavailable and names only the error's
// class. Check does not change the limiters' state.
func (c *Client) Check(ctx context.Context) error {
	if c.closed.Load() {
		return fmt.Errorf("%w (%s)", ErrUnavailable, classClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opt.checkTimeout)
	defer cancel()
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		class, _ := classify(err)
		return fmt.Errorf("%w (%s)", ErrUnavailable, class)
	}
	return nil
}

// Degraded reports whether the limiters are answering in process: the last
// check that tried Redis failed and none has succeeded since.
func (c *Client) Degraded() bool { return c.closed.Load() || c.degraded.Load() }

// Close closes the connection pool. Limiters keep answering afterwards, in
// process. It is safe to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if err := c.rdb.Close(); err != nil {
			class, _ := classify(err)
			c.closeErr = fmt.Errorf("redis: close: %s", class)
		}
	})
	return c.closeErr
}

// useRedis reports whether a check at now should try Redis: always while
// healthy; while degraded, only the first check after the back-off, which
// pushes the next probe one back-off later so concurrent checks don't all
// wait on a dead server.
func (c *Client) useRedis(now int64) bool {
	if c.closed.Load() {
		return false
	}
	if !c.degraded.Load() {
		return true
	}
	at := c.retryAt.Load()
	if now < at {
		return false
	}
	return c.retryAt.CompareAndSwap(at, now+int64(c.opt.backoff))
}

// failed enters (or stays in) the degraded state after err and logs it if no
// failure was logged in the last minute. limiter is a fixed name; the log
// line holds nothing else but the error's class.
func (c *Client) failed(limiter string, err error) {
	now := c.opt.clock.Now().UnixNano()
	c.retryAt.Store(now + int64(c.opt.backoff))
	c.degraded.Store(true)
	if !c.gate(&c.lastFailLog, now) {
		return
	}
	c.loggedAny.Store(true)
	class, code := classify(err)
	attrs := make([]slog.Attr, 0, 3)
	if limiter != "" {
		attrs = append(attrs, slog.String("limiter", limiter))
	}
	attrs = append(attrs, slog.String("error_class", class))
	if code != "" {
		attrs = append(attrs, slog.String("redis_code", code))
	}
	c.opt.logger.LogAttrs(context.Background(), slog.LevelWarn, "redis_limiter_fallback", attrs...)
}

// succeeded ends the degraded state.
func (c *Client) succeeded() {
	if !c.degraded.Load() || !c.degraded.CompareAndSwap(true, false) {
		return
	}
	if c.loggedAny.Load() && c.gate(&c.lastRecoverLog, c.opt.clock.Now().UnixNano()) {
		c.opt.logger.LogAttrs(context.Background(), slog.LevelInfo, "redis_limiter_recovered")
	}
}

// gate reports whether a log line of the kind last stands for may be written
// at now, and if so records now.
func (c *Client) gate(last *atomic.Int64, now int64) bool {
	prev := last.Load()
	if prev != 0 && now-prev < int64(logInterval) {
		return false
	}
	if now == 0 {
		now = 1 // 0 means "never" (only a fake clock reads the epoch)
	}
	return last.CompareAndSwap(prev, now)
}

// SetDriverLogger sends go-redis's own log lines (a failed dial, a
// connection that would not close) to l at debug level, instead of go-redis's
// default of one unstructured stderr line per failed dial. go-redis keeps one
// logger per process, so call it once, from main. Its lines may name the
// server's address, never a key: the limiters' own warnings
// (redis_limiter_fallback, once a minute) are the ones to alert on.
func SetDriverLogger(l *slog.Logger) {
	goredis.SetLogger(driverLogger{l})
}

type driverLogger struct{ l *slog.Logger }

func (d driverLogger) Printf(ctx context.Context, format string, v ...any) {
	if d.l.Enabled(ctx, slog.LevelDebug) {
		d.l.LogAttrs(ctx, slog.LevelDebug, "redis_driver", slog.String("detail", fmt.Sprintf(format, v...)))
	}
}
