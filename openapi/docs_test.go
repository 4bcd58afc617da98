package openapi_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/offload-app/offload/openapi"
	"github.com/offload-app/offload/openapi/openapitest"
)

// notFoundEnvelope stands in for the API's 404 answer.
var notFoundEnvelope = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	w.Write([]byte(`{"error":{"code":"not_found","message":"Not found","request_id":"test-request"}}`))
})

// withRequestID is the part of the API's middleware the document requires
// of every answer.
func withRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-ID", "test-request")
		h.ServeHTTP(w, r)
	})
}

// docsMux mounts the handlers as routes.go is meant to.
func docsMux() *http.ServeMux {
	mux := http.NewServeMux()
	docs := openapi.DocsHandler(notFoundEnvelope)
	mux.Handle("GET /openapi.json", openapi.OpenAPIHandler())
	mux.Handle("GET /docs", docs)
	mux.Handle("GET /docs/{asset}", docs)
	mux.Handle("/", notFoundEnvelope)
	return mux
}

func TestHandlers(t *testing.T) {
	h := openapitest.Wrap(t, withRequestID(docsMux()))
	tests := []struct {
		method, path string
		header       map[string]string
		status       int
		contentType  string
		bodyHas      string
	}{
		{"GET", "/docs", nil, 200, "text/html; charset=utf-8", `<div id="swagger-ui"></div>`},
		{"HEAD", "/docs", nil, 200, "text/html; charset=utf-8", ""},
		{"GET", "/docs/swagger-ui-bundle.js", nil, 200, "text/javascript; charset=utf-8", "SwaggerUIBundle"},
		{"GET", "/docs/offload-docs.js", nil, 200, "text/javascript; charset=utf-8", `url: "openapi.json"`},
		{"GET", "/docs/swagger-ui.css", nil, 200, "text/css; charset=utf-8", ".swagger-ui"},
		{"GET", "/docs/favicon-32x32.png", nil, 200, "image/png", "PNG"},
		{"GET", "/docs/LICENSE", nil, 200, "text/plain; charset=utf-8", "Apache License"},
		{"GET", "/openapi.json", nil, 200, "application/json", `"openapi": "3.1.0"`},
		// Only the page and its files: not the repository's bookkeeping,
		// not a directory, not a path outside.
		{"GET", "/docs/", nil, 404, "application/json", "not_found"},
		{"GET", "/docs/VERSION", nil, 404, "application/json", "not_found"},
		{"GET", "/docs/SHA256SUMS", nil, 404, "application/json", "not_found"},
		{"GET", "/docs/index.html", nil, 404, "application/json", "not_found"},
		{"GET", "/docs/swagger-ui/swagger-ui.css", nil, 404, "application/json", "not_found"},
		{"GET", "/docs/%2e%2e%2fopenapi.go", nil, 404, "application/json", "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != tt.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tt.contentType)
			}
			if !strings.Contains(rec.Body.String(), tt.bodyHas) {
				t.Errorf("body does not contain %q", tt.bodyHas)
			}
			if tt.method == "HEAD" && rec.Body.Len() != 0 {
				t.Errorf("HEAD answered %d body bytes", rec.Body.Len())
			}
			if tt.status != 200 {
				return
			}
			wantHeaders := map[string]string{
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
				"Cache-Control":          "no-cache",
			}
			for k, v := range wantHeaders {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			csp := rec.Header().Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") || strings.Contains(csp, "*") || strings.Contains(csp, "http") {
				t.Errorf("CSP %q allows more than this server", csp)
			}
			if strings.HasPrefix(tt.path, "/docs") && rec.Header().Get("X-Frame-Options") != "DENY" {
				t.Errorf("X-Frame-Options %q", rec.Header().Get("X-Frame-Options"))
			}
		})
	}
}

func TestNotModified(t *testing.T) {
	h := openapitest.Wrap(t, withRequestID(docsMux()))
	for _, path := range []string{"/docs", "/docs/swagger-ui.css", "/openapi.json"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		etag := rec.Header().Get("ETag")
		if etag == "" {
			t.Fatalf("%s: no ETag", path)
		}
		for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
			req := httptest.NewRequest("GET", path, nil)
			req.Header.Set("If-None-Match", inm)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
				t.Errorf("%s If-None-Match %s: %d with %d bytes, want 304 and none", path, inm, rec.Code, rec.Body.Len())
			}
		}
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("If-None-Match", `"stale"`)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Errorf("%s with a stale ETag: %d, want 200", path, rec.Code)
		}
	}
}

func TestOpenAPIHandlerServesSpec(t *testing.T) {
	rec := httptest.NewRecorder()
	openapi.OpenAPIHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.json", nil))
	if !bytes.Equal(rec.Body.Bytes(), openapi.Spec()) {
		t.Error("GET /openapi.json is not the embedded document")
	}
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" || len(doc.Paths) == 0 {
		t.Errorf("openapi %q with %d paths", doc.OpenAPI, len(doc.Paths))
	}
}

// TestVendoredChecksums checks that the served Swagger UI files are the ones
// vendor-assets.sh took from the npm tarball (no hand edits).
func TestVendoredChecksums(t *testing.T) {
	f, err := os.Open("ui/swagger-ui/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	docs := openapi.DocsHandler(nil)
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		rec := httptest.NewRecorder()
		docs.ServeHTTP(rec, httptest.NewRequest("GET", "/docs/"+name, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d", name, rec.Code)
			continue
		}
		got := sha256.Sum256(rec.Body.Bytes())
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s differs from the vendored file: run vendor-assets.sh", name)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("SHA256SUMS lists no file")
	}
}
