// Package openapitest checks HTTP traffic against the API's OpenAPI document
// (package openapi), so that the spec cannot drift from the server: the HTTP
// tests pass every response they get through ValidateResponse (or wrap the
// handler with Wrap), and a test lists Operations to check that every route
// is documented.
//
// It uses pb33f/libopenapi-validator, which implements OpenAPI 3.1 and its
// JSON Schema 2020-12 dialect (const, type arrays, $ref siblings) natively.
//
// Responses are checked for: a documented status for the operation, the
// documented content type, the body against its schema (the error envelope
// with the operation's codes and each code's fixed message), and the
// documented headers (X-Request-ID always, Retry-After on 429,
// WWW-Authenticate on 401, Allow on 405). A request to a path or method the
// document does not list must be answered 404 not_found or 405
// method_not_allowed in the envelope; a path that is listed once cleaned
// ("/v1/../v1/health") may also be answered as the clean path. HEAD responses are checked against
// the GET operation without their (empty) body.
package openapitest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	"github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/offload-app/offload/openapi"
)

// spec is the parsed document and its validators, built once per test
// binary. The validators are used under mu: their caches are not documented
// as safe for concurrent use, and validation is cheap next to a request.
type spec struct {
	model    *v3.Document
	full     validator.Validator
	noBody   validator.Validator // for HEAD: status and headers only
	schemas  schema_validation.SchemaValidator
	pathOpts *config.ValidationOptions
	mu       sync.Mutex
}

var (
	loadOnce sync.Once
	loaded   *spec
	loadErr  error
)

func load() (*spec, error) {
	loadOnce.Do(func() { loaded, loadErr = build(openapi.Spec()) })
	return loaded, loadErr
}

func build(doc []byte) (*spec, error) {
	// Step is recursive through its substeps array, which an empty array
	// ends: a valid circle, not an infinite one.
	d, err := libopenapi.NewDocumentWithConfiguration(doc, &datamodel.DocumentConfiguration{IgnoreArrayCircularReferences: true})
	if err != nil {
		return nil, fmt.Errorf("openapitest: parsing the document: %w", err)
	}
	m, err := d.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("openapitest: building the model: %w", err)
	}
	// Format assertions make "format: date-time" count, on top of the
	// patterns the document already sets.
	opts := []config.Option{config.WithFormatAssertions()}
	s := &spec{
		model:    &m.Model,
		full:     validator.NewValidatorFromV3Model(&m.Model, opts...),
		noBody:   validator.NewValidatorFromV3Model(&m.Model, append(opts, config.WithoutResponseBodyValidation())...),
		schemas:  schema_validation.NewSchemaValidator(opts...),
		pathOpts: config.NewValidationOptions(opts...),
	}
	return s, nil
}

// Operation is one method and path template of the document.
type Operation struct {
	Method string // upper case: "GET", "POST"
	Path   string // the template: "/v1/health", "/docs/{asset}"
	ID     string // operationId
}

// Pattern is the operation as a net/http ServeMux pattern ("GET /docs/{asset}");
// the document's path templates use the same {name} syntax.
func (o Operation) Pattern() string { return o.Method + " " + o.Path }

// Operations lists every operation of the document, in document order.
func Operations() []Operation {
	s, err := load()
	if err != nil {
		panic(err) // the embedded document is checked by package openapi's tests
	}
	var ops []Operation
	for p, item := range s.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			ops = append(ops, Operation{Method: strings.ToUpper(method), Path: p, ID: op.OperationId})
		}
	}
	return ops
}

// ValidateResponse reports, with t.Errorf, every way a response differs
// from what the document says req's operation answers. Only req's method
// and URL path are read. Safe to call from any goroutine while t runs.
func ValidateResponse(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	for _, p := range ResponseProblems(req, status, header, body) {
		t.Errorf("openapi: %s", p)
	}
}

// ValidateRecorder is ValidateResponse for a response recorded by httptest.
func ValidateRecorder(t testing.TB, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	ValidateResponse(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
}

// Validate is ValidateResponse for a client's *http.Response. It reads the
// body and puts an unread copy back, so call it before reading the body.
func Validate(t testing.TB, resp *http.Response) {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		t.Errorf("openapi: reading the response body: %v", err)
		return
	}
	ValidateResponse(t, resp.Request, resp.StatusCode, resp.Header, body)
}

// Wrap returns h with every response checked by ValidateResponse after h
// has written it. The response is buffered, so don't wrap a handler whose
// test depends on streaming, flushing or hijacking.
func Wrap(t testing.TB, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		ValidateResponse(t, r, rec.Code, rec.Header(), rec.Body.Bytes())
	})
}

