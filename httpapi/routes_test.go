package httpapi

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/offload-app/offload/openapi/openapitest"
)

type patterns []string

func (p *patterns) Handle(pattern string, _ http.Handler) { *p = append(*p, pattern) }

// TestEveryRouteIsDocumented: every route routes.go serves (with the docs
// page and the spec on) is an operation of the OpenAPI document, and the
// document lists nothing the server does not serve.
func TestEveryRouteIsDocumented(t *testing.T) {
	var got patterns
	addRoutes(&got, Deps{OpenAPI: http.NotFoundHandler(), Docs: http.NotFoundHandler()})
	var routes []string
	for _, p := range got {
		if strings.Contains(p, " ") { // "METHOD /path"; the rest are 405/404 fallbacks
			routes = append(routes, p)
		}
	}
	var documented []string
	for _, op := range openapitest.Operations() {
		documented = append(documented, op.Pattern())
	}
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is not in the OpenAPI document", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("the OpenAPI document lists %q, which routes.go does not serve", d)
		}
	}
	if len(routes) < 9 {
		t.Errorf("only %d routes recorded: %v", len(routes), routes)
	}
}
