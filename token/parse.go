package token

import (
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting in a payload. Honest payloads are flat; the bound
// keeps a hostile one from costing more than its length.
const maxDepth = 32

// Bits of claims.have, one per required claim.
const (
	haveV uint8 = 1 << iota
	haveKID
	haveIAT
	haveNBF
	haveISS
	haveAUD
	haveEXP
	haveInstallID
	haveAll = haveV | haveKID | haveIAT | haveNBF | haveISS | haveAUD | haveEXP | haveInstallID
)

// claims are the payload fields Verify needs. A bit in have is set only when
// the claim's last occurrence (duplicate keys: the last wins, as in Python's
// json.loads) had the right type: an integer for v, iat, nbf and exp, a
// string for the others. The byte slices point into the payload or arena.
type claims struct {
	have                     uint8
	v, iat, nbf, exp         int64
	kid, iss, aud, installID []byte
}

// parseClaims parses a JSON object strictly (RFC 8259: no NaN, no trailing
// commas, no comments, valid UTF-8) and picks out the claims. Escaped
// strings are unescaped into arena, which needs a capacity of len(data) so
// it never grows. It reports false when data is not one JSON object.
func parseClaims(data, arena []byte) (claims, bool) {
	if !utf8.Valid(data) {
		return claims{}, false
	}
	p := parser{data: data, arena: arena}
	var c claims
	p.ws()
	if !p.object(&c) {
		return claims{}, false
	}
	p.ws()
	return c, p.pos == len(p.data)
}

type parser struct {
	data  []byte
	pos   int
	arena []byte
	depth int
}

func (p *parser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) eat(c byte) bool {
	if p.pos < len(p.data) && p.data[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func (p *parser) peek() byte {
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

// object parses an object at p.pos. With c non-nil it is the top-level
// payload and its members are matched against the claim names.
func (p *parser) object(c *claims) bool {
	if !p.eat('{') {
		return false
	}
	p.depth++
	if p.depth > maxDepth {
		return false
	}
	p.ws()
	if p.eat('}') {
		p.depth--
		return true
	}
	for {
		p.ws()
		key, ok := p.str()
		if !ok {
			return false
		}
		p.ws()
		if !p.eat(':') {
			return false
		}
		p.ws()
		if c != nil {
			ok = p.member(c, key)
		} else {
			ok = p.value()
		}
		if !ok {
			return false
		}
		p.ws()
		if p.eat('}') {
			p.depth--
			return true
		}
		if !p.eat(',') {
			return false
		}
	}
}

// member parses the value of top-level key k into c when k is a claim.
func (p *parser) member(c *claims, k []byte) bool {
	var bit uint8
	var num *int64
	var str *[]byte
	switch string(k) { // compiled to comparisons, no allocation
	case "v":
		bit, num = haveV, &c.v
	case "iat":
		bit, num = haveIAT, &c.iat
	case "nbf":
		bit, num = haveNBF, &c.nbf
	case "exp":
		bit, num = haveEXP, &c.exp
	case "kid":
		bit, str = haveKID, &c.kid
	case "iss":
		bit, str = haveISS, &c.iss
	case "aud":
		bit, str = haveAUD, &c.aud
	case "install_id":
		bit, str = haveInstallID, &c.installID
	default:
		return p.value()
	}
	c.have &^= bit
	switch {
	case num != nil && (p.peek() == '-' || isDigit(p.peek())):
		n, isInt, ok := p.number()
		if !ok {
			return false
		}
		if isInt {
			*num = n
			c.have |= bit
		}
		return true
	case str != nil && p.peek() == '"':
		s, ok := p.str()
		if !ok {
			return false
		}
		*str = s
		c.have |= bit
		return true
	}
	return p.value() // wrong type: valid JSON, but the claim counts as missing
}

// value skips any JSON value, checking its syntax.
func (p *parser) value() bool {
	switch c := p.peek(); {
	case c == '{':
		return p.object(nil)
	case c == '[':
		return p.array()
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '-' || isDigit(c):
		_, _, ok := p.number()
		return ok
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(p.data)-p.pos >= len(lit) && string(p.data[p.pos:p.pos+len(lit)]) == lit {
			p.pos += len(lit)
			return true
		}
	}
	return false
}

func (p *parser) array() bool {
	p.pos++ // '['
	p.depth++
	if p.depth > maxDepth {
		return false
	}
	p.ws()
	if p.eat(']') {
		p.depth--
		return true
	}
	for {
		p.ws()
		if !p.value() {
			return false
		}
		p.ws()
		if p.eat(']') {
			p.depth--
			return true
		}
		if !p.eat(',') {
			return false
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number scans a JSON number. isInt reports a plain integer literal (no
// fraction or exponent) that fits in int64; n is its value then.
func (p *parser) number() (n int64, isInt, ok bool) {
	start := p.pos
	neg := p.eat('-')
	switch {
	case p.eat('0'):
	case isDigit(p.peek()):
		for isDigit(p.peek()) {
			p.pos++
		}
	default:
		return 0, false, false
	}
	digitsEnd := p.pos
	isInt = true
	if p.eat('.') {
		isInt = false
		if !isDigit(p.peek()) {
			return 0, false, false
		}
		for isDigit(p.peek()) {
			p.pos++
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		isInt = false
		p.pos++
		if c := p.peek(); c == '+' || c == '-' {
			p.pos++
		}
		if !isDigit(p.peek()) {
			return 0, false, false
		}
		for isDigit(p.peek()) {
			p.pos++
		}
	}
	if !isInt {
		return 0, false, true
	}
	digits := p.data[start:digitsEnd]
	if neg {
		digits = digits[1:]
	}
	// Accumulate negatively so that math.MinInt64 fits.
	const minInt64 = -1 << 63
	for _, d := range digits {
		if n < minInt64/10 {
			return 0, false, true
		}
		n *= 10
		if n < minInt64+int64(d-'0') {
			return 0, false, true
		}
		n -= int64(d - '0')
	}
	if !neg {
		if n == minInt64 {
			return 0, false, true
		}
		n = -n
	}
	return n, true, true
}

// str scans a JSON string and returns its content: a slice of the input
// when it has no escapes, else the unescaped text in the arena. Lone
// surrogates become U+FFFD, as encoding/json does.
func (p *parser) str() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.pos
	for {
		if p.pos >= len(p.data) {
			return nil, false
		}
		c := p.data[p.pos]
		if c == '"' {
			s := p.data[start:p.pos]
			p.pos++
			return s, true
		}
		if c < 0x20 {
			return nil, false
		}
		if c == '\\' {
			break
		}
		p.pos++
	}
	// Slow path: copy what we have, then unescape the rest.
	out := len(p.arena)
	p.arena = append(p.arena, p.data[start:p.pos]...)
	for {
		if p.pos >= len(p.data) {
			return nil, false
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return p.arena[out:], true
		case c < 0x20:
			return nil, false
		case c != '\\':
			p.arena = append(p.arena, c)
			p.pos++
			continue
		}
		p.pos++ // the backslash
		if p.pos >= len(p.data) {
			return nil, false
		}
		e := p.data[p.pos]
		p.pos++
		switch e {
		case '"', '\\', '/':
			p.arena = append(p.arena, e)
		case 'b':
			p.arena = append(p.arena, '\b')
		case 'f':
			p.arena = append(p.arena, '\f')
		case 'n':
			p.arena = append(p.arena, '\n')
		case 'r':
			p.arena = append(p.arena, '\r')
		case 't':
			p.arena = append(p.arena, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, false
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				save := p.pos
				if p.eat('\\') && p.eat('u') {
					if r2, ok = p.hex4(); !ok {
						return nil, false
					}
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
				} else {
					r = utf8.RuneError
					p.pos = save // the next escape stands on its own
				}
			}
			p.arena = utf8.AppendRune(p.arena, r)
		default:
			return nil, false
		}
	}
}

func (p *parser) hex4() (rune, bool) {
	if len(p.data)-p.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case isDigit(c):
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}
