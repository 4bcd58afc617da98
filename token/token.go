// Package token issues and verifies session tokens v2, byte-compatible with
// the existing Python deployment: the same key, time and install id give the
// same token there and here, and each side verifies the other's tokens.
//
//	token   = base64url(payload JSON) "." base64url(HMAC-SHA256(key[kid], payload segment))
//	payload = {"v":2,"kid":…,"iat":…,"nbf":…,"iss":…,"aud":…,"install_id":…,"exp":…}
//
// The payload is written the way Python's json.dumps(separators=(",", ":"))
// writes it (ASCII only, \uXXXX escapes), so it is encoded by hand here.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/offload-app/offload"
)

// Version is the token format version, claim "v".
const Version = 2

// MaxLen bounds the tokens Verify looks at. Honest tokens are a few hundred
// bytes (install ids are at most 128 characters); the cap keeps the work
// per request small whatever arrives in a header.
const MaxLen = 16 << 10

// scratchKeep is the largest scratch buffer returned to the pool, so one
// large token does not pin a large buffer.
const scratchKeep = 4 << 10

// Options configures a Codec. Keys maps kid → key bytes and must hold
// ActiveKID, which signs new tokens; every kid in Keys verifies.
type Options struct {
	Issuer, Audience, ActiveKID string
	Keys                        map[string][]byte
	TTL                         time.Duration // whole seconds count; at least 1s
}

// Codec issues and verifies tokens. It is immutable after New and safe for
// concurrent use.
type Codec struct {
	issuer, audience string
	ttl              int64 // seconds
	active           *macKey
	keys             map[string]*macKey

	// Constant parts of every issued payload, already JSON-escaped:
	// {"v":2,"kid":"…","iat":   and   ,"iss":"…","aud":"…","install_id":"
	head, mid []byte

	scratch sync.Pool // *[]byte
}

// macKey holds HMAC states for one key; hmac.New has hashed the padded key
// once, and Reset restores that state without rehashing.
type macKey struct {
	pool sync.Pool // *mac
}

type mac struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newMACKey(key []byte) *macKey {
	key = append([]byte(nil), key...) // the caller's slice may change later
	m := &macKey{}
	m.pool.New = func() any { return &mac{h: hmac.New(sha256.New, key)} }
	return m
}

// sign returns HMAC-SHA256 of msg. The result is valid until m.put(s).
func (k *macKey) sign(msg []byte) *mac {
	s := k.pool.Get().(*mac)
	s.h.Reset()
	s.h.Write(msg)
	s.h.Sum(s.sum[:0])
	return s
}

func (k *macKey) put(s *mac) { k.pool.Put(s) }

// New checks o and precomputes the per-kid HMAC state. Issuer, audience and
// kids are trimmed, as the deployment does; all must be non-empty, and so
// must every key.
func New(o Options) (*Codec, error) {
	c := &Codec{
		issuer:   strings.TrimSpace(o.Issuer),
		audience: strings.TrimSpace(o.Audience),
		ttl:      int64(o.TTL / time.Second),
		keys:     make(map[string]*macKey, len(o.Keys)),
	}
	activeKID := strings.TrimSpace(o.ActiveKID)
	if c.issuer == "" || c.audience == "" || activeKID == "" {
		return nil, errors.New("token: issuer, audience and active kid must be non-empty")
	}
	if !utf8.ValidString(c.issuer) || !utf8.ValidString(c.audience) || !utf8.ValidString(activeKID) {
		return nil, errors.New("token: issuer, audience and active kid must be valid UTF-8")
	}
	if c.ttl < 1 {
		return nil, errors.New("token: TTL must be at least one second")
	}
	for kid, key := range o.Keys {
		kid = strings.TrimSpace(kid)
		if kid == "" || len(key) == 0 {
			return nil, errors.New("token: key ids and keys must be non-empty")
		}
		if _, dup := c.keys[kid]; dup {
			return nil, errors.New("token: duplicate key id after trimming")
		}
		c.keys[kid] = newMACKey(key)
	}
	c.active = c.keys[activeKID]
	if c.active == nil {
		return nil, errors.New("token: no key for the active kid")
	}

	c.head = append(c.head, `{"v":2,"kid":"`...)
	c.head = appendPyString(c.head, activeKID)
	c.head = append(c.head, `","iat":`...)
	c.mid = append(c.mid, `,"iss":"`...)
	c.mid = appendPyString(c.mid, c.issuer)
	c.mid = append(c.mid, `","aud":"`...)
	c.mid = appendPyString(c.mid, c.audience)
	c.mid = append(c.mid, `","install_id":"`...)

	c.scratch.New = func() any { b := make([]byte, 0, 1024); return &b }
	return c, nil
}

