// Package clientip decides which address a request comes from, for per-IP
// rate limits. The client is the TCP peer; X-Forwarded-For is believed only
// when the peer is a trusted proxy, and then only as far as the chain of
// trusted proxies reaches. A client that sends its own X-Forwarded-For
// directly cannot choose its address.
package clientip

import (
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds a request's client address. It is immutable and safe for
// concurrent use.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a resolver that believes X-Forwarded-For from peers inside
// trusted. Prefixes are masked; IPv4-mapped IPv6 prefixes
// (::ffff:10.0.0.0/104) become their IPv4 form because addresses are
// compared unmapped; invalid prefixes are ignored. An empty list trusts no
// one, and the header is never read.
func New(trusted []netip.Prefix) *Resolver {
	r := &Resolver{}
	for _, p := range trusted {
		if !p.IsValid() {
			continue
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		r.trusted = append(r.trusted, p.Masked())
	}
	return r
}

// ClientIP returns the client address of req. It never fails: when
// X-Forwarded-For is absent, untrusted or unusable it falls back to the
// nearest trusted hop or the peer. The result is the zero Addr only if
// req.RemoteAddr cannot be parsed.
//
// With a trusted peer, the X-Forwarded-For lines are read as one
// comma-separated chain in header order and walked from the right (the
// nearest hop first): addresses inside trusted prefixes are proxies and are
// skipped; the first untrusted address is the client. If every address is
// trusted, the left-most one is the client. An entry that is not an address
// ends the walk and the last trusted hop is used: anything left of garbage
// may have been written by the client.
func (r *Resolver) ClientIP(req *http.Request) netip.Addr {
	peer := parsePeer(req.RemoteAddr)
	if !r.isTrusted(peer) {
		return peer
	}
	client := peer
	lines := req.Header.Values("X-Forwarded-For")
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for {
			entry := rest
			cut := strings.LastIndexByte(rest, ',')
			if cut >= 0 {
				entry, rest = rest[cut+1:], rest[:cut]
			}
			a, ok := parseEntry(entry)
			if !ok {
				return client
			}
			if !r.isTrusted(a) {
				return a
			}
			client = a
			if cut < 0 {
				break
			}
		}
	}
	return client
}

func (r *Resolver) isTrusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parsePeer parses RemoteAddr ("host:port", as net/http sets it; a bare
// address is accepted for servers behind other listeners). The zone of a
// link-local peer is dropped: it names our interface, not the client.
func parsePeer(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// parseEntry parses one X-Forwarded-For element: an IP address, optionally
// with a port ("192.0.2.1:8080", "[2001:db8::1]:8080") as some proxies add
// one. Surrounding spaces and tabs are allowed; anything else, including an
// empty element and a zone (meaningless off the sender's host), is garbage.
func parseEntry(s string) (netip.Addr, bool) {
	s = strings.Trim(s, " \t")
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
