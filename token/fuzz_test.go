package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/offload-app/offload"
)

// FuzzVerify: Verify never panics, fails only with invalid_token or
// expired_token, and accepts a token only when an independent check (stdlib
// base64, encoding/json, crypto/hmac) agrees it carries a valid signature by
// a listed key and the claims it returns.
func FuzzVerify(f *testing.F) {
	keys := map[string][]byte{testKID: []byte(testKey), "old": []byte("old-key")}
	c := newCodec(f, Options{Keys: keys})
	good, _, err := c.Issue("install-12345", t0)
	if err != nil {
		f.Fatal(err)
	}
	seg, sig, _ := strings.Cut(good, ".")
	for _, seed := range []string{
		good, seg + "." + sig + "=", "a", "a.b.c", ".", "a.", ".b", "!!!!." + sig, seg + ".***",
		signRaw(testKey, "not json"), signRaw(testKey, `["v",2]`), signRaw(testKey, `{"install_id":"x","exp":1771243500}`),
		signRaw("old-key", claimsJSON(map[string]any{"kid": "old"})),
		signRaw(testKey, claimsJSON(map[string]any{"install_id": json.RawMessage(`"\ud83d\ude00\u00e9"`)})),
	} {
		f.Add(seed, int64(0))
	}
	f.Add(good, int64(300))
	f.Add(good, int64(-1))

	f.Fuzz(func(t *testing.T, tok string, offset int64) {
		now := t0.Add(time.Duration(offset%(1<<32)) * time.Second)
		got, err := c.Verify(tok, now)
		if err != nil {
			var e *offload.Error
			if !errors.As(err, &e) || e.Message != "" ||
				(e.Code != offload.CodeInvalidToken && e.Code != offload.CodeExpiredToken) {
				t.Fatalf("unexpected error %#v", err)
			}
			if got != (offload.Claims{}) {
				t.Fatalf("claims with an error: %+v", got)
			}
			return
		}

		payloadSeg, sigSeg, _ := strings.Cut(tok, ".")
		payload, err := lenientB64(payloadSeg)
		if err != nil {
			t.Fatalf("accepted a payload the stdlib cannot decode: %v", err)
		}
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("accepted a payload encoding/json rejects: %v", err)
		}
		kid, _ := m["kid"].(string)
		key, listed := keys[kid]
		if !listed {
			t.Fatalf("accepted kid %q that is not listed", kid)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(payloadSeg))
		provided, err := lenientB64(sigSeg)
		if err != nil || !hmac.Equal(mac.Sum(nil), provided) {
			t.Fatalf("accepted a token whose signature does not match (%v)", err)
		}
		if m["install_id"] != got.InstallID || m["iss"] != testIss || m["aud"] != testAud || m["v"] != json.Number("2") {
			t.Fatalf("claims %+v disagree with payload %v", got, m)
		}
		exp, err := strconv.ParseInt(string(m["exp"].(json.Number)), 10, 64)
		if err != nil || exp != got.ExpiresAt.Unix() || exp <= now.Unix() {
			t.Fatalf("exp %v vs %v at %v", m["exp"], got.ExpiresAt, now)
		}
	})
}

// lenientB64 decodes either alphabet with or without padding, the way
// Python's urlsafe_b64decode does after the deployment pads the input.
func lenientB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	if strings.ContainsAny(s, "\r\n") { // the stdlib would skip these
		return nil, errors.New("newline")
	}
	return base64.RawURLEncoding.DecodeString(s)
}

// FuzzParseClaims compares the payload parser with encoding/json: same
// acceptance (ours is stricter only on invalid UTF-8 and deep nesting) and
// the same claim values.
func FuzzParseClaims(f *testing.F) {
	for _, seed := range []string{
		claimsJSON(nil), `{}`, `[]`, `{"v":2,"v":"2"}`, `{"exp":-9223372036854775808}`, `{"exp":9223372036854775808}`,
		`{"iat":1.0}`, `{"nbf":1e3}`, `{"kid":"\ud800"}`, `{"kid":"\ud83d\ude00"}`, `{"a":[[[{"b":null}]]]}`,
		`{"install_id":"a\"b"} `, `{"v":-0}`, `{"v":01}`, `{"v":2,}`, `{"kid":"` + "\x01" + `"}`, `{"k":tru}`,
		"{\"kid\":\"\xff\"}", `{"aud":"é"}`, `{"aud":"\u00E9"}`, `{"iss":"\/"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		arena := make([]byte, 0, len(data))
		got, ok := parseClaims(data, arena)

		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var m map[string]any
		refErr := dec.Decode(&m)
		if refErr == nil {
			if _, err := dec.Token(); err != io.EOF || m == nil {
				refErr = errors.New("not exactly one object")
			}
		}
		refOK := refErr == nil
		if ok != refOK {
			if refOK && (!utf8.Valid(data) || depth(data) > maxDepth) {
				return // documented strictness
			}
			t.Fatalf("parseClaims ok=%v, encoding/json ok=%v (%v) for %q", ok, refOK, refErr, data)
		}
		if !ok {
			return
		}
		for name, bit := range map[string]uint8{"kid": haveKID, "iss": haveISS, "aud": haveAUD, "install_id": haveInstallID} {
			s, isStr := m[name].(string)
			if isStr != (got.have&bit != 0) {
				t.Fatalf("%s: have=%v, encoding/json string=%v", name, got.have&bit != 0, isStr)
			}
			var field []byte
			switch name {
			case "kid":
				field = got.kid
			case "iss":
				field = got.iss
			case "aud":
				field = got.aud
			case "install_id":
				field = got.installID
			}
			if isStr && string(field) != s {
				t.Fatalf("%s = %q, encoding/json %q", name, field, s)
			}
		}
		for name, bit := range map[string]uint8{"v": haveV, "iat": haveIAT, "nbf": haveNBF, "exp": haveEXP} {
			var want int64
			isInt := false
			if n, isNum := m[name].(json.Number); isNum {
				var err error
				want, err = strconv.ParseInt(string(n), 10, 64)
				isInt = err == nil
			}
			if isInt != (got.have&bit != 0) {
				t.Fatalf("%s: have=%v, integer=%v (%v)", name, got.have&bit != 0, isInt, m[name])
			}
			fields := map[string]int64{"v": got.v, "iat": got.iat, "nbf": got.nbf, "exp": got.exp}
			if isInt && fields[name] != want {
				t.Fatalf("%s = %d, want %d", name, fields[name], want)
			}
		}
	})
}

// depth is the deepest nesting of brackets outside strings.
func depth(data []byte) int {
	d, deepest, inStr, esc := 0, 0, false, false
	for _, c := range data {
		switch {
		case esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}

// FuzzDecodeB64 compares the segment decoder with the standard library.
func FuzzDecodeB64(f *testing.F) {
	for _, seed := range []string{"", "YQ", "YQ==", "YWI", "YWJj", "YWJjZA", "-_+/", "Y", "YR", "YQ=x", "YW=I", "a\nb"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		buf := make([]byte, len(s))
		n, ok := decodeB64(buf, s)
		want, err := lenientB64(s)
		if ok != (err == nil) {
			t.Fatalf("decodeB64(%q) ok=%v, stdlib err=%v", s, ok, err)
		}
		if ok && !bytes.Equal(buf[:n], want) {
			t.Fatalf("decodeB64(%q) = %x, stdlib %x", s, buf[:n], want)
		}
		if small := len(want) - 1; ok && small >= 0 {
			if _, ok := decodeB64(make([]byte, small), s); ok {
				t.Fatalf("decodeB64(%q) fit %d bytes into %d", s, len(want), small)
			}
		}
	})
}
