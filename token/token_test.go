package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload"
)

const (
	testIss = "offload-backend-test"
	testAud = "offload-ios-test"
	testKID = "test-kid"
	testKey = "test-secret"
)

// t0 is 2026-02-16T12:00:00Z, the time the deployment's own tests use.
var t0 = time.Unix(1771243200, 0).UTC()

func newCodec(t testing.TB, o Options) *Codec {
	t.Helper()
	if o.Issuer == "" {
		o.Issuer = testIss
	}
	if o.Audience == "" {
		o.Audience = testAud
	}
	if o.ActiveKID == "" {
		o.ActiveKID = testKID
	}
	if o.Keys == nil {
		o.Keys = map[string][]byte{testKID: []byte(testKey)}
	}
	if o.TTL == 0 {
		o.TTL = 300 * time.Second
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signRaw builds a token around any payload text, signed with key; it is
// how the tests craft tokens our Issue would never produce.
func signRaw(key, payload string) string {
	seg := base64.RawURLEncoding.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(seg))
	return seg + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// claimsJSON is a valid payload for t0 with the named claims replaced
// (a value of nil drops the claim). Order as the deployment writes it.
func claimsJSON(over map[string]any) string {
	names := []string{"v", "kid", "iat", "nbf", "iss", "aud", "install_id", "exp"}
	vals := map[string]any{
		"v": 2, "kid": testKID, "iat": t0.Unix(), "nbf": t0.Unix(),
		"iss": testIss, "aud": testAud, "install_id": "install-12345", "exp": t0.Unix() + 300,
	}
	var b strings.Builder
	b.WriteByte('{')
	first := true
	add := func(k string, v any) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		var vb []byte
		if raw, ok := v.(json.RawMessage); ok {
			vb = raw
		} else {
			vb, _ = json.Marshal(v)
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	for _, k := range names {
		v, replaced := over[k]
		if !replaced {
			v = vals[k]
		}
		if v != nil {
			add(k, v)
		}
	}
	for k, v := range over {
		if _, known := vals[k]; !known {
			add(k, v)
		}
	}
	b.WriteByte('}')
	return b.String()
}

func code(err error) string {
	var e *offload.Error
	if !errors.As(err, &e) {
		return fmt.Sprintf("not an *offload.Error: %v", err)
	}
	if e.Message != "" {
		return "message set: " + e.Message
	}
	return e.Code
}

func TestRoundTrip(t *testing.T) {
	c := newCodec(t, Options{})
	for _, id := range []string{"install-12345", "installé-日本語-😀", `<>&"\` + "\n\x00\x7f", strings.Repeat("x", 128)} {
		tok, exp, err := c.Issue(id, t0.Add(700*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if !exp.Equal(t0.Add(300*time.Second)) || exp.Location() != time.UTC {
			t.Errorf("expiresAt %v, want %v in UTC", exp, t0.Add(300*time.Second))
		}
		if strings.ContainsAny(tok, "=+/") || strings.Count(tok, ".") != 1 {
			t.Errorf("token %q is not two unpadded base64url segments", tok)
		}
		got, err := c.Verify(tok, t0.Add(299*time.Second))
		if err != nil {
			t.Fatalf("Verify(own token for %q) = %v", id, err)
		}
		if got.InstallID != id || !got.ExpiresAt.Equal(exp) {
			t.Errorf("claims %+v, want install id %q exp %v", got, id, exp)
		}
	}
}

func TestIssuedPayloadHasRequiredClaims(t *testing.T) {
	c := newCodec(t, Options{TTL: 120 * time.Second})
	tok, _, err := c.Issue("install-12345", t0)
	if err != nil {
		t.Fatal(err)
	}
	seg, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":2,"kid":"test-kid","iat":1771243200,"nbf":1771243200,"iss":"offload-backend-test","aud":"offload-ios-test","install_id":"install-12345","exp":1771243320}`
	if string(raw) != want {
		t.Fatalf("payload\n got %s\nwant %s", raw, want)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 8 {
		t.Errorf("payload has %d claims, want 8", len(m))
	}
	for _, k := range []string{"v", "kid", "iat", "nbf", "iss", "aud", "exp", "install_id"} {
		if _, ok := m[k]; !ok {
			t.Errorf("claim %q missing", k)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	c := newCodec(t, Options{Keys: map[string][]byte{testKID: []byte(testKey), "other": []byte("other-key")}})
	good, _, err := c.Issue("install-12345", t0)
	if err != nil {
		t.Fatal(err)
	}
	seg, sig, _ := strings.Cut(good, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	const inv, exp = offload.CodeInvalidToken, offload.CodeExpiredToken
	signed := func(over map[string]any) string { return signRaw(testKey, claimsJSON(over)) }

	tests := []struct {
		name string
		tok  string
		now  time.Time
		want string
	}{
		{"empty", "", t0, inv},
		{"a", "a", t0, inv},
		{"a.b.c", "a.b.c", t0, inv},
		{".", ".", t0, inv},
		{"a.", "a.", t0, inv},
		{".b", ".b", t0, inv},
		{"valid then .c", good + ".c", t0, inv},
		{"no dot", seg + sig, t0, inv},
		{"non-base64 payload", "!!!!." + sig, t0, inv},
		{"non-base64 signature", seg + ".***", t0, inv},
		{"impossible base64 length", seg + "A." + sig, t0, inv},
		{"padding inside", seg[:4] + "=" + seg[4:] + "." + sig, t0, inv},
		{"non-JSON payload", signRaw(testKey, "not json"), t0, inv},
		{"JSON array", signRaw(testKey, `["v",2]`), t0, inv},
		{"JSON string", signRaw(testKey, `"x"`), t0, inv},
		{"JSON null", signRaw(testKey, `null`), t0, inv},
		{"trailing data", signRaw(testKey, claimsJSON(nil)+"x"), t0, inv},
		{"two objects", signRaw(testKey, claimsJSON(nil)+"{}"), t0, inv},
		{"invalid UTF-8", signRaw(testKey, strings.Replace(claimsJSON(nil), "install-12345", "install-\xff2345", 1)), t0, inv},
		{"legacy payload", signRaw(testKey, fmt.Sprintf(`{"install_id":"install-12345","exp":%d}`, t0.Unix()+300)), t0, inv},
		{"bad signature", seg + "." + flip(sig, 5), t0, inv},
		{"tampered payload", flip(seg, 30) + "." + sig, t0, inv},
		{"signature by another listed key", signRaw("other-key", claimsJSON(nil)), t0, inv},
		{"signature truncated", seg + "." + sig[:42], t0, inv},
		{"signature too long", seg + "." + sig + "AAAA", t0, inv},
		{"empty signature", seg + ".", t0, inv},
		{"unsigned kid-less", signRaw("", claimsJSON(map[string]any{"kid": nil})), t0, inv},
		{"unknown kid", signed(map[string]any{"kid": "unknown-kid"}), t0, inv},
		{"empty kid", signed(map[string]any{"kid": ""}), t0, inv},
		{"kid not a string", signed(map[string]any{"kid": 7}), t0, inv},
		{"wrong issuer", signed(map[string]any{"iss": "wrong-issuer"}), t0, inv},
		{"wrong audience", signed(map[string]any{"aud": "wrong-audience"}), t0, inv},
		{"issuer differs in case", signed(map[string]any{"iss": strings.ToUpper(testIss)}), t0, inv},
		{"v=1", signed(map[string]any{"v": 1}), t0, inv},
		{"v=3", signed(map[string]any{"v": 3}), t0, inv},
		{"v=true", signed(map[string]any{"v": true}), t0, inv},
		{"v=2.5", signed(map[string]any{"v": json.RawMessage(`2.5`)}), t0, inv},
		{"exp beyond int64", signed(map[string]any{"exp": json.RawMessage(`99999999999999999999`)}), t0, inv},
		{"exp as string", signed(map[string]any{"exp": "1771243500"}), t0, inv},
		{"install_id empty", signed(map[string]any{"install_id": ""}), t0, inv},
		{"install_id number", signed(map[string]any{"install_id": 12345678}), t0, inv},
		{"iss null", signed(map[string]any{"iss": json.RawMessage(`null`)}), t0, inv},
		{"nbf in the future", signed(map[string]any{"iat": t0.Unix() + 10, "nbf": t0.Unix() + 10}), t0, inv},
		{"nbf a second ahead", good, t0.Add(-time.Nanosecond), inv},
		{"nbf before iat", signed(map[string]any{"nbf": t0.Unix() - 1}), t0, inv},
		{"expired: exp == now", good, t0.Add(300 * time.Second), exp},
		{"expired: exp < now", good, t0.Add(time.Hour), exp},
		{"expired and wrong issuer", signed(map[string]any{"exp": t0.Unix() - 1, "iss": "x"}), t0, inv},
		{"duplicate claim, last wrong", signRaw(testKey, strings.TrimSuffix(claimsJSON(nil), "}")+`,"v":1}`), t0, inv},
		{"claim name in other case", signRaw(testKey, strings.Replace(claimsJSON(nil), `"kid"`, `"KID"`, 1)), t0, inv},
		{"too long", strings.Repeat("A", MaxLen+1), t0, inv},
	}
	for _, claim := range []string{"v", "kid", "iat", "nbf", "iss", "aud", "exp", "install_id"} {
		tests = append(tests, struct {
			name string
			tok  string
			now  time.Time
			want string
		}{"missing " + claim, signed(map[string]any{claim: nil}), t0, inv})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Verify(tt.tok, tt.now)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", got)
			}
			if code(err) != tt.want {
				t.Errorf("code %s, want %s", code(err), tt.want)
			}
			if got != (offload.Claims{}) {
				t.Errorf("claims returned with an error: %+v", got)
			}
		})
	}
}

// The deployment decodes leniently; so do we, where it costs no safety.
func TestVerifyAcceptsHarmlessVariants(t *testing.T) {
	c := newCodec(t, Options{})
	good, _, err := c.Issue("install-12345", t0)
	if err != nil {
		t.Fatal(err)
	}
	seg, sig, _ := strings.Cut(good, ".")
	std := strings.NewReplacer("-", "+", "_", "/")
	tests := map[string]string{
		"padded signature":         seg + "." + sig + "=",
		"over-padded signature":    seg + "." + sig + "===",
		"standard alphabet sig":    seg + "." + std.Replace(sig),
		"padded payload":           signRawPadded(testKey, claimsJSON(nil)),
		"extra claims":             signRaw(testKey, claimsJSON(map[string]any{"extra": map[string]any{"a": []any{1, "b", nil, true}}})),
		"whitespace in JSON":       signRaw(testKey, " \n"+strings.ReplaceAll(claimsJSON(nil), ",", " , ")+"\t"),
		"escaped claim names":      signRaw(testKey, strings.Replace(claimsJSON(nil), `"kid"`, `"\u006bid"`, 1)),
		"duplicate, last is right": signRaw(testKey, strings.Replace(claimsJSON(nil), `{"v":2`, `{"v":1,"v":2`, 1)),
		"exp far in the future":    signRaw(testKey, claimsJSON(map[string]any{"exp": int64(1) << 62})),
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := c.Verify(tok, t0)
			if err != nil {
				t.Fatalf("Verify = %v", err)
			}
			if got.InstallID != "install-12345" {
				t.Errorf("install id %q", got.InstallID)
			}
		})
	}
}

func signRawPadded(key, payload string) string {
	seg := base64.URLEncoding.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(seg))
	return seg + "." + base64.URLEncoding.EncodeToString(m.Sum(nil))
}

func TestVerifyEscapedInstallID(t *testing.T) {
	c := newCodec(t, Options{})
	tests := map[string]string{
		`"\u00e9\ud83d\ude00\n\"\\\/"`: "é😀\n\"\\/",
		`"\ud800x"`:                    "\uFFFDx", // lone surrogate, as encoding/json
		`"\udc00\ud800\ud800\udc00"`:   "\uFFFD\uFFFD𐀀",
		`"日本"`:                         "日本",
	}
	for raw, want := range tests {
		tok := signRaw(testKey, claimsJSON(map[string]any{"install_id": json.RawMessage(raw)}))
		got, err := c.Verify(tok, t0)
		if err != nil || got.InstallID != want {
			t.Errorf("%s: got %q, %v; want %q", raw, got.InstallID, err, want)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	oldKey, newKey := []byte("old-key-material"), []byte("new-key-material")
	before := newCodec(t, Options{ActiveKID: "2025", Keys: map[string][]byte{"2025": oldKey}})
	oldTok, _, err := before.Issue("install-12345", t0)
	if err != nil {
		t.Fatal(err)
	}

	during := newCodec(t, Options{ActiveKID: "2026", Keys: map[string][]byte{"2025": oldKey, "2026": newKey}})
	if _, err := during.Verify(oldTok, t0); err != nil {
		t.Fatalf("old token rejected while its kid is listed: %v", err)
	}
	newTok, _, err := during.Issue("install-12345", t0)
	if err != nil {
		t.Fatal(err)
	}
	if kid := payloadOf(t, newTok)["kid"]; kid != "2026" {
		t.Errorf("new token kid %v, want the active kid 2026", kid)
	}
	if _, err := before.Verify(newTok, t0); code(err) != offload.CodeInvalidToken {
		t.Errorf("codec without the new kid: %v, want invalid_token", err)
	}

	after := newCodec(t, Options{ActiveKID: "2026", Keys: map[string][]byte{"2026": newKey}})
	if _, err := after.Verify(oldTok, t0); code(err) != offload.CodeInvalidToken {
		t.Errorf("old token after its kid was removed: %v, want invalid_token", err)
	}
	if _, err := after.Verify(newTok, t0); err != nil {
		t.Errorf("new token after rotation: %v", err)
	}

	// A kid listed with a different key is a different key.
	swapped := newCodec(t, Options{ActiveKID: "2025", Keys: map[string][]byte{"2025": newKey}})
	if _, err := swapped.Verify(oldTok, t0); code(err) != offload.CodeInvalidToken {
		t.Errorf("old kid with another key: %v, want invalid_token", err)
	}
}

func payloadOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	seg, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNew(t *testing.T) {
	keys := map[string][]byte{"k": []byte("key")}
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"valid", Options{Issuer: "i", Audience: "a", ActiveKID: "k", Keys: keys, TTL: time.Second}, true},
		{"trimmed", Options{Issuer: " i ", Audience: "a ", ActiveKID: " k", Keys: map[string][]byte{" k ": []byte("key")}, TTL: time.Second}, true},
		{"empty issuer", Options{Issuer: " ", Audience: "a", ActiveKID: "k", Keys: keys, TTL: time.Second}, false},
		{"empty audience", Options{Issuer: "i", ActiveKID: "k", Keys: keys, TTL: time.Second}, false},
		{"empty kid", Options{Issuer: "i", Audience: "a", Keys: keys, TTL: time.Second}, false},
		{"active kid without key", Options{Issuer: "i", Audience: "a", ActiveKID: "x", Keys: keys, TTL: time.Second}, false},
		{"empty key", Options{Issuer: "i", Audience: "a", ActiveKID: "k", Keys: map[string][]byte{"k": nil}, TTL: time.Second}, false},
		{"empty kid in keys", Options{Issuer: "i", Audience: "a", ActiveKID: "k", Keys: map[string][]byte{"k": []byte("x"), " ": []byte("y")}, TTL: time.Second}, false},
		{"kids equal after trim", Options{Issuer: "i", Audience: "a", ActiveKID: "k", Keys: map[string][]byte{"k": []byte("x"), "k ": []byte("y")}, TTL: time.Second}, false},
		{"TTL under a second", Options{Issuer: "i", Audience: "a", ActiveKID: "k", Keys: keys, TTL: 999 * time.Millisecond}, false},
		{"issuer not UTF-8", Options{Issuer: "i\xff", Audience: "a", ActiveKID: "k", Keys: keys, TTL: time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.o)
			if (err == nil) != tt.ok {
				t.Fatalf("New = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && strings.Contains(err.Error(), "key\"") {
				t.Errorf("error mentions key material: %v", err)
			}
			if c != nil {
				if _, _, err := c.Issue("install-1", t0); err != nil {
					t.Errorf("Issue = %v", err)
				}
			}
		})
	}
}

func TestNewCopiesKeys(t *testing.T) {
	key := []byte("key-material")
	c := newCodec(t, Options{Keys: map[string][]byte{testKID: key}})
	tok, _, _ := c.Issue("install-12345", t0)
	key[0] = 'X' // the caller reusing its slice must not change the codec
	if _, err := c.Verify(tok, t0); err != nil {
		t.Fatalf("Verify after caller changed its key slice: %v", err)
	}
}

func TestIssueRejectsUnverifiableInstallIDs(t *testing.T) {
	c := newCodec(t, Options{})
	for _, id := range []string{"", "bad\xffutf8"} {
		if tok, _, err := c.Issue(id, t0); err == nil || tok != "" {
			t.Errorf("Issue(%q) = %q, %v; want an error", id, tok, err)
		}
	}
}

func TestVerifyIsSafeForConcurrentUse(t *testing.T) {
	c := newCodec(t, Options{Keys: map[string][]byte{testKID: []byte(testKey), "b": []byte("bee")}})
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 200 {
				id := fmt.Sprintf("install-%d-%d", g, i)
				tok, _, err := c.Issue(id, t0)
				if err == nil {
					var cl offload.Claims
					cl, err = c.Verify(tok, t0)
					if err == nil && cl.InstallID != id {
						err = fmt.Errorf("got %q, want %q", cl.InstallID, id)
					}
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestAppendPyString(t *testing.T) {
	tests := map[string]string{
		"plain":              "plain",
		"<>&'/":              "<>&'/",
		"\"\\\n\r\t\b\f":     `\"\\\n\r\t\b\f`,
		"\x00\x01\x1f\x7f":   `\u0000\u0001\u001f\u007f`,
		"é\u0080\u00ff":      `\u00e9\u0080\u00ff`,
		"\u2028\ufeff\uffff": `\u2028\ufeff\uffff`,
		"😀𝄞\U0010FFFF":       `\ud83d\ude00\ud834\udd1e\udbff\udfff`,
	}
	for in, want := range tests {
		if got := string(appendPyString(nil, in)); got != want {
			t.Errorf("appendPyString(%q) = %s, want %s", in, got, want)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	c := newCodec(b, Options{})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Issue("6F9619FF-8B86-D011-B42D-00C04FC964FF", t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	c := newCodec(b, Options{})
	tok, _, err := c.Issue("6F9619FF-8B86-D011-B42D-00C04FC964FF", t0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(tok, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	c := newCodec(b, Options{})
	tok, _, err := c.Issue("6F9619FF-8B86-D011-B42D-00C04FC964FF", t0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Verify(tok, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
