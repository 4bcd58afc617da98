package redis

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/ratelimit"
)

// keyPrefix starts every key the limiters write, so an operator can find
// (and a shared Redis can tell apart) the offload's keys.
const keyPrefix = "offload:rl:"

// hashLen is the length of a key's hash in base64url: 16 bytes of the HMAC,
// 128 bits, so two keys of one limiter collide with negligible probability.
const hashLen = 22

// allowScript is one fixed-window check, atomic because Redis runs a script
// alone. KEYS[1] is the key's counter, a hash {w = window index, c = events
// allowed in window w}; ARGV[1] is the limit, ARGV[2] the window in ms. It
// returns {allowed (0 or 1), ms to the end of the window counted in}.
//
// The time is the server's (TIME), and window w covers [w·win, (w+1)·win)
// ms from the Unix epoch, so every instance counts in the same windows
// whatever its own clock. The window is stored in the value rather than in
// the key name so that the script touches only the key it is given (the rule
// for scripts that proxies and clusters rely on). The key expires at its
// window's end; a counter of an older window still alive at the boundary
// millisecond is reset, one of a newer window (the server's clock stepped
// back) is counted in, as ratelimit.FixedWindow does.
const allowScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local idx = math.floor(now / win)
local cur = redis.call('HMGET', KEYS[1], 'w', 'c')
local w = tonumber(cur[1])
if w ~= nil and w >= idx then
  local left = (w + 1) * win - now
  if tonumber(cur[2]) >= limit then
    return {0, left}
  end
  redis.call('HINCRBY', KEYS[1], 'c', 1)
  return {1, left}
end
local left = (idx + 1) * win - now
redis.call('HSET', KEYS[1], 'w', idx, 'c', 1)
redis.call('PEXPIRE', KEYS[1], left)
return {1, left}
`

// errBadReply is a script reply of the wrong shape (another script or a
// proxy answering for Redis).
var errBadReply = errors.New("redis: unexpected script reply")

// Limiter is an offload.Limiter counted in Redis and answered by its
// fallback while Redis fails. It is safe for concurrent use.
type Limiter struct {
	c        *Client
	name     string
	prefix   string // keyPrefix + name + ":"
	limit    int
	window   time.Duration
	args     []any // ARGV of the script, formatted once
	fallback offload.Limiter
	macs     sync.Pool // of hash.Hash: HMAC-SHA256 keyed with the secret
}

var _ offload.Limiter = (*Limiter)(nil)

// Limiter returns a limiter allowing limit events per key per window,
// shared with every instance that uses the same Redis, name and key secret.
// name is a fixed word chosen by the code ("session_ip", …; lower-case
// letters, digits and '_'): it is part of the Redis keys, the metrics label
// and the log lines. Every instance must configure the same limit and window
// for a name.
//
// fallback answers while Redis fails; nil means a ratelimit.FixedWindow of
// the same limit and window. Its windows are its own, so during an outage
// each instance allows up to limit per key per window by itself.
//
// It panics if name is not such a word, limit < 1, or window is under a
// millisecond (the script's resolution): configuration validation guarantees
// them, so anything else is a bug.
func (c *Client) Limiter(name string, limit int, window time.Duration, fallback offload.Limiter) *Limiter {
	if !validName(name) {
		panic(fmt.Sprintf("redis: limiter name %q is not [a-z0-9_]{1,64}", name))
	}
	if limit < 1 {
		panic(fmt.Sprintf("redis: limit %d < 1", limit))
	}
	if window < time.Millisecond {
		panic(fmt.Sprintf("redis: window %v < 1ms", window))
	}
	if fallback == nil {
		fallback = ratelimit.NewFixedWindow(limit, window, c.opt.clock)
	}
	window = window.Truncate(time.Millisecond)
	l := &Limiter{
		c:        c,
		name:     name,
		prefix:   keyPrefix + name + ":",
		limit:    limit,
		window:   window,
		args:     []any{strconv.Itoa(limit), strconv.FormatInt(window.Milliseconds(), 10)},
		fallback: fallback,
	}
	secret := c.opt.secret
	l.macs.New = func() any { return hmac.New(sha256.New, secret) }
	return l
}

// Name returns the limiter's name.
func (l *Limiter) Name() string { return l.name }

// Allow counts one event for key. If the key has used its limit in the
// current window it returns false and the time until the window ends (> 0,
// at most one window). Denied events are not counted. It never fails: when
// Redis does not answer within the timeout, the fallback answers.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	c := l.c
	if !c.useRedis(c.opt.clock.Now().UnixNano()) {
		c.opt.metrics.LimiterFallback(l.name)
		return l.fallback.Allow(key)
	}
	ok, retryAfter, err := l.allowRedis(key)
	if err != nil {
		c.failed(l.name, err)
		c.opt.metrics.LimiterFallback(l.name)
		return l.fallback.Allow(key)
	}
	c.succeeded()
	return ok, retryAfter
}

func (l *Limiter) allowRedis(key string) (bool, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.c.opt.timeout)
	defer cancel()
	r, err := l.c.script.Run(ctx, l.c.rdb, []string{l.redisKey(key)}, l.args...).Int64Slice()
	if err != nil {
		return false, 0, err
	}
	if len(r) != 2 || r[0] < 0 || r[0] > 1 {
		return false, 0, errBadReply
	}
	if r[0] == 1 {
		return true, 0, nil
	}
	d := time.Duration(r[1]) * time.Millisecond
	return false, min(max(d, time.Millisecond), l.window), nil
}

// redisKey is the Redis key of key: the limiter's prefix and 22 base64url
// characters of HMAC-SHA256(secret, name NUL key). The name is hashed in
// too, so one client's keys in two limiters cannot be linked.
func (l *Limiter) redisKey(key string) string {
	m := l.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(l.name))
	m.Write([]byte{0})
	m.Write([]byte(key))
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	l.macs.Put(m)

	buf := make([]byte, 0, len(l.prefix)+hashLen)
	buf = append(buf, l.prefix...)
	buf = base64.RawURLEncoding.AppendEncode(buf, sum[:16])
	return string(buf)
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if (b < 'a' || b > 'z') && (b < '0' || b > '9') && b != '_' {
			return false
		}
	}
	return true
}