func (c *Codec) getScratch() *[]byte { return c.scratch.Get().(*[]byte) }

func (c *Codec) putScratch(b *[]byte) {
	if cap(*b) <= scratchKeep {
		*b = (*b)[:0]
		c.scratch.Put(b)
	}
}

// Issue mints a token for installID with iat = nbf = now (Unix seconds) and
// exp = iat + TTL. installID must be non-empty valid UTF-8: anything else
// could never verify, here or in the deployment.
func (c *Codec) Issue(installID string, now time.Time) (tok string, expiresAt time.Time, err error) {
	if installID == "" || !utf8.ValidString(installID) {
		return "", time.Time{}, errors.New("token: install id must be non-empty valid UTF-8")
	}
	iat := now.Unix()
	exp := iat + c.ttl
	if exp < iat {
		return "", time.Time{}, errors.New("token: expiry out of range")
	}

	sp := c.getScratch()
	b := (*sp)[:0]
	b = append(b, c.head...)
	b = strconv.AppendInt(b, iat, 10)
	b = append(b, `,"nbf":`...)
	b = strconv.AppendInt(b, iat, 10)
	b = append(b, c.mid...)
	b = appendPyString(b, installID)
	b = append(b, `","exp":`...)
	b = strconv.AppendInt(b, exp, 10)
	b = append(b, '}')

	n := len(b)
	b = base64.RawURLEncoding.AppendEncode(b, b[:n])
	s := c.active.sign(b[n:])
	b = append(b, '.')
	b = base64.RawURLEncoding.AppendEncode(b, s.sum[:])
	c.active.put(s)

	tok = string(b[n:])
	*sp = b
	c.putScratch(sp)
	return tok, time.Unix(exp, 0).UTC(), nil
}

func invalid() error { return &offload.Error{Code: offload.CodeInvalidToken} }

// Verify checks tok as the contract says and returns its claims. Every
// failure is an *offload.Error with code invalid_token, or expired_token
// when the token is valid in every other way but exp ≤ now.
//
// Like the deployment it accepts either base64 alphabet and padding present
// or absent. Unlike it, claims must have the types both sides write
// (integers for v, iat, nbf, exp; strings for the rest): the deployment would
// also take "123" or 1.5 for an integer and any JSON value as a string. No
// token either side mints is affected, and such payloads need the key anyway.
func (c *Codec) Verify(tok string, now time.Time) (offload.Claims, error) {
	if len(tok) > MaxLen {
		return offload.Claims{}, invalid()
	}
	dot := strings.IndexByte(tok, '.')
	if dot < 0 {
		return offload.Claims{}, invalid()
	}
	payloadSeg, sigSeg := tok[:dot], tok[dot+1:]

	var sig [sha256.Size]byte
	sigLen, ok := decodeB64(sig[:], sigSeg)
	if !ok {
		return offload.Claims{}, invalid()
	}

	sp := c.getScratch()
	defer c.putScratch(sp)
	// Layout of the scratch buffer: the payload segment as bytes (what the
	// MAC covers), then the decoded payload, then room for unescaped strings.
	need := len(payloadSeg) + len(payloadSeg)*3/4 + 3 + len(payloadSeg)
	if cap(*sp) < need {
		*sp = make([]byte, 0, need)
	}
	b := append((*sp)[:0], payloadSeg...)
	segBytes := b[:len(payloadSeg)]
	payloadLen, ok := decodeB64(b[len(b):cap(b)], payloadSeg)
	if !ok {
		return offload.Claims{}, invalid()
	}
	payload := b[len(b) : len(b)+payloadLen]
	arena := b[len(b)+payloadLen : len(b)+payloadLen : cap(b)]

	cl, ok := parseClaims(payload, arena)
	if !ok || cl.have&haveKID == 0 || len(cl.kid) == 0 {
		return offload.Claims{}, invalid()
	}
	key := c.keys[string(cl.kid)] // no allocation: map index by string(bytes)
	if key == nil {
		return offload.Claims{}, invalid()
	}
	s := key.sign(segBytes)
	good := sigLen == sha256.Size && hmac.Equal(s.sum[:], sig[:])
	key.put(s)
	if !good {
		return offload.Claims{}, invalid()
	}

	if cl.have != haveAll ||
		cl.v != Version ||
		string(cl.iss) != c.issuer || string(cl.aud) != c.audience ||
		len(cl.installID) == 0 ||
		cl.nbf < cl.iat {
		return offload.Claims{}, invalid()
	}
	t := now.Unix() // floor: for whole-second claims, t < nbf ⇔ now < nbf
	if t < cl.nbf {
		return offload.Claims{}, invalid()
	}
	if cl.exp <= t {
		return offload.Claims{}, &offload.Error{Code: offload.CodeExpiredToken}
	}
	return offload.Claims{InstallID: string(cl.installID), ExpiresAt: time.Unix(cl.exp, 0).UTC()}, nil
}

