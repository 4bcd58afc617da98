package clientip

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func request(remote string, xff ...string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/v1/sessions/anonymous", nil)
	req.RemoteAddr = remote
	for _, v := range xff {
		req.Header.Add("X-Forwarded-For", v)
	}
	return req
}

func TestClientIP(t *testing.T) {
	// A load balancer at 10.0.0.0/8 and a CDN edge at 2001:db8:cd::/48 are
	// trusted in most cases below.
	proxies := []string{"10.0.0.0/8", "2001:db8:cd::/48"}
	tests := []struct {
		name    string
		trusted []string
		remote  string
		xff     []string
		want    string // "" is the zero Addr
	}{
		// No proxy in front: the peer, whatever the header says.
		{"direct, no header", proxies, "203.0.113.7:5555", nil, "203.0.113.7"},
		{"direct, spoofed header", proxies, "203.0.113.7:5555", []string{"198.51.100.1"}, "203.0.113.7"},
		{"direct, spoofed trusted-looking header", proxies, "203.0.113.7:5555", []string{"10.0.0.1"}, "203.0.113.7"},
		{"empty trusted list ignores the header", nil, "10.0.0.2:80", []string{"198.51.100.1"}, "10.0.0.2"},
		{"empty trusted list, garbage header", nil, "203.0.113.7:1", []string{"not an ip"}, "203.0.113.7"},

		// Through a trusted proxy.
		{"one proxy", proxies, "10.0.0.2:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"one proxy, no header", proxies, "10.0.0.2:80", nil, "10.0.0.2"},
		{"one proxy, client spoofs a left entry", proxies, "10.0.0.2:80",
			[]string{"1.1.1.1, 198.51.100.1"}, "198.51.100.1"},
		{"two proxies", proxies, "10.0.0.2:80",
			[]string{"198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"two proxies, client spoofs a trusted address", proxies, "10.0.0.2:80",
			[]string{"10.6.6.6, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"every hop trusted: left-most", proxies, "10.0.0.2:80",
			[]string{"10.1.1.1, 10.2.2.2 ,10.3.3.3"}, "10.1.1.1"},
		{"spaces and tabs around entries", proxies, "10.0.0.2:80",
			[]string{" \t198.51.100.1 \t,\t10.9.9.9 "}, "198.51.100.1"},
		{"entry with port", proxies, "10.0.0.2:80", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"IPv6 entry with port", proxies, "10.0.0.2:80", []string{"[2001:db8::7]:4711"}, "2001:db8::7"},

		// Several header lines form one chain, in order.
		{"multiple lines", proxies, "10.0.0.2:80",
			[]string{"198.51.100.1", "10.9.9.9"}, "198.51.100.1"},
		{"multiple lines, client in the last", proxies, "10.0.0.2:80",
			[]string{"1.1.1.1", "198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"multiple lines all trusted", proxies, "10.0.0.2:80",
			[]string{"10.1.1.1, 10.2.2.2", "10.3.3.3"}, "10.1.1.1"},

		// Garbage ends the walk at the last trusted hop.
		{"garbage right of client", proxies, "10.0.0.2:80",
			[]string{"198.51.100.1, garbage"}, "10.0.0.2"},
		{"garbage after a trusted hop", proxies, "10.0.0.2:80",
			[]string{"198.51.100.1, garbage, 10.9.9.9"}, "10.9.9.9"},
		{"garbage left of client is never reached", proxies, "10.0.0.2:80",
			[]string{"garbage, 198.51.100.1"}, "198.51.100.1"},
		{"garbage left of trusted hops", proxies, "10.0.0.2:80",
			[]string{"garbage, 10.1.1.1"}, "10.1.1.1"},
		{"empty element", proxies, "10.0.0.2:80", []string{"198.51.100.1,,10.9.9.9"}, "10.9.9.9"},
		{"trailing comma", proxies, "10.0.0.2:80", []string{"198.51.100.1,"}, "10.0.0.2"},
		{"empty line", proxies, "10.0.0.2:80", []string{"198.51.100.1", ""}, "10.0.0.2"},
		{"zone in entry", proxies, "10.0.0.2:80", []string{"fe80::1%eth0"}, "10.0.0.2"},
		{"CIDR in entry", proxies, "10.0.0.2:80", []string{"198.51.100.0/24"}, "10.0.0.2"},
		{"bracketed IPv6 without port", proxies, "10.0.0.2:80", []string{"[2001:db8::7]"}, "10.0.0.2"},
		{"obfuscated IPv4", proxies, "10.0.0.2:80", []string{"0x7f.1"}, "10.0.0.2"},
		{"unknown token", proxies, "10.0.0.2:80", []string{"unknown"}, "10.0.0.2"},

		// IPv6 and IPv4-mapped IPv6.
		{"IPv6 peer direct", proxies, "[2001:db8::1]:443", []string{"198.51.100.1"}, "2001:db8::1"},
		{"IPv6 trusted edge", proxies, "[2001:db8:cd::5]:443", []string{"2001:db8:aa::1"}, "2001:db8:aa::1"},
		{"IPv6 chain with mixed families", proxies, "[2001:db8:cd::5]:443",
			[]string{"2001:db8:aa::1, 10.3.3.3"}, "2001:db8:aa::1"},
		{"mapped peer is unmapped", nil, "[::ffff:203.0.113.7]:80", nil, "203.0.113.7"},
		{"mapped peer matches IPv4 prefix", proxies, "[::ffff:10.0.0.2]:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"mapped entry is unmapped", proxies, "10.0.0.2:80", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"mapped entry matches IPv4 prefix", proxies, "10.0.0.2:80",
			[]string{"198.51.100.1, ::ffff:10.9.9.9"}, "198.51.100.1"},
		{"mapped prefix trusts IPv4 peer", []string{"::ffff:10.0.0.0/104"}, "10.0.0.2:80",
			[]string{"198.51.100.1"}, "198.51.100.1"},
		{"unmasked prefix", []string{"10.0.0.9/8"}, "10.0.0.2:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"link-local peer zone dropped", nil, "[fe80::1%eth0]:80", nil, "fe80::1"},
		{"single trusted host", []string{"127.0.0.1/32"}, "127.0.0.1:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"host next to the trusted one", []string{"127.0.0.1/32"}, "127.0.0.2:80", []string{"198.51.100.1"}, "127.0.0.2"},

		// Unusual RemoteAddr values.
		{"bare peer address", nil, "203.0.113.7", nil, "203.0.113.7"},
		{"unparsable peer", proxies, "@", []string{"198.51.100.1"}, ""},
		{"empty peer", proxies, "", []string{"198.51.100.1"}, ""},
		{"hostname peer", proxies, "localhost:80", []string{"198.51.100.1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(prefixes(t, tt.trusted...))
			got := r.ClientIP(request(tt.remote, tt.xff...))
			var want netip.Addr
			if tt.want != "" {
				want = netip.MustParseAddr(tt.want)
			}
			if got != want {
				t.Fatalf("ClientIP = %v, want %v", got, want)
			}
		})
	}
}

func TestHeaderNameIsCaseInsensitive(t *testing.T) {
	// A real server canonicalises header names; the resolver must find the
	// header however the client spelled it.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// The test server's peer is 127.0.0.1, which is trusted here.
		r := New(prefixes(t, "127.0.0.0/8"))
		_, _ = w.Write([]byte(r.ClientIP(req).String()))
	}))
	defer srv.Close()

	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header["x-forwarded-FOR"] = []string{"198.51.100.1"}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(body); got != "198.51.100.1" {
		t.Fatalf("ClientIP over a real connection = %q, want 198.51.100.1", got)
	}
}

func TestNewCopiesAndIgnoresInvalid(t *testing.T) {
	ps := prefixes(t, "10.0.0.0/8")
	ps = append(ps, netip.Prefix{})
	r := New(ps)
	ps[0] = netip.MustParsePrefix("192.0.2.0/24") // must not affect r
	if got := r.ClientIP(request("10.0.0.2:80", "198.51.100.1")); got != netip.MustParseAddr("198.51.100.1") {
		t.Fatalf("ClientIP = %v; the resolver changed with the caller's slice", got)
	}
	if got := r.ClientIP(request("192.0.2.1:80", "198.51.100.1")); got != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("ClientIP = %v; the caller's later prefix was trusted", got)
	}
}

func BenchmarkClientIP(b *testing.B) {
	r := New(prefixes(b, "10.0.0.0/8", "172.16.0.0/12", "2001:db8:cd::/48"))
	for _, tc := range []struct {
		name string
		req  *http.Request
	}{
		{"direct", request("203.0.113.7:5555", "198.51.100.1")},
		{"two proxies", request("10.0.0.2:80", "1.1.1.1, 198.51.100.1, 10.9.9.9")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				r.ClientIP(tc.req)
			}
		})
	}
}
