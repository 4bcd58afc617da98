package clientip

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// FuzzClientIP feeds arbitrary RemoteAddr and X-Forwarded-For values. It
// checks that ClientIP never panics, that without trusted proxies the header
// never matters, and that with them the answer is either the peer or an
// address that is literally in the header, and only when the peer is trusted.
func FuzzClientIP(f *testing.F) {
	for _, seed := range [][3]string{
		{"203.0.113.7:5555", "198.51.100.1", ""},
		{"10.0.0.2:80", "1.1.1.1, 198.51.100.1", "10.9.9.9"},
		{"10.0.0.2:80", "10.1.1.1,10.2.2.2", ""},
		{"10.0.0.2:80", "garbage, 198.51.100.1", "10.9.9.9, garbage"},
		{"[2001:db8:cd::5]:443", "2001:db8:aa::1", "[2001:db8::7]:4711"},
		{"[::ffff:10.0.0.2]:80", "::ffff:198.51.100.1", "fe80::1%eth0"},
		{"[fe80::1%eth0]:80", "", ","},
		{"10.0.0.2", " \t198.51.100.1\t ", ",,"},
		{"@", "198.51.100.1", ""},
		{"", "", ""},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	untrusting := New(nil)
	trusting := New([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8:cd::/48"),
		netip.MustParsePrefix("::ffff:172.16.0.0/108"),
	})
	f.Fuzz(func(t *testing.T, remote, xff1, xff2 string) {
		bare := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		req := &http.Request{RemoteAddr: remote, Header: http.Header{
			"X-Forwarded-For": {xff1, xff2},
		}}

		peer := untrusting.ClientIP(bare)
		if got := untrusting.ClientIP(req); got != peer {
			t.Fatalf("no trusted proxies: ClientIP = %v with the header, %v without", got, peer)
		}
		if ap, err := netip.ParseAddrPort(remote); err == nil && peer != ap.Addr().Unmap().WithZone("") {
			t.Fatalf("peer %v, RemoteAddr %q", peer, remote)
		}
		if peer.Is4In6() || peer.Zone() != "" {
			t.Fatalf("peer %v is mapped or zoned", peer)
		}

		got := trusting.ClientIP(req)
		if got == peer {
			return
		}
		if !trusting.isTrusted(peer) {
			t.Fatalf("untrusted peer %v, yet ClientIP = %v", peer, got)
		}
		if !inHeader(got, xff1+","+xff2) {
			t.Fatalf("ClientIP = %v is neither the peer %v nor in the header", got, peer)
		}
		if got.Is4In6() || got.Zone() != "" {
			t.Fatalf("ClientIP = %v is mapped or zoned", got)
		}
	})
}

// inHeader reports whether a is one of the comma-separated entries of xff,
// written as an address or address:port, possibly IPv4-mapped.
func inHeader(a netip.Addr, xff string) bool {
	for e := range strings.SplitSeq(xff, ",") {
		e = strings.Trim(e, " \t")
		if b, err := netip.ParseAddr(e); err == nil && b.Unmap() == a {
			return true
		}
		if ap, err := netip.ParseAddrPort(e); err == nil && ap.Addr().Unmap() == a {
			return true
		}
	}
	return false
}
