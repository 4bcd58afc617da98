package openapitest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"

	"github.com/offload-app/offload/openapi"
)

const rid = "00000000-0000-4000-8000-000000000001"

// TestDocumentIsValid checks the document against the OpenAPI 3.1 schema.
func TestDocumentIsValid(t *testing.T) {
	doc, err := libopenapi.NewDocument(openapi.Spec())
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("openapi version %q, want 3.1.x", v)
	}
	ok, errs := schema_validation.ValidateOpenAPIDocument(doc)
	for _, e := range errs {
		t.Errorf("%s: %s", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			t.Errorf("  %s: %s", f.KeywordLocation, f.Reason)
		}
	}
	if !ok && len(errs) == 0 {
		t.Error("document invalid, no reason given")
	}
}

// TestExamplesMatchSchemas keeps the examples shown on the docs page true:
// every request and response example validates against its schema.
func TestExamplesMatchSchemas(t *testing.T) {
	s, err := load()
	if err != nil {
		t.Fatal(err)
	}
	type decoder interface{ Decode(any) error }
	check := func(where string, schema *base.Schema, node decoder) {
		t.Helper()
		var v any
		if err := node.Decode(&v); err != nil {
			t.Errorf("%s: decoding the example: %v", where, err)
			return
		}
		// Round-trip through JSON so the values have JSON's types.
		b, err := json.Marshal(v)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		if ok, errs := s.schemas.ValidateSchemaBytes(schema, b); !ok {
			for _, p := range describe(where, errs, b) {
				t.Error(p)
			}
		}
	}
	n := 0
	for p, item := range s.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			if op.RequestBody != nil {
				for ct, mt := range op.RequestBody.Content.FromOldest() {
					where := method + " " + p + " request " + ct
					if mt.Example != nil {
						check(where, mt.Schema.Schema(), mt.Example)
						n++
					}
					for name, ex := range mt.Examples.FromOldest() {
						check(where+" "+name, mt.Schema.Schema(), ex.Value)
						n++
					}
				}
			}
			for code, resp := range op.Responses.Codes.FromOldest() {
				for ct, mt := range resp.Content.FromOldest() {
					where := method + " " + p + " " + code + " " + ct
					if mt.Example != nil {
						check(where, mt.Schema.Schema(), mt.Example)
						n++
					}
					for name, ex := range mt.Examples.FromOldest() {
						check(where+" "+name, mt.Schema.Schema(), ex.Value)
						n++
					}
				}
			}
		}
	}
	if n < 30 {
		t.Errorf("checked %d examples; the document has more", n)
	}
}

func TestOperations(t *testing.T) {
	var got []string
	for _, op := range Operations() {
		if op.ID == "" {
			t.Errorf("%s has no operationId", op.Pattern())
		}
		got = append(got, op.Pattern())
	}
	want := []string{
		"GET /v1/health",
		"POST /v1/sessions/anonymous",
		"POST /v1/ai/breakdown/generate",
		"POST /v1/usage/reconcile",
		"DELETE /v1/usage",
		"GET /livez",
		"GET /readyz",
		"GET /openapi.json",
		"GET /docs",
		"GET /docs/{asset}",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Operations:\n got %q\nwant %q", got, want)
	}
}

// hdr builds a response header: Content-Type JSON and an X-Request-ID
// unless overridden; a "-Name" key deletes one.
func hdr(kv ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {rid}}
	for i := 0; i < len(kv); i += 2 {
		if name, ok := strings.CutPrefix(kv[i], "-"); ok {
			h.Del(name)
			continue
		}
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func envelope(code, message string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message, "request_id": rid}})
	return string(b)
}

