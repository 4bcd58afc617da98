package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecodeRequests feeds arbitrary bodies to the decoders of every route:
// they must never panic, and whatever they accept must satisfy the contract.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{
		`{"install_id":"install-123","app_version":"1","platform":"ios"}`,
		`{"input_text":"clean the apartment","granularity":3,"context_hints":["a"],"template_ids":["t"]}`,
		`{"install_id":"install-123","feature":"breakdown","local_count":3,"since":"2026-02-16T12:00:00Z"}`,
		`{"install_id":"install-real-1","Install_Id":"install-other-2","local_count":1,"LOCAL_COUNT":777}`,
		`{"local_count":1,"local_count":2}`, `{"install_id":"install-\ud800-1"}`, "{\"install_id\":\"install-\xff-1\"}",
		"\xef\xbb\xbf{}", "\f{}", `{"since":1771243200.5}`,
		`{"granularity":3.0}`, `{"local_count":1e400}`, `[]`, `null`, `{`, `{"a":1} {}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var s createSessionRequest
		if decodeObject(body, &s) == nil {
			if id, err := textField(s.InstallID, 8, 128); err == nil {
				if n := utf8.RuneCountInString(id); n < 8 || n > 128 {
					t.Fatalf("accepted install_id of %d chars", n)
				}
				checkText(t, body, id)
			}
		}
		var b breakdownRequest
		if decodeObject(body, &b) == nil {
			if req, err := parseBreakdown(b); err == nil {
				if req.Granularity < 1 || req.Granularity > 5 || req.InputText == "" || len(req.ContextHints) > 32 || len(req.TemplateIDs) > 32 {
					t.Fatalf("accepted invalid request %+v", req)
				}
				checkText(t, body, req.InputText)
				for _, h := range req.ContextHints {
					checkText(t, body, h)
				}
			}
		}
		var r reconcileRequest
		if decodeObject(body, &r) == nil {
			if _, _, n, err := parseReconcile(r); err == nil && n < 0 {
				t.Fatalf("accepted negative count %d", n)
			}
			// json.Decoder.Token reads keys exactly too, and a later key
			// overwrites an earlier one: both ways must pick the same values.
			if !bytes.HasPrefix(body, utf8BOM) {
				var want reconcileRequest
				if err := decodeTokens(body, &want); err != nil {
					t.Fatalf("decodeObject accepted what the token reader refuses: %v", err)
				}
				if !bytes.Equal(r.InstallID, want.InstallID) || !bytes.Equal(r.Feature, want.Feature) ||
					!bytes.Equal(r.LocalCount, want.LocalCount) || !bytes.Equal(r.Since, want.Since) {
					t.Fatalf("decodeObject read %+v, the token reader %+v", r, want)
				}
			}
		}
	})
}

// checkText: a string read from body is valid UTF-8, and holds U+FFFD only
// if body spelled it, raw or escaped, so no bytes were replaced on the way.
func checkText(t *testing.T, body []byte, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("invalid UTF-8 read: %q", s)
	}
	if strings.ContainsRune(s, utf8.RuneError) && !bytes.Contains(body, []byte("\uFFFD")) &&
		!bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`)) {
		t.Fatalf("U+FFFD in %q that the body %q doesn't spell", s, body)
	}
}

// FuzzPlainString: the fast path for escape-free strings reads exactly what
// encoding/json reads.
func FuzzPlainString(f *testing.F) {
	for _, s := range []string{`"abc"`, `"é😀"`, `"a\"b"`, `"\u00e9"`, "\"\xff\"", `""`, "\"\x01\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want string
		// Only whole literals that a decode accepted reach plainString: a
		// json.RawMessage field holds the value without surrounding space.
		if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' || json.Unmarshal(raw, &want) != nil {
			return
		}
		if got, ok := plainString(raw); ok && got != want {
			t.Fatalf("plainString(%q) = %q, encoding/json reads %q", raw, got, want)
		}
	})
}

