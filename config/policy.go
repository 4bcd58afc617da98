package config

import (
	"strings"
	"unicode/utf8"
)

// Secret policy of the existing deployment (session_security.py), applied in
// production-like environments to OFFLOAD_SESSION_SECRET and to every value
// of OFFLOAD_SESSION_SIGNING_KEYS.
const (
	MinSecretChars    = 32 // Unicode code points, after trimming
	MinSecretDistinct = 6  // distinct code points

	// placeholderWords are the deployment's placeholder secrets with
	// everything but [a-z0-9] removed, longest first so that removing one
	// does not leave a fragment of a longer one behind.
	placeholderWords = "offloadsessionsecret devsecretchangeme changemeplease testsecret changeme password secret"
)

// IsProductionLike reports whether env names a production-like environment:
// anything but "", dev, development, local, test or testing (compared after
// trimming, case-insensitively).
func IsProductionLike(env string) bool {
	switch strings.ToLower(strings.TrimSpace(env)) {
	case "", "dev", "development", "local", "test", "testing":
		return false
	}
	return true
}

// ProductionLike reports whether c.Environment is production-like.
func (c Config) ProductionLike() bool { return IsProductionLike(c.Environment) }

// secretProblem returns why s fails the production secret policy, or "" if it
// passes. The answer never contains s.
func secretProblem(s string) string {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) < MinSecretChars {
		return "must be at least 32 characters in a production-like environment"
	}
	if distinctRunes(s) < MinSecretDistinct {
		return "must contain at least 6 distinct characters in a production-like environment"
	}
	if isPlaceholder(s) {
		return "must not be a placeholder value in a production-like environment"
	}
	return ""
}

func distinctRunes(s string) int {
	seen := make(map[rune]struct{}, MinSecretDistinct)
	for _, r := range s {
		seen[r] = struct{}{}
	}
	return len(seen)
}

// isPlaceholder catches the deployment's placeholder list and the obvious
// ways of stretching one past the length rule: repeating it, changing case,
// or padding it with separators or a few repeated characters
// ("changeme-changeme-changeme-changeme", "secret000000…").
func isPlaceholder(s string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	folded := b.String()
	rest := folded
	for changed := true; changed; {
		changed = false
		for _, w := range strings.Fields(placeholderWords) {
			if next := strings.ReplaceAll(rest, w, ""); next != rest {
				rest, changed = next, true
			}
		}
	}
	if rest == folded {
		return false // no placeholder word in it at all
	}
	return distinctRunes(rest) < MinSecretDistinct
}