// decodeB64 decodes base64 in either alphabet (URL-safe or standard, as
// Python's urlsafe_b64decode accepts both), with or without trailing '='
// padding, into dst. It reports false for any other character, for a
// length no encoding produces, or when dst is too small. Unused low bits of
// the last character are ignored, as in Python.
func decodeB64(dst []byte, src string) (int, bool) {
	for len(src) > 0 && src[len(src)-1] == '=' {
		src = src[:len(src)-1]
	}
	tail := len(src) % 4
	if tail == 1 {
		return 0, false
	}
	full := len(src) - tail
	n := full/4*3 + max(tail-1, 0)
	if n > len(dst) {
		return 0, false
	}
	dst = dst[:n]
	j := 0
	for i := 0; i < full; i += 4 {
		a, b, c, d := b64Dec[src[i]], b64Dec[src[i+1]], b64Dec[src[i+2]], b64Dec[src[i+3]]
		if (a|b|c|d)&0xc0 != 0 {
			return 0, false
		}
		dst[j] = a<<2 | b>>4
		dst[j+1] = b<<4 | c>>2
		dst[j+2] = c<<6 | d
		j += 3
	}
	if tail == 0 {
		return n, true
	}
	a, b, c := b64Dec[src[full]], b64Dec[src[full+1]], byte(0)
	if tail == 3 {
		c = b64Dec[src[full+2]]
	}
	if (a|b|c)&0xc0 != 0 {
		return 0, false
	}
	dst[j] = a<<2 | b>>4
	if tail == 3 {
		dst[j+1] = b<<4 | c>>2
	}
	return n, true
}

// b64Dec maps a byte to its value in either base64 alphabet, or 0xff.
const b64Dec = "" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x3e\xff\x3e\xff\x3f" +
	"\x34\x35\x36\x37\x38\x39\x3a\x3b\x3c\x3d\xff\xff\xff\xff\xff\xff" +
	"\xff\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e" +
	"\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\xff\xff\xff\xff\x3f" +
	"\xff\x1a\x1b\x1c\x1d\x1e\x1f\x20\x21\x22\x23\x24\x25\x26\x27\x28" +
	"\x29\x2a\x2b\x2c\x2d\x2e\x2f\x30\x31\x32\x33\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"

// appendPyString appends s escaped as Python's json.dumps does with its
// default ensure_ascii=True: \" \\ \n \r \t \b \f, every other byte outside
// printable ASCII (0x20–0x7e) as \u00xx, and every non-ASCII code point as
// \uxxxx in lower-case hex, as a UTF-16 surrogate pair above U+FFFF.
// Unlike encoding/json, <, > and & stay as they are.
func appendPyString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	u := func(b []byte, r rune) []byte {
		return append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20 || c == 0x7f:
				b = u(b, rune(c))
			default:
				b = append(b, c)
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r > 0xffff {
			r -= 0x10000
			b = u(b, 0xd800+(r>>10))
			b = u(b, 0xdc00+(r&0x3ff))
			continue
		}
		b = u(b, r) // invalid bytes arrive as U+FFFD; callers pass valid UTF-8
	}
	return b
}
