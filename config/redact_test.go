package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// Canaries: values that must never show up in any rendering or error.
const (
	canarySecret = "CANARY-secret-Zq8Xw3Lp0Vt7Yn2Rk5"
	canaryKey    = "CANARY-apikey-Hj4Mb6Ne9Ud1Sf3Cg8"
	canaryOld    = "CANARY-oldkey-Wc2Py5Ta8Rx0Ez7Qv1"
)

func TestConfigRenderingsNeverShowSecrets(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvEnvironment:        "production",
		EnvSessionSecret:      canarySecret,
		EnvSessionSigningKeys: `{"old":"` + canaryOld + `","new":"` + canarySecret + `"}`,
		EnvSessionActiveKID:   "new",
		EnvOpenAIAPIKey:       canaryKey,
	}))
	if err != nil {
		t.Fatal(err)
	}

	renderings := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		renderings["fmt "+verb] = fmt.Sprintf(verb, c)
		renderings["fmt secret "+verb] = fmt.Sprintf(verb, c.OpenAI.APIKey)
		renderings["fmt session "+verb] = fmt.Sprintf(verb, c.Session)
		renderings["fmt keys "+verb] = fmt.Sprintf(verb, c.Session.Keys)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	renderings["json"] = string(j)
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"slog json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("start",
			"config", c, "session", c.Session, "openai", c.OpenAI, "key", c.OpenAI.APIKey, "keys", c.Session.Keys)
		renderings[name] = buf.String()
	}

	for name, out := range renderings {
		for _, canary := range []string{canarySecret, canaryKey, canaryOld, "CANARY"} {
			if strings.Contains(out, canary) {
				t.Errorf("%s leaks %q: %s", name, canary, out)
			}
		}
	}
	if !strings.Contains(renderings["slog json"], `"provider":"openai"`) {
		t.Errorf("slog summary lacks the provider: %s", renderings["slog json"])
	}
	if !strings.Contains(renderings["fmt %+v"], "[REDACTED]") {
		t.Errorf("fmt does not mark redaction: %s", renderings["fmt %+v"])
	}
	// The raw values stay usable for the code that needs them.
	if string(c.OpenAI.APIKey) != canaryKey || string(c.Session.KeyBytes()["old"]) != canaryOld {
		t.Error("secret values changed by Load")
	}
}

func TestLoadErrorsNeverShowSecrets(t *testing.T) {
	short := "CANARYshort"                         // too short for production
	repeated := "CANARY" + strings.Repeat("Z", 30) // low diversity
	tests := []map[string]string{
		{EnvEnvironment: "prod", EnvSessionSecret: short, EnvOpenAIAPIKey: short},
		{EnvEnvironment: "prod", EnvSessionSecret: repeated, EnvAIProvider: "bogus-" + "x", EnvOpenAIAPIKey: repeated},
		{EnvEnvironment: "prod", EnvSessionSigningKeys: `{"a":"` + short + `","b":"` + repeated + `"}`, EnvSessionActiveKID: "c"},
		{EnvSessionSigningKeys: `{"a":"` + short + `",}`},
		{EnvSessionSigningKeys: `{"a":"` + short + `"`},
		{EnvSessionSigningKeys: `{"a":"` + short + `","a":"` + short + `"}`},
		{EnvSessionSigningKeys: `["` + short + `"]`},
		{EnvSessionSigningKeys: `{"a":["` + short + `"]}`},
		{EnvOpenAIBaseURL: "ftp://u:" + short + "@h/"},
		{EnvOpenAIBaseURL: "https://u:" + short + "@h/v1"},
		{EnvOpenAIBaseURL: "http://u:" + short + "@[::1"},
	}
	for i, e := range tests {
		_, err := Load(env(e))
		if err == nil {
			t.Fatalf("case %d: Load succeeded", i)
		}
		if strings.Contains(err.Error(), "CANARY") {
			t.Errorf("case %d: error leaks a secret: %v", i, err)
		}
	}
}
