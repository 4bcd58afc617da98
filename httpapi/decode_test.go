package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/offload-app/offload"
)

// fixture is a file made by testdata/gen_fixtures.py from the existing
// deployment's own libraries: the cases they accept and refuse.
type fixture struct {
	Accepted []string `json:"accepted"`
	Refused  []string `json:"refused"`
}

func readFixture(t *testing.T, name string) fixture {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Accepted) == 0 || len(f.Refused) == 0 {
		t.Fatalf("%s: empty fixture", name)
	}
	return f
}

// sessionInstallID creates a session with body and returns the install id
// its token is for.
func (e *env) sessionInstallID(t *testing.T, body string) string {
	t.Helper()
	w := e.do(req{method: "POST", path: "/v1/sessions/anonymous", body: body})
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	claims, err := e.tokens.Verify(decode[createSessionResponse](t, w).SessionToken, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return claims.InstallID
}

func TestFieldNamesMatchExactly(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"case variant after", `{"install_id":"install-real-1","Install_Id":"install-other-2","app_version":"1","platform":"ios"}`, "install-real-1"},
		{"case variant before", `{"Install_Id":"install-other-2","install_id":"install-real-1","app_version":"1","platform":"ios"}`, "install-real-1"},
		{"upper case after", `{"install_id":"install-real-1","INSTALL_ID":"install-other-2","app_version":"1","platform":"ios"}`, "install-real-1"},
		// U+017F LATIN SMALL LETTER LONG S folds to s in Unicode.
		{"unicode fold after", `{"install_id":"install-real-1","in\u017ftall_id":"install-other-2","app_version":"1","platform":"ios"}`, "install-real-1"},
		{"unicode fold raw before", "{\"in\u017ftall_id\":\"install-other-2\",\"install_id\":\"install-real-1\",\"app_version\":\"1\",\"platform\":\"ios\"}", "install-real-1"},
		// An escape spells the same key, as for json.loads.
		{"escaped exact key", `{"\u0069nstall_id":"install-real-1","app_version":"1","platform":"ios"}`, "install-real-1"},
		// Of duplicate exact keys the last wins, as in a Python dict.
		{"duplicate keys", `{"install_id":"install-other-2","install_id":"install-real-1","app_version":"1","platform":"ios"}`, "install-real-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newEnv(t).sessionInstallID(t, tt.body); got != tt.want {
				t.Errorf("token for %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("only a case variant is a missing field", func(t *testing.T) {
		e := newEnv(t)
		for _, body := range []string{
			`{"Install_Id":"install-other-2","app_version":"1","platform":"ios"}`,
			`{"install_id":"install-real-1","App_Version":"1","platform":"ios"}`,
			`{"install_id":"install-real-1","app_version":"1","PLATFORM":"ios"}`,
		} {
			wantError(t, e.do(req{method: "POST", path: "/v1/sessions/anonymous", body: body}), 422, "validation_error")
		}
	})

	reconcile := []struct {
		name, body string
		want       int64
	}{
		{"case variant after", `{"install_id":"install-1234","feature":"breakdown","local_count":1,"LOCAL_COUNT":777}`, 1},
		{"case variant before", `{"LOCAL_COUNT":777,"install_id":"install-1234","feature":"breakdown","local_count":1}`, 1},
		{"case variant of feature", `{"install_id":"install-1234","feature":"breakdown","Feature":"other","local_count":1}`, 1},
		{"duplicate, last lower", `{"install_id":"install-1234","feature":"breakdown","local_count":5,"local_count":1}`, 1},
		{"duplicate, last higher", `{"install_id":"install-1234","feature":"breakdown","local_count":1,"local_count":5}`, 5},
	}
	for _, tt := range reconcile {
		t.Run("reconcile "+tt.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.reconcile("install-1234", tt.body)
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if got := decode[reconcileResponse](t, w); got.ServerCount != tt.want {
				t.Errorf("server_count = %d, want %d", got.ServerCount, tt.want)
			}
			if n, _ := e.store.mock().CountFn(context.Background(), "install-1234", "breakdown"); n != tt.want {
				t.Errorf("stored %d, want %d", n, tt.want)
			}
		})
	}

	t.Run("breakdown", func(t *testing.T) {
		e := newEnv(t)
		var got offload.BreakdownRequest
		e.provider.GenerateFn = func(_ context.Context, r offload.BreakdownRequest) (offload.Breakdown, error) {
			got = r
			return offload.Breakdown{Steps: []offload.Step{{Title: "a", Substeps: []offload.Step{}}}}, nil
		}
		w := e.generate("install-123", "true", `{"input_text":"real","Input_Text":"other","granularity":2,"Granularity":9,"context_hints":["a"],"Context_Hints":["b","c"]}`)
		if w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if got.InputText != "real" || got.Granularity != 2 || len(got.ContextHints) != 1 || got.ContextHints[0] != "a" {
			t.Errorf("provider got %+v", got)
		}
	})
}

