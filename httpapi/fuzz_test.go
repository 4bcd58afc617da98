package httpapi

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeRequests feeds arbitrary bodies to the decoders of every route:
// they must never panic, and whatever they accept must satisfy the contract.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{
		`{"install_id":"install-123","app_version":"1","platform":"ios"}`,
		`{"input_text":"clean the apartment","granularity":3,"context_hints":["a"],"template_ids":["t"]}`,
		`{"install_id":"install-123","feature":"breakdown","local_count":3,"since":"2026-02-16T12:00:00Z"}`,
		`{"granularity":3.0}`, `{"local_count":1e400}`, `[]`, `null`, `{`, `{"a":1} {}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var s createSessionRequest
		if decodeObject(body, &s) == nil {
			if id, err := textField(s.InstallID, 8, 128); err == nil && (len([]rune(id)) < 8 || len([]rune(id)) > 128) {
				t.Fatalf("accepted install_id of %d chars", len([]rune(id)))
			}
		}
		var b breakdownRequest
		if decodeObject(body, &b) == nil {
			if req, err := parseBreakdown(b); err == nil {
				if req.Granularity < 1 || req.Granularity > 5 || req.InputText == "" || len(req.ContextHints) > 32 || len(req.TemplateIDs) > 32 {
					t.Fatalf("accepted invalid request %+v", req)
				}
			}
		}
		var r reconcileRequest
		if decodeObject(body, &r) == nil {
			if _, _, n, err := parseReconcile(r); err == nil && n < 0 {
				t.Fatalf("accepted negative count %d", n)
			}
		}
	})
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
