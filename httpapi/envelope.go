package httpapi

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/offload-app/offload"
)

// serverMethods are the methods some route of the API serves; OPTIONS *
// lists them in Allow.
const serverMethods = "DELETE, GET, HEAD, POST"

// envelope sits between instrument (which has set X-Request-ID) and the
// ServeMux, and answers in the contract's envelope the requests that the
// mux would otherwise answer itself, in plain text or HTML:
//   - a request target of "*": OPTIONS * is answered 200 with Allow and an
//     empty body, as net/http's own answer but with X-Request-ID (it reaches
//     us only when http.Server.DisableGeneralOptionsHandler is set); any
//     other method on "*" is 405 method_not_allowed (Allow: OPTIONS), where
//     the mux would answer a bare 400.
//   - a path that is not in canonical form ("//v1/health", "/v1/../v1/health",
//     and "" as in "CONNECT host:443" or "GET http://host"), which the mux
//     answers with a 307 redirect and an HTML body: the cleaned path is
//     served directly, as the redirect would have led there. So CONNECT
//     gets our 404 not_found (or 405 on a route's path).
//
// OPTIONS * answers 200 rather than 405: RFC 9110 §9.3.7 makes it a
// question about the server as a whole (a ping), which we can answer, and
// 200 is what the server answered before, so nothing that pings with it
// changes its mind.
//
// What net/http answers before any handler runs stays plain text and has
// no X-Request-ID: a malformed request line or URI, an unsupported
// protocol version, header fields over MaxHeaderBytes, a missing or bad
// Host, an unknown Transfer-Encoding, an Expect other than 100-continue,
// and OPTIONS * itself when DisableGeneralOptionsHandler is false.
func envelope(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI == "*" {
			serveAsterisk(w, r)
			return
		}
		// The mux cleans the escaped path (CONNECT's too, here) and
		// compares it with the request's; so do we, so the mux never
		// redirects.
		escaped := r.URL.EscapedPath()
		clean := cleanPath(escaped)
		if clean == escaped {
			next.ServeHTTP(w, r)
			return
		}
		u, err := url.Parse(clean)
		if err != nil {
			// A cleaned path of a parsed URL always parses; a 404 is the
			// answer for a path we can't serve anyway.
			writeError(w, r, &offload.Error{Code: offload.CodeNotFound})
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = u.Path, u.RawPath
		// The mux sets the matched pattern on the request it serves; the
		// access log reads it from ours.
		defer func() { r.Pattern = r2.Pattern }()
		next.ServeHTTP(w, r2)
	})
}

func serveAsterisk(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodOptions {
		w.Header().Set("Allow", http.MethodOptions)
		writeError(w, r, &offload.Error{Code: offload.CodeMethodNotAllowed})
		return
	}
	w.Header().Set("Allow", serverMethods)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// cleanPath is net/http's (unexported) canonical form of a request path:
// rooted, without "." and ".." elements or repeated slashes, keeping a
// trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np
}