func TestBodyEncoding(t *testing.T) {
	const rest = `,"app_version":"1","platform":"ios"}`
	tests := []struct {
		name, body string
		want       string // install id, or "" for a 422
	}{
		{"invalid UTF-8 in a value", "{\"install_id\":\"install-\xff-1\"" + rest, ""},
		{"another invalid byte, same place", "{\"install_id\":\"install-\xfe-1\"" + rest, ""},
		{"UTF-8 encoded surrogate", "{\"install_id\":\"install-\xed\xa0\x80-1\"" + rest, ""},
		{"invalid UTF-8 in an unknown field", "{\"install_id\":\"install-1234\",\"x\":\"\xff\"" + rest, ""},
		{"invalid UTF-8 in a key", "{\"install_id\":\"install-1234\",\"\xff\":1" + rest, ""},
		{"unpaired high surrogate", `{"install_id":"install-\ud800-1"` + rest, ""},
		{"unpaired low surrogate", `{"install_id":"install-\udc00-1"` + rest, ""},
		{"high surrogate before a letter", `{"install_id":"install-\ud83dx-1"` + rest, ""},
		{"two high surrogates", `{"install_id":"install-\ud83d\ud83d-1"` + rest, ""},
		{"surrogate at the end", `{"install_id":"install-1234\ud83d"` + rest, ""},
		{"escaped backslash before u", `{"install_id":"install-\\ud800"` + rest, `install-\ud800`},
		{"surrogate pair", `{"install_id":"install-\ud83d\ude00-1"` + rest, "install-😀-1"},
		{"escaped replacement character", `{"install_id":"install-\ufffd-1"` + rest, "install-\ufffd-1"},
		{"raw replacement character", "{\"install_id\":\"install-\xef\xbf\xbd-1\"" + rest, "install-\ufffd-1"},
		// json.loads reads bytes with a UTF-8 BOM as utf-8-sig.
		{"byte order mark", "\xef\xbb\xbf{\"install_id\":\"install-1234\"" + rest, "install-1234"},
		{"two byte order marks", "\xef\xbb\xbf\xef\xbb\xbf{\"install_id\":\"install-1234\"" + rest, ""},
		{"JSON whitespace around", " \t\r\n{\"install_id\":\"install-1234\"" + rest + "\n\t ", "install-1234"},
		{"form feed before", "\f{\"install_id\":\"install-1234\"" + rest, ""},
		{"no-break space after", "{\"install_id\":\"install-1234\"" + rest + "\u00a0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.want == "" {
				wantError(t, e.do(req{method: "POST", path: "/v1/sessions/anonymous", body: tt.body}), 422, "validation_error")
				return
			}
			if got := e.sessionInstallID(t, tt.body); got != tt.want {
				t.Errorf("token for %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("unpaired surrogate in a list item", func(t *testing.T) {
		e := newEnv(t)
		wantError(t, e.generate("install-123", "true", `{"input_text":"x","granularity":1,"context_hints":["a\udfff"]}`), 422, "validation_error")
		if e.providerCalls() != 0 {
			t.Error("provider called")
		}
	})
}

func TestSinceMatchesPydantic(t *testing.T) {
	f := readFixture(t, "since.json")
	for _, raw := range f.Accepted {
		if err := ignoredTimeField(json.RawMessage(raw)); err != nil {
			t.Errorf("since %s refused; pydantic accepts it", raw)
		}
	}
	for _, raw := range f.Refused {
		if err := ignoredTimeField(json.RawMessage(raw)); err == nil {
			t.Errorf("since %s accepted; pydantic refuses it", raw)
		}
	}
	if err := ignoredTimeField(nil); err != nil {
		t.Error("absent since refused")
	}
}

func TestReconcileSince(t *testing.T) {
	tests := []struct {
		since string // raw JSON; "" leaves the field out
		want  int
	}{
		{"", 200},
		{`null`, 200},
		{`"2026-02-16T12:00:00Z"`, 200},
		{`"2026-02-16T12:00:00+01:00"`, 200},
		{`"2026-02-16T12:00:00.123456Z"`, 200},
		{`"2026-02-16T12:00:00"`, 200},
		{`"2026-02-16"`, 200},
		{`"1771243200"`, 200},
		{`1771243200`, 200},
		{`1771243200.5`, 200},
		{`"not-a-date"`, 422},
		{`"yesterday"`, 422},
		{`""`, 422},
		{`"2026-02-30T12:00:00Z"`, 422},
		{`"2026-02-16T12:00:00+24:00"`, 422},
		{`"0000-01-01T00:00:00Z"`, 422},
		{`253402300800000`, 422},
		{`true`, 422},
		{`false`, 422},
		{`{}`, 422},
		{`[]`, 422},
		{`["2026-02-16T12:00:00Z"]`, 422},
	}
	for _, tt := range tests {
		t.Run(tt.since, func(t *testing.T) {
			body := `{"install_id":"install-1234","feature":"breakdown","local_count":3`
			if tt.since != "" {
				body += `,"since":` + tt.since
			}
			body += "}"
			w := newEnv(t).reconcile("install-1234", body)
			if tt.want == 422 {
				wantError(t, w, 422, "validation_error")
			} else if w.Code != tt.want {
				t.Errorf("status %d: %s", w.Code, w.Body)
			}
		})
	}
}

// latin1 turns the fixture's text (Starlette's Latin-1 reading of the
// header bytes) back into those bytes.
func latin1(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		b = append(b, byte(r))
	}
	return string(b)
}

