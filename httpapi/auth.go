package httpapi

import (
	"net/http"
	"strings"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/token"
)

var errUnauthorized = &offload.Error{Code: offload.CodeUnauthorized}

// requireSession is the auth gate of /v1/ai/* and /v1/usage/*: it verifies
// the bearer session token and passes its claims to next in the context.
func requireSession(tokens *token.Codec, clock offload.Clock, next http.Handler) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			return errUnauthorized
		}
		claims, err := tokens.Verify(tok, clock.Now())
		if err != nil {
			return err
		}
		next.ServeHTTP(w, r.WithContext(offload.WithClaims(r.Context(), claims)))
		return nil
	})
}

// bearer extracts the credential of an "Authorization: Bearer <token>"
// header; the scheme is case-insensitive.
func bearer(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}

// handlerFunc is a handler that returns its error instead of writing it, so
// every error goes through writeError and the one status table.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (f handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		writeError(w, r, err)
	}
}
