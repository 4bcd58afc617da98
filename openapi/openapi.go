// Package openapi embeds the API's contract, the hand-written OpenAPI 3.1
// document (openapi.yaml, served as the generated openapi.json), and the
// interactive docs page that renders it (Swagger UI, vendored from npm by
// vendor-assets.sh), and serves both. Nothing here needs the network: every
// byte the page loads comes from this binary.
//
// Package openapitest validates requests and responses against the same
// document, so the HTTP tests keep the spec and the server in step.
package openapi

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
)

// specJSON is generated from openapi.yaml by TestSpecJSON -update; the test
// fails while it is stale. Serving the JSON as embedded keeps a YAML parser
// out of the server binary.
//
//go:embed openapi.json
var specJSON []byte

// Spec returns the OpenAPI document as JSON. The slice is shared: don't
// modify it.
func Spec() []byte { return specJSON }

// Paths the handlers are meant to be mounted at. The docs page refers to its
// assets and to the document relative to DocsPath, so they must be siblings.
const (
	SpecPath = "/openapi.json"
	DocsPath = "/docs"
)

// OpenAPIHandler serves the document at GET /openapi.json (the path the
// existing deployment's framework serves it at), with an ETag so clients can
// revalidate cheaply.
func OpenAPIHandler() http.Handler {
	f := newFile(specJSON, "application/json")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setCommonHeaders(w.Header())
		// A JSON document needs no capabilities at all if a browser opens it.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		f.serve(w, r)
	})
}

// file is one embedded response body with its content type and strong ETag.
type file struct {
	body        []byte
	contentType string
	etag        string
}

func newFile(body []byte, contentType string) *file {
	sum := sha256.Sum256(body)
	return &file{
		body:        body,
		contentType: contentType,
		etag:        strconv.Quote(base64.RawURLEncoding.EncodeToString(sum[:16])),
	}
}

// serve answers 304 when If-None-Match names the current body, else the
// body. (Not http.ServeContent: its 412 and 416 answers are plain text, and
// every error here must be left to the API's envelope.) The bodies change
// only with the binary, so "no-cache" (revalidate every time) costs a round
// trip but never serves a stale page after an upgrade.
func (f *file) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache")
	if etagMatch(r.Header.Get("If-None-Match"), f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Length", strconv.Itoa(len(f.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(f.body)
	}
}

// etagMatch reports whether an If-None-Match list names etag or is "*",
// with the weak comparison RFC 9110 asks for. Our tags hold no commas.
func etagMatch(header, etag string) bool {
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == etag {
			return true
		}
	}
	return false
}

// setCommonHeaders are the headers every response of this package carries.
func setCommonHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}