func TestContentTypeMatchesFastAPI(t *testing.T) {
	f := readFixture(t, "content_type.json")
	for _, v := range f.Accepted {
		if !jsonContentType(latin1(v)) {
			t.Errorf("Content-Type %q not read as JSON; FastAPI reads it", v)
		}
	}
	for _, v := range f.Refused {
		if jsonContentType(latin1(v)) {
			t.Errorf("Content-Type %q read as JSON; FastAPI doesn't", v)
		}
	}
}

func TestContentType(t *testing.T) {
	body := sessionBody("install-1234", "1", "ios")
	tests := []struct {
		contentType string // "-" sends none
		want        int
	}{
		{"-", 200},
		{"", 200},
		{"application/json", 200},
		{"application/json; charset=utf-8", 200},
		{"Application/JSON;charset=UTF-8", 200},
		{"application/vnd.api+json", 200},
		{"application/problem+json; x=y", 200},
		{"application/x-www-form-urlencoded", 422},
		{"multipart/form-data; boundary=xyz", 422},
		{"text/plain", 422},
		{"text/plain; charset=utf-8", 422},
		{"text/json", 422},
		{"application/jsonx", 422},
		{"application/json/x", 422},
		{"json", 422},
	}
	for _, tt := range tests {
		t.Run(tt.contentType, func(t *testing.T) {
			h := map[string]string{}
			if tt.contentType != "-" {
				h["Content-Type"] = tt.contentType
			}
			w := newEnv(t).do(req{method: "POST", path: "/v1/sessions/anonymous", body: body, header: h})
			if tt.want == 422 {
				wantError(t, w, 422, "validation_error")
			} else if w.Code != tt.want {
				t.Errorf("status %d: %s", w.Code, w.Body)
			}
		})
	}

	t.Run("every body route", func(t *testing.T) {
		e := newEnv(t)
		h := map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer " + e.token("install-1234"), OptInHeader: "true"}
		for path, body := range map[string]string{
			"/v1/sessions/anonymous":    body,
			"/v1/ai/breakdown/generate": `{"input_text":"x","granularity":3}`,
			"/v1/usage/reconcile":       reconcileBody("install-1234", "breakdown", 1),
		} {
			wantError(t, e.do(req{method: "POST", path: path, body: body, header: h}), 422, "validation_error")
		}
		if e.providerCalls() != 0 {
			t.Error("provider called")
		}
	})

	// The size limit still comes first: an oversized form is 413, unread.
	t.Run("oversized", func(t *testing.T) {
		e := newEnv(t, func(d *Deps) { d.MaxBodyBytes = 1024 })
		body := &countingReader{r: strings.NewReader(strings.Repeat("x", 4096))}
		r := newRequest("POST", "/v1/sessions/anonymous", "")
		r.Body, r.ContentLength = nopCloser{body}, 4096
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := newRecorder()
		e.handler.ServeHTTP(w, r)
		wantError(t, w, 413, "request_too_large")
		if body.n != 0 {
			t.Errorf("read %d bytes", body.n)
		}
	})
}

