package config

import (
	"encoding/json"
	"strings"
	"testing"
)

func FuzzParseSigningKeys(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"a":"b"}`, `{" a ":" b ","c":"d"}`, `{"a":"b","a":"c"}`, `{"a":1}`, `{"a":null}`,
		`{"a":{"b":"c"}}`, `["a"]`, `"a"`, `null`, `{`, `{"a":"b"}x`, `{"a":"b"} {}`, `{"\u00e9":"\ud83d\ude00"}`,
		`{"":"x"}`, `{"a":"  "}`, "{\"a\":\"\xff\"}",
	} {
		f.Add(seed)
	}
	allowed := []string{
		"must be valid JSON",
		"must be a JSON object of key id to key strings",
		"key ids and keys must be non-empty",
		"must hold exactly one JSON object",
	}
	f.Fuzz(func(t *testing.T, raw string) {
		keys, err := parseSigningKeys(raw)
		if err != nil {
			msg := err.Error()
			if strings.HasPrefix(msg, "key id ") && strings.HasSuffix(msg, " appears more than once") {
				return // quotes a kid, never a key
			}
			for _, a := range allowed {
				if msg == a {
					return
				}
			}
			t.Fatalf("unexpected error text %q", msg)
		}
		// Accepted input is a JSON object of strings, and we agree with
		// encoding/json about its content once trimmed.
		var ref map[string]string
		if err := json.Unmarshal([]byte(raw), &ref); err != nil || ref == nil {
			t.Fatalf("accepted %q that encoding/json rejects: %v", raw, err)
		}
		if len(ref) != len(keys) {
			t.Fatalf("%d keys, encoding/json sees %d", len(keys), len(ref))
		}
		for kid, key := range ref {
			got, ok := keys[strings.TrimSpace(kid)]
			if !ok || string(got) != strings.TrimSpace(key) || got == "" {
				t.Fatalf("kid %q: got %q ok=%v, want %q", kid, string(got), ok, strings.TrimSpace(key))
			}
		}
	})
}
