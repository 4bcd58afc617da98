package client

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/offload-app/offload"
)

func TestDecodeBreakdownNormalizesSubsteps(t *testing.T) {
	b, err := decodeBreakdown([]byte(`{"steps":[{"title":"a"},{"title":"b","substeps":null},{"title":"c","substeps":[{"title":"d"}]}],"provider":"openai","latency_ms":5,"usage":{"input_tokens":1,"output_tokens":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	var walk func([]offload.Step)
	walk = func(steps []offload.Step) {
		for _, s := range steps {
			if s.Substeps == nil {
				t.Fatalf("step %q has nil substeps", s.Title)
			}
			walk(s.Substeps)
		}
	}
	walk(b.Steps)
	if len(b.Steps) != 3 || b.Steps[2].Substeps[0].Title != "d" || b.Usage.OutputTokens != 2 {
		t.Fatalf("breakdown = %+v", b)
	}
}

func TestDecodeAcceptsUnknownFields(t *testing.T) {
	if _, err := decodeHealth([]byte(`{"status":"ok","service":"s","version":"v","environment":"e","uptime":3}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeReconciliation([]byte(`{"server_count":3,"effective_remaining":97,"reconciled_at":"2026-02-16T12:02:00Z","extra":{}}`)); err != nil {
		t.Fatal(err)
	}
	if e, err := decodeErasure([]byte(`{"deleted":2,"erased_at":"2026-02-16T12:02:00Z","extra":1}`)); err != nil || e.Deleted != 2 {
		t.Fatal(e, err)
	}
}

// FuzzDecode feeds arbitrary bodies to every response decoder. None may
// panic, and whatever they accept must satisfy the contract's invariants.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"status":"ok","service":"offload-backend-api","version":"dev","environment":"development"}`,
		`{"session_token":"abc.def","expires_at":"2026-02-16T12:02:00Z"}`,
		`{"steps":[{"title":"a","substeps":[{"title":"b","substeps":[]}]}],"provider":"openai","latency_ms":3,"usage":{"input_tokens":1,"output_tokens":2}}`,
		`{"server_count":3,"effective_remaining":97,"reconciled_at":"2026-02-16T12:02:00Z"}`,
		`{"deleted":2,"erased_at":"2026-02-16T12:02:00Z"}`, `{"deleted":-1,"erased_at":"2026-02-16T12:02:00Z"}`,
		`{"error":{"code":"consent_required","message":"Cloud AI processing requires explicit opt-in","request_id":"r"}}`,
		`{"steps":[{"title":"","substeps":null}]}`,
		`[]`, `null`, `{"error":null}`, `{"steps":{}}`, "\xff\xfe", `{"a":1}{"b":2}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), 500)
	}
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if h, err := decodeHealth(body); err == nil && h.Status == "" {
			t.Fatal("accepted health without status")
		}
		if s, err := decodeSession(body); err == nil && (s.Token == "" || s.ExpiresAt.IsZero() || !printable(string(s.Token), maxTokenLen)) {
			t.Fatal("accepted an unusable session")
		}
		if b, err := decodeBreakdown(body); err == nil {
			if len(b.Steps) == 0 {
				t.Fatal("accepted an empty plan")
			}
			var walk func([]offload.Step, int)
			walk = func(steps []offload.Step, depth int) {
				if depth > maxStepDepth {
					t.Fatal("accepted too deep a plan")
				}
				for _, s := range steps {
					if strings.TrimSpace(s.Title) == "" || utf8.RuneCountInString(s.Title) > maxTitleChars || s.Substeps == nil {
						t.Fatalf("accepted step %q", s.Title)
					}
					walk(s.Substeps, depth+1)
				}
			}
			walk(b.Steps, 1)
		}
		if r, err := decodeReconciliation(body); err == nil && (r.ServerCount < 0 || r.EffectiveRemaining < 0) {
			t.Fatal("accepted negative counts")
		}
		if e, err := decodeErasure(body); err == nil && (e.Deleted < 0 || e.ErasedAt.IsZero()) {
			t.Fatal("accepted a bad erasure")
		}
		ae := decodeAPIError(status, body)
		if ae.Status != status || (ae.Code != "" && !validCode(ae.Code)) || !plainText(ae.Message, 4*maxErrorMessage+8) {
			t.Fatalf("bad APIError %+v", ae)
		}
		if ae.RequestID != "" && !validRequestID(ae.RequestID) {
			t.Fatalf("bad request id %q", ae.RequestID)
		}
	})
}