type nopCloser struct{ *countingReader }

func (nopCloser) Close() error { return nil }

func TestPydanticDatetimeQuirks(t *testing.T) {
	// The parts of speedate's number reading that are easy to get wrong,
	// pinned here beside the fixture (which pydantic made).
	tests := []struct {
		s  string
		ok bool
	}{
		{"18446744073709551616", true}, // wraps to 0, as in speedate
		{"9223372036854775808", false}, // wraps negative: refused
		{"1e3", false},                 // an exponent without a dot is no number
		{"1.5e3", true},
		{".5", true},
		{"1.", true},
		{".", false},
		{"-", false},
		{"+", false},
		{"20000000000", true},     // seconds: year 2603
		{"253402300799999", true}, // milliseconds: the last one of 9999
		{"253402300800000", false},
		{"2026-02-16T12:00:00\u221201:00", true},
		{"2026-02-16T12:00:00\u221201", false},
	}
	for _, tt := range tests {
		if got := pydanticDatetime(tt.s); got != tt.ok {
			t.Errorf("pydanticDatetime(%q) = %v, want %v", tt.s, got, tt.ok)
		}
	}
}

// BenchmarkDecodeObject compares the exact-match decoding with the
// encoding/json struct decoding it replaced (case-insensitive, so wrong)
// and with streaming tokens, the other exact-match way the standard
// library offers.
func BenchmarkDecodeObject(b *testing.B) {
	body := []byte(`{"install_id":"install-bench","feature":"breakdown","local_count":12,"since":"2026-02-16T12:00:00Z"}`)
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r reconcileRequest
			if err := decodeObject(body, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("struct-before", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r reconcileRequest
			if err := json.Unmarshal(body, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tokens", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r reconcileRequest
			if err := decodeTokens(body, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// decodeTokens reads the object key by key with json.Decoder.Token.
func decodeTokens(body []byte, dst *reconcileRequest) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return err
	}
	fields := map[string]*json.RawMessage{"install_id": &dst.InstallID, "feature": &dst.Feature, "local_count": &dst.LocalCount, "since": &dst.Since}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if p, ok := fields[k.(string)]; ok {
			*p = raw
		}
	}
	_, err := dec.Token()
	return err
}