func TestResponseProblems(t *testing.T) {
	tests := []struct {
		name         string
		method, path string
		status       int
		header       http.Header
		body         string
		wantProblem  string // "" means valid
	}{
		{"health", "GET", "/v1/health", 200, hdr(),
			`{"status":"ok","service":"offload-backend-api","version":"1.2.3","environment":"test"}`, ""},
		{"health without request id", "GET", "/v1/health", 200, hdr("-X-Request-ID"),
			`{"status":"ok","service":"offload-backend-api","version":"1.2.3","environment":"test"}`, "X-Request-ID"},
		{"health with an undocumented field", "GET", "/v1/health", 200, hdr(),
			`{"status":"ok","service":"offload-backend-api","version":"1","environment":"test","extra":1}`, "extra"},
		{"health as text", "GET", "/v1/health", 200, hdr("Content-Type", "text/plain"), `ok`, "content type"},
		{"HEAD health has no body", "HEAD", "/v1/health", 200, hdr(), ``, ""},
		{"session", "POST", "/v1/sessions/anonymous", 200, hdr(),
			`{"session_token":"abc.def","expires_at":"2026-02-16T13:00:00Z"}`, ""},
		{"session with fractional seconds", "POST", "/v1/sessions/anonymous", 200, hdr(),
			`{"session_token":"abc.def","expires_at":"2026-02-16T13:00:00.5Z"}`, "expires_at"},
		{"session limit with Retry-After", "POST", "/v1/sessions/anonymous", 429, hdr("Retry-After", "12"),
			envelope("session_rate_limited", "Too many session requests; retry later"), ""},
		{"session limit without Retry-After", "POST", "/v1/sessions/anonymous", 429, hdr(),
			envelope("session_rate_limited", "Too many session requests; retry later"), "Retry-After"},
		{"session limit, another route's code", "POST", "/v1/sessions/anonymous", 429, hdr("Retry-After", "1"),
			envelope("inference_rate_limited", "Too many AI requests; retry later"), "code"},
		{"breakdown", "POST", "/v1/ai/breakdown/generate", 200, hdr(),
			`{"steps":[{"title":"First","substeps":[{"title":"Inner","substeps":[]}]}],"provider":"fake","latency_ms":0,"usage":{"input_tokens":11,"output_tokens":7}}`, ""},
		{"breakdown step without substeps", "POST", "/v1/ai/breakdown/generate", 200, hdr(),
			`{"steps":[{"title":"First"}],"provider":"fake","latency_ms":0,"usage":{"input_tokens":1,"output_tokens":1}}`, "substeps"},
		{"401 expired", "POST", "/v1/ai/breakdown/generate", 401, hdr("WWW-Authenticate", "Bearer"),
			envelope("expired_token", "Session token expired"), ""},
		{"401 without WWW-Authenticate", "POST", "/v1/ai/breakdown/generate", 401, hdr(),
			envelope("unauthorized", "Missing bearer token"), "WWW-Authenticate"},
		{"401 with another code's message", "POST", "/v1/ai/breakdown/generate", 401, hdr("WWW-Authenticate", "Bearer"),
			envelope("invalid_token", "Missing bearer token"), "message"},
		{"413 content limit", "POST", "/v1/ai/breakdown/generate", 413, hdr(),
			envelope("request_too_large", "Request content exceeds max size of 4000 characters"), ""},
		{"413 echoing content", "POST", "/v1/ai/breakdown/generate", 413, hdr(),
			envelope("request_too_large", "Request content exceeds max size: clean the flat"), "message"},
		{"503 busy with Retry-After", "POST", "/v1/ai/breakdown/generate", 503, hdr("Retry-After", "2"),
			envelope("provider_unavailable", "Provider unavailable"), ""},
		{"an undocumented status", "POST", "/v1/ai/breakdown/generate", 418, hdr(),
			envelope("internal_error", "Internal server error"), "418"},
		{"reconcile", "POST", "/v1/usage/reconcile", 200, hdr(),
			`{"server_count":3,"effective_remaining":97,"reconciled_at":"2026-02-16T12:00:00Z"}`, ""},
		{"reconcile, feature cap", "POST", "/v1/usage/reconcile", 422, hdr(),
			envelope("validation_error", "Too many distinct usage features for this install"), ""},
		{"reconcile, negative remaining", "POST", "/v1/usage/reconcile", 200, hdr(),
			`{"server_count":3,"effective_remaining":-1,"reconciled_at":"2026-02-16T12:00:00Z"}`, "effective_remaining"},
		{"erase", "DELETE", "/v1/usage", 200, hdr(), `{"deleted":2,"erased_at":"2026-02-16T12:00:00Z"}`, ""},
		{"erase rate limited", "DELETE", "/v1/usage", 429, hdr("Retry-After", "30"),
			envelope("usage_rate_limited", "Too many usage requests; retry later"), ""},
		{"livez", "GET", "/livez", 200, hdr(), `{"status":"ok"}`, ""},
		{"readyz ready", "GET", "/readyz", 200, hdr(), `{"status":"ready","checks":{"usage_store":"ok","draining":"ok"}}`, ""},
		{"readyz degraded", "GET", "/readyz", 200, hdr(),
			`{"status":"degraded","checks":{"usage_store":"ok","redis":"degraded","draining":"ok"}}`, ""},
		{"readyz 200 but unready", "GET", "/readyz", 200, hdr(),
			`{"status":"unready","checks":{"usage_store":"failing","draining":"ok"}}`, "status"},
		{"readyz draining", "GET", "/readyz", 503, hdr(), `{"status":"unready","checks":{"usage_store":"ok","draining":"failing"}}`, ""},
		{"readyz naming a path", "GET", "/readyz", 503, hdr(),
			`{"status":"unready","checks":{"usage_store":"failing","draining":"ok","db_path":"/var/lib/x"}}`, "db_path"},
		{"unknown path", "GET", "/nope", 404, hdr(), envelope("not_found", "Not found"), ""},
		{"unknown path answered 200", "GET", "/nope", 200, hdr(), `{}`, "404"},
		{"unknown path, plain text", "GET", "/nope", 404, hdr("Content-Type", "text/plain"), envelope("not_found", "Not found"), "Content-Type"},
		{"wrong method", "PUT", "/v1/health", 405, hdr("Allow", "GET, HEAD"), envelope("method_not_allowed", "Method not allowed"), ""},
		{"wrong method without Allow", "PUT", "/v1/health", 405, hdr(), envelope("method_not_allowed", "Method not allowed"), "Allow"},
		{"unclean path served clean", "GET", "/v1/../v1/health", 200, hdr(),
			`{"status":"ok","service":"offload-backend-api","version":"1.2.3","environment":"test"}`, ""},
		{"unclean path answered 404", "GET", "/v1/../v1/health", 404, hdr(), envelope("not_found", "Not found"), ""},
		{"unclean path served clean, wrong body", "GET", "//v1/./health", 200, hdr(), `{"status":"ok"}`, "service"},
		{"trailing slash is another path", "GET", "/v1/health/", 200, hdr(),
			`{"status":"ok","service":"offload-backend-api","version":"1.2.3","environment":"test"}`, "404"},
		{"docs asset", "GET", "/docs/swagger-ui.css", 200,
			hdr("Content-Type", "text/css; charset=utf-8", "X-Content-Type-Options", "nosniff", "ETag", `"abc"`), `body{}`, ""},
		{"docs asset not listed", "GET", "/docs/secret.txt", 404,
			hdr(), envelope("not_found", "Not found"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			problems := ResponseProblems(req, tt.status, tt.header, []byte(tt.body))
			if tt.wantProblem == "" {
				for _, p := range problems {
					t.Error(p)
				}
				return
			}
			if len(problems) == 0 {
				t.Fatalf("no problem found, want one mentioning %q", tt.wantProblem)
			}
			if !strings.Contains(strings.Join(problems, "\n"), tt.wantProblem) {
				t.Errorf("problems don't mention %q:\n%s", tt.wantProblem, strings.Join(problems, "\n"))
			}
		})
	}
}

