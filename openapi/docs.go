package openapi

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

// ui holds the page (index.html, offload-docs.js: ours) and the vendored
// Swagger UI files (ui/swagger-ui, refreshed by vendor-assets.sh). VERSION
// and SHA256SUMS stay in the repository only.
//
//go:embed ui/index.html ui/offload-docs.js
//go:embed ui/swagger-ui/swagger-ui-bundle.js ui/swagger-ui/swagger-ui.css ui/swagger-ui/favicon-32x32.png
//go:embed ui/swagger-ui/LICENSE ui/swagger-ui/NOTICE ui/swagger-ui/swagger-ui-bundle.js.LICENSE.txt
var ui embed.FS

// docsCSP lets the page load scripts, styles, images and data from this
// server only: no inline script or style, no eval, no framing, no plugins.
// Swagger UI's stylesheet draws its icons as data: SVG images, which load
// nothing from anywhere, so img-src also allows data:.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// contentTypes maps the extensions of the embedded files; a file without
// one (LICENSE, NOTICE) is plain text.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".png":  "image/png",
	".txt":  "text/plain; charset=utf-8",
	"":      "text/plain; charset=utf-8",
}

// DocsHandler serves the interactive docs page at DocsPath ("/docs") and its
// files at DocsPath + "/<name>"; mount it on both, e.g. "GET /docs" and
// "GET /docs/{asset}". Any other path it is given, "/docs/" included, goes to
// notFound (the API's 404 envelope; http.NotFound when nil). Every answer
// carries a strict Content-Security-Policy and the usual hardening headers.
func DocsHandler(notFound http.Handler) http.Handler {
	if notFound == nil {
		notFound = http.NotFoundHandler()
	}
	files := docsFiles()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := files[r.URL.Path]
		if f == nil {
			notFound.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		setCommonHeaders(h)
		h.Set("Content-Security-Policy", docsCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		f.serve(w, r)
	})
}

// docsFiles maps each served URL path to its file: the page at DocsPath,
// every other embedded file by its base name below it.
func docsFiles() map[string]*file {
	files := make(map[string]*file)
	err := fs.WalkDir(ui, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := ui.ReadFile(p)
		if err != nil {
			return err
		}
		name := path.Base(p)
		ct, ok := contentTypes[path.Ext(name)]
		if !ok {
			ct = contentTypes[""]
		}
		if name == "index.html" {
			files[DocsPath] = newFile(body, ct)
		} else {
			files[DocsPath+"/"+name] = newFile(body, ct)
		}
		return nil
	})
	if err != nil {
		// The files are embedded at build time; failing to read one is a bug.
		panic("openapi: reading embedded docs: " + err.Error())
	}
	return files
}
