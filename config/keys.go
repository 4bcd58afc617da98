package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// parseSigningKeys parses OFFLOAD_SESSION_SIGNING_KEYS: a JSON object of
// kid → key, both strings, trimmed and non-empty. Errors are content-free:
// they never quote the input, since it holds key material.
func parseSigningKeys(raw string) (map[string]Secret, error) {
	dec := json.NewDecoder(strings.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("must be valid JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("must be a JSON object of key id to key strings")
	}
	keys := make(map[string]Secret)
	for dec.More() {
		tok, err = dec.Token()
		if err != nil {
			return nil, errors.New("must be valid JSON")
		}
		kid := strings.TrimSpace(tok.(string)) // object keys are always strings
		tok, err = dec.Token()
		if err != nil {
			return nil, errors.New("must be valid JSON")
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("must be a JSON object of key id to key strings")
		}
		key = strings.TrimSpace(key)
		if kid == "" || key == "" {
			return nil, errors.New("key ids and keys must be non-empty")
		}
		if _, dup := keys[kid]; dup {
			return nil, fmt.Errorf("key id %s appears more than once", quoteShort(kid))
		}
		keys[kid] = Secret(key)
	}
	if _, err = dec.Token(); err != nil { // the closing '}'
		return nil, errors.New("must be valid JSON")
	}
	if _, err = dec.Token(); err != io.EOF {
		return nil, errors.New("must hold exactly one JSON object")
	}
	return keys, nil
}
