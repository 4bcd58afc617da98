package anthropic

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/anthropic/anthropictest"
)

func TestPlanJSON(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":1}`, `{"a":1}`},
		{"  {\"a\":1}\n", `{"a":1}`},
		{"```json\n{\"a\":1}\n```", `{"a":1}`},
		{"```\n{\"a\":1}\n```", `{"a":1}`},
		{"```{\"a\":1}```", `{"a":1}`},
		{"Sure:\n```json\n{\"a\":1}\n```\nmore ```x```", `{"a":1}`},
		{"```json\n{\"a\":\"``\"}\n```", "{\"a\":\"``\"}"},
		{"```json\n{\"a\":1}", `{"a":1}`},
		{"no fence here", "no fence here"},
		{"```", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := string(planJSON([]byte(tt.in))); got != tt.want {
			t.Errorf("planJSON(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzPlanJSON feeds untrusted answer texts through the fence stripping and
// the plan parser: no panic, the result is a slice of the input, and a plan
// that parses keeps the contract's limits.
func FuzzPlanJSON(f *testing.F) {
	for _, s := range []string{
		anthropictest.DefaultText,
		"```json\n" + anthropictest.DefaultText + "\n```",
		"Here:\n```\n" + anthropictest.DefaultText + "\n```",
		"```" + anthropictest.DefaultText + "```",
		"```json\n{\"steps\":[[[[[[[[[[[[[[",
		"``````", "```\n```", "{", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		out := planJSON(text)
		if len(out) > 0 && !bytes.Contains(text, out) {
			t.Fatalf("planJSON returned bytes not in its input")
		}
		steps, err := offload.ParseSteps(out)
		if err != nil {
			return
		}
		total := 0
		var walk func(s []offload.Step, depth int)
		walk = func(s []offload.Step, depth int) {
			if depth > offload.MaxStepDepth {
				t.Fatalf("depth %d", depth)
			}
			for _, st := range s {
				total++
				if st.Title == "" || st.Substeps == nil {
					t.Fatalf("step %+v", st)
				}
				walk(st.Substeps, depth+1)
			}
		}
		walk(steps, 1)
		if total == 0 || total > offload.MaxSteps {
			t.Fatalf("%d steps", total)
		}
	})
}

// FuzzAnswer decodes untrusted Messages bodies as the adapter does (into
// message) and validates them: no panic, and either a plan or a content-free
// invalid-response failure.
func FuzzAnswer(f *testing.F) {
	f.Add(anthropictest.MessageBody(anthropictest.DefaultText, anthropictest.Usage{Input: 1, Output: 2}))
	f.Add(anthropictest.MessageBody("```json\n"+anthropictest.DefaultText+"\n```", anthropictest.Usage{}))
	f.Add([]byte(`{"content":[{"type":"text","text":"x"}],"stop_reason":"refusal"}`))
	f.Add([]byte(`{"content":[{"type":"tool_use","input":{}}],"usage":{"input_tokens":-1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var m message
		if json.Unmarshal(body, &m) != nil {
			return
		}
		out, fail := answer(&m)
		if fail != nil {
			if fail.failure != offload.ProviderInvalidResponse || fail.retryable || fail.status != 0 {
				t.Fatalf("failure %+v", fail)
			}
			return
		}
		if len(out.Steps) == 0 || out.Usage.InputTokens < 0 || out.Usage.OutputTokens < 0 {
			t.Fatalf("answer %+v", out)
		}
	})
}