// FuzzStringValue: a string is read as encoding/json reads it, or refused
// only for an unpaired surrogate escape (what encoding/json would turn into
// U+FFFD).
func FuzzStringValue(f *testing.F) {
	for _, s := range []string{`"abc"`, `"\ud83d\ude00"`, `"\ud800"`, `"\udc00"`, `"\\ud800"`, `"\ud800\u0041"`, `"\ud83d\ud83d\ude00"`, `"\ufffd"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want string
		// Whole literals of a valid UTF-8 body only, as decodeObject passes on.
		if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' || !utf8.Valid(raw) || json.Unmarshal(raw, &want) != nil {
			return
		}
		got, err := stringValue(raw)
		if err == nil {
			if got != want {
				t.Fatalf("stringValue(%q) = %q, encoding/json reads %q", raw, got, want)
			}
			return
		}
		// Refused: encoding/json must have made a U+FFFD the literal doesn't spell.
		spelled := strings.Count(string(raw), "\uFFFD") + strings.Count(strings.ToLower(string(raw)), `\ufffd`)
		if strings.Count(want, "\uFFFD") <= spelled {
			t.Fatalf("stringValue(%q) refused a string encoding/json reads as %q", raw, want)
		}
	})
}

// rfc3339 is the strict RFC 3339 form that Go's time.Parse checks the
// ranges of; everything in it is also pydantic's.
var rfc3339 = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$`)

// FuzzSince checks the since reader on any JSON value: no panic, an
// integer reads the same as a number and as a string of digits, and
// whatever Go's RFC 3339 parser takes (years 1-9999) pydantic takes too.
func FuzzSince(f *testing.F) {
	for _, s := range []string{
		`"2026-02-16T12:00:00Z"`, `"2026-02-16T12:00:00.5+01:30"`, `"2026-02-16 12:00"`, `"2026-02-16"`,
		`"2026-02-16T12:00:00\u221201:00"`, `"1771243200"`, `"1771243200.5"`, `"1.5e3"`, `"18446744073709551616"`,
		`1771243200`, `1771243200.5`, `1e3`, `253402300799999`, `-62135596800000`, `null`, `true`, `{}`, `[]`, `""`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if !json.Valid([]byte(raw)) || !utf8.ValidString(raw) {
			return // only a value of a decoded object reaches the field
		}
		raw = strings.Trim(raw, " \t\r\n") // as a json.RawMessage field holds it
		ok := ignoredTimeField(json.RawMessage(raw)) == nil
		if _, err := strconv.ParseInt(raw, 10, 64); err == nil {
			if str := ignoredTimeField(json.RawMessage(strconv.Quote(raw))) == nil; str != ok {
				t.Fatalf("since %s: as a number %v, as a string %v", raw, ok, str)
			}
		}
		var s string
		if json.Unmarshal([]byte(raw), &s) == nil && rfc3339.MatchString(s) && !strings.HasPrefix(s, "0000") {
			if _, err := time.Parse(time.RFC3339, s); err == nil && !ok {
				t.Fatalf("since %s refused; it is RFC 3339", raw)
			}
		}
	})
}

// FuzzJSONContentType: no panic; the answer ignores ASCII case and
// everything after the first ";"; a JSON type starts application/.
func FuzzJSONContentType(f *testing.F) {
	for _, s := range []string{"", "application/json", "application/json; charset=utf-8", "Application/Vnd.Api+JSON",
		"text/plain", "application/json/x", "\xa0application/json\x85", "application/+json;", "multipart/form-data; boundary=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := jsonContentType(v)
		if up := strings.Map(func(r rune) rune {
			if 'a' <= r && r <= 'z' {
				return r - 'a' + 'A'
			}
			return r
		}, v); utf8.ValidString(v) && jsonContentType(up) != got {
			t.Fatalf("%q: %v, upper case %q: %v", v, got, up, !got)
		}
		// (An empty value is JSON, an empty type before ";" is not.)
		if mt, _, found := strings.Cut(v, ";"); found && mt != "" && jsonContentType(mt) != got {
			t.Fatalf("%q: %v, without parameters: %v", v, got, !got)
		}
		if got && v != "" && !strings.HasPrefix(asciiLower(trimPySpace(v)), "application/") {
			t.Fatalf("%q read as JSON", v)
		}
	})
}

// FuzzRequestTarget: whatever method and target net/http passes to the
// handler, the answer has X-Request-ID, the envelope from 300 up, and is
// never a redirect.
func FuzzRequestTarget(f *testing.F) {
	for _, s := range [][2]string{
		{"GET", "/v1/health"}, {"GET", "//v1/health"}, {"GET", "/v1/../v1/health"}, {"OPTIONS", "*"}, {"GET", "*"},
		{"CONNECT", "example.com:443"}, {"CONNECT", "/v1/health"}, {"GET", "http://api"}, {"POST", "/v1/%2e%2e/health"},
		{"GET", "/v1/health/"}, {"DELETE", "/v1//usage/"},
	} {
		f.Add(s[0], s[1])
	}
	e := newEnv(f, func(d *Deps) { d.Logger = slog.New(slog.DiscardHandler) })
	f.Fuzz(func(t *testing.T, method, target string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: api\r\n\r\n")))
		if err != nil {
			return // net/http answers it itself, before any handler
		}
		w := httptest.NewRecorder()
		e.raw.ServeHTTP(w, r) // the target checks the envelope itself
		checkEnvelope(t, w.Code, w.Header(), w.Body.Bytes())
		if w.Code/100 == 3 {
			t.Fatalf("%s %s: redirect to %q", method, target, w.Header().Get("Location"))
		}
	})
}
