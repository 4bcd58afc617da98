package httpapi

import (
	"net/http"

	"github.com/offload-app/offload"
)

// addRoutes lists every route of the API. Each path also gets a method-less
// pattern that answers 405 in the contract's envelope, and "/" answers 404,
// so no plain-text error from net/http ever reaches a client.
func addRoutes(mux *http.ServeMux, d Deps) {
	auth := func(h http.Handler) http.Handler { return requireSession(d.Tokens, d.Clock, h) }

	mux.Handle("GET /v1/health", handleHealth(d.Environment, d.BuildVersion))
	mux.Handle("POST /v1/sessions/anonymous", handleCreateSession(d.Tokens, d.Clock, d.ClientIP, d.SessionLimits, d.MaxBodyBytes))
	mux.Handle("POST /v1/ai/breakdown/generate", auth(handleGenerateBreakdown(d)))
	mux.Handle("POST /v1/usage/reconcile", auth(handleReconcileUsage(d.Store, d.Clock, d.FeatureQuota, d.MaxBodyBytes)))

	mux.Handle("/v1/health", methodNotAllowed("GET, HEAD"))
	mux.Handle("/v1/sessions/anonymous", methodNotAllowed("POST"))
	mux.Handle("/v1/ai/breakdown/generate", methodNotAllowed("POST"))
	mux.Handle("/v1/usage/reconcile", methodNotAllowed("POST"))
	mux.Handle("/", errorHandler(&offload.Error{Code: offload.CodeNotFound}))
}

func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, r, &offload.Error{Code: offload.CodeMethodNotAllowed})
	})
}

func errorHandler(err error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeError(w, r, err) })
}