// ResponseProblems is the check behind ValidateResponse: one line per
// problem, none when the response is what the document says.
func ResponseProblems(req *http.Request, status int, header http.Header, body []byte) []string {
	s, err := load()
	if err != nil {
		return []string{err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	where := fmt.Sprintf("%s %s → %d", req.Method, req.URL.Path, status)
	if req.Method == http.MethodOptions && req.RequestURI == "*" {
		// "OPTIONS *" asks about the server as a whole (RFC 9110 §9.3.7);
		// no path of the document can name it.
		return serverOptions(where, status, header, body)
	}
	// A path with dot segments or doubled slashes may be answered as its
	// clean form, or with the envelope of an unknown path.
	if clean := cleanPath(req.URL.Path); clean != req.URL.Path {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			return s.unlisted(where, status, header, body)
		}
		req = req.Clone(req.Context())
		req.URL.Path, req.URL.RawPath = clean, ""
	}
	if !s.listed(req) {
		return s.unlisted(where, status, header, body)
	}
	v := s.full
	if req.Method == http.MethodHead {
		v = s.noBody
	}
	resp := &http.Response{
		StatusCode: status,
		Header:     header.Clone(),
		Body:       io.NopCloser(bytes.NewReader(body)),
		Request:    req,
	}
	_, errs := v.ValidateHttpResponse(req, resp)
	return describe(where, errs, body)
}

// serverOptions checks the answer to "OPTIONS *": 200, no body, the
// methods the server knows in Allow, and the request id.
func serverOptions(where string, status int, header http.Header, body []byte) []string {
	var problems []string
	if status != http.StatusOK || len(body) != 0 || header.Get("Allow") == "" {
		problems = append(problems, fmt.Sprintf("%s: want 200 with an Allow header and no body", where))
	}
	if header.Get("X-Request-ID") == "" {
		problems = append(problems, where+": no X-Request-ID header")
	}
	return problems
}

// listed reports whether the document has req's method and path.
func (s *spec) listed(req *http.Request) bool {
	item, _, _ := paths.FindPath(req, s.model, s.pathOpts)
	return item != nil && helpers.ExtractOperation(req, item) != nil
}

// cleanPath resolves dot segments and doubled slashes as ServeMux does,
// keeping a trailing slash.
func cleanPath(p string) string {
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// unlisted checks the answer to a path or method the document doesn't list:
// the 404 or 405 envelope, as the document's NotFound and MethodNotAllowed
// responses describe.
func (s *spec) unlisted(where string, status int, header http.Header, body []byte) []string {
	var schema, extra string
	switch status {
	case http.StatusNotFound:
		schema = "Error.not_found"
	case http.StatusMethodNotAllowed:
		schema, extra = "Error.method_not_allowed", "Allow"
	default:
		return []string{where + ": the document has no such operation, so the answer must be 404 not_found or 405 method_not_allowed"}
	}
	var problems []string
	if id := header.Get("X-Request-ID"); id == "" {
		problems = append(problems, where+": no X-Request-ID header")
	}
	if extra != "" && header.Get(extra) == "" {
		problems = append(problems, where+": no "+extra+" header")
	}
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		problems = append(problems, fmt.Sprintf("%s: Content-Type %q, want application/json", where, ct))
	}
	_, errs := s.schemas.ValidateSchemaBytes(s.schema(schema), body)
	return append(problems, describe(where, errs, body)...)
}

func (s *spec) schema(name string) *base.Schema {
	proxy := s.model.Components.Schemas.GetOrZero(name)
	if proxy == nil {
		panic("openapitest: the document has no schema " + name)
	}
	return proxy.Schema()
}

// RequestProblems checks a request the test means to be valid (a client
// following the document would send it) against its operation: parameters,
// security and body. body is the request's body (req.Body is not read). A
// request without Content-Type is checked as application/json, which is how
// the server reads it.
func RequestProblems(req *http.Request, body []byte) []string {
	s, err := load()
	if err != nil {
		return []string{err.Error()}
	}
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) > 0 && r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", "application/json")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, errs := s.full.ValidateHttpRequestSync(r)
	return describe(fmt.Sprintf("request %s %s", req.Method, req.URL.Path), errs, body)
}

// ValidateRequest reports RequestProblems with t.Errorf.
func ValidateRequest(t testing.TB, req *http.Request, body []byte) {
	t.Helper()
	for _, p := range RequestProblems(req, body) {
		t.Errorf("openapi: %s", p)
	}
}

// describe turns validation errors into one line each, with the body (cut
// short) so the failing test shows what was answered.
func describe(where string, errs []*errors.ValidationError, body []byte) []string {
	if len(errs) == 0 {
		return nil
	}
	shown := body
	if len(shown) > 512 {
		shown = append(shown[:512:512], "…"...)
	}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %s", where, e.Message)
		if e.Reason != "" && e.Reason != e.Message {
			fmt.Fprintf(&b, " (%s)", e.Reason)
		}
		for _, f := range e.SchemaValidationErrors {
			loc := f.FieldPath
			if loc == "" {
				loc = f.KeywordLocation
			}
			fmt.Fprintf(&b, "; %s: %s", loc, f.Reason)
		}
		fmt.Fprintf(&b, "; body: %s", shown)
		out = append(out, b.String())
	}
	return out
}
