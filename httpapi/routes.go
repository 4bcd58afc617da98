package httpapi

import (
	"net/http"

	"github.com/offload-app/offload"
)

// addRoutes lists every route of the API. Each path also gets a method-less
// pattern that answers 405 in the contract's envelope, and "/" answers 404,
// so no plain-text error from net/http ever reaches a client.
func addRoutes(mux router, d Deps) {
	auth := func(h http.Handler) http.Handler { return requireSession(d.Tokens, d.Clock, h) }

	mux.Handle("GET /v1/health", handleHealth(d.Environment, d.BuildVersion))
	mux.Handle("POST /v1/sessions/anonymous", handleCreateSession(d))
	mux.Handle("POST /v1/ai/breakdown/generate", auth(handleGenerateBreakdown(d)))
	mux.Handle("POST /v1/usage/reconcile", auth(handleReconcileUsage(d)))
	mux.Handle("DELETE /v1/usage", auth(handleEraseUsage(d)))

	// Probes for orchestrators and load balancers; not part of /v1.
	mux.Handle("GET /livez", handleLivez())
	mux.Handle("GET /readyz", handleReadyz(d.Checks, d.Draining))
	if d.OpenAPI != nil {
		mux.Handle("GET /openapi.json", d.OpenAPI)
		mux.Handle("/openapi.json", methodNotAllowed("GET, HEAD"))
	}
	if d.Docs != nil {
		mux.Handle("GET /docs", d.Docs)
		mux.Handle("GET /docs/{asset}", d.Docs) // the page's own assets
		mux.Handle("/docs", methodNotAllowed("GET, HEAD"))
	}

	mux.Handle("/v1/health", methodNotAllowed("GET, HEAD"))
	mux.Handle("/v1/sessions/anonymous", methodNotAllowed("POST"))
	mux.Handle("/v1/ai/breakdown/generate", methodNotAllowed("POST"))
	mux.Handle("/v1/usage/reconcile", methodNotAllowed("POST"))
	mux.Handle("/v1/usage", methodNotAllowed("DELETE"))
	mux.Handle("/livez", methodNotAllowed("GET, HEAD"))
	mux.Handle("/readyz", methodNotAllowed("GET, HEAD"))
	mux.Handle("/", errorHandler(&offload.Error{Code: offload.CodeNotFound}))
}

// router is what addRoutes registers on: an *http.ServeMux, or a test's
// recorder of the patterns.
type router interface {
	Handle(pattern string, h http.Handler)
}

func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, r, &offload.Error{Code: offload.CodeMethodNotAllowed})
	})
}

// NotFoundHandler answers 404 not_found in the contract's envelope, for
// handlers mounted from other packages (the docs page's unknown assets).
func NotFoundHandler() http.Handler { return errorHandler(&offload.Error{Code: offload.CodeNotFound}) }

func errorHandler(err error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeError(w, r, err) })
}