func TestRequestProblems(t *testing.T) {
	tests := []struct {
		name         string
		method, path string
		header       map[string]string
		body         string
		wantProblem  string
	}{
		{"session", "POST", "/v1/sessions/anonymous", nil,
			`{"install_id":"example-install-0001","app_version":"1.0","platform":"ios"}`, ""},
		{"session, short install id", "POST", "/v1/sessions/anonymous", nil,
			`{"install_id":"short","app_version":"1.0","platform":"ios"}`, "install_id"},
		{"breakdown", "POST", "/v1/ai/breakdown/generate",
			map[string]string{"Authorization": "Bearer abc.def", "X-Offload-Cloud-Opt-In": "true"},
			`{"input_text":"clean","granularity":3}`, ""},
		{"breakdown without opt-in", "POST", "/v1/ai/breakdown/generate",
			map[string]string{"Authorization": "Bearer abc.def"}, `{"input_text":"clean","granularity":3}`, "X-Offload-Cloud-Opt-In"},
		{"breakdown granularity 9", "POST", "/v1/ai/breakdown/generate",
			map[string]string{"Authorization": "Bearer abc.def", "X-Offload-Cloud-Opt-In": "true"},
			`{"input_text":"clean","granularity":9}`, "granularity"},
		{"reconcile with since as a number", "POST", "/v1/usage/reconcile",
			map[string]string{"Authorization": "Bearer abc.def", "Content-Type": "application/json"},
			`{"install_id":"example-install-0001","feature":"breakdown","local_count":3,"since":1767268800}`, ""},
		{"erase", "DELETE", "/v1/usage", map[string]string{"Authorization": "Bearer abc.def"}, ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			problems := RequestProblems(req, []byte(tt.body))
			if tt.wantProblem == "" {
				for _, p := range problems {
					t.Error(p)
				}
				return
			}
			if !strings.Contains(strings.Join(problems, "\n"), tt.wantProblem) {
				t.Errorf("problems don't mention %q:\n%s", tt.wantProblem, strings.Join(problems, "\n"))
			}
		})
	}
}

// TestWrap checks that Wrap passes the response through unchanged and
// reports a response the document doesn't allow.
func TestWrap(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-ID", rid)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"status":"ok"}`))
	})
	rec := httptest.NewRecorder()
	Wrap(t, h).ServeHTTP(rec, httptest.NewRequest("GET", "/livez", nil))
	if rec.Code != 200 || rec.Body.String() != `{"status":"ok"}` || rec.Header().Get("X-Request-ID") != rid {
		t.Errorf("Wrap changed the response: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}

	ft := &fakeT{TB: t}
	Wrap(ft, h).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/health", nil))
	if len(ft.errors) == 0 {
		t.Error("Wrap reported nothing for a health answer without its fields")
	}
}

// fakeT records Errorf calls instead of failing the test.
type fakeT struct {
	testing.TB
	errors []string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.errors = append(f.errors, format)
}

// BenchmarkResponseProblems is the cost Wrap adds to each test request.
func BenchmarkResponseProblems(b *testing.B) {
	req := httptest.NewRequest("POST", "/v1/ai/breakdown/generate", nil)
	h := hdr()
	body := []byte(`{"steps":[{"title":"First","substeps":[]}],"provider":"fake","latency_ms":0,"usage":{"input_tokens":1,"output_tokens":1}}`)
	for b.Loop() {
		if p := ResponseProblems(req, 200, h, body); len(p) > 0 {
			b.Fatal(p)
		}
	}
}
