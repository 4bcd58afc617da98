package local

import (
	"reflect"
	"testing"

	"github.com/offload-app/offload"
)

// FuzzGenerate: whatever the text and granularity, Generate never panics,
// never returns an empty plan, keeps the contract's limits and is
// deterministic.
func FuzzGenerate(f *testing.F) {
	for _, text := range inputs(f) {
		if len(text) <= 4096 { // big seeds make the fuzzer's minimizing crawl
			f.Add(text, 3)
		}
	}
	for _, seed := range []struct {
		text string
		g    int
	}{
		{"", 0}, {"x", -1}, {"a. b. c. d", 1}, {"- a\n- b\n1) c", 5}, {"(1) ①\n[x] ", 9},
		{"and then and then and", 2}, {"a, b, c, d, e", 4}, {"\xf0\x9f\x8e", 5}, {"e.g. etc. p.m.", 3},
		{"I need to I need to I need to", 5}, {"#\n#:\n:", 1}, {"step 1:\nStep 2:x", 2},
	} {
		f.Add(seed.text, seed.g)
	}
	f.Fuzz(func(t *testing.T, text string, g int) {
		req := offload.BreakdownRequest{InputText: text, Granularity: g, ContextHints: []string{text}}
		steps := Generate(req)
		checkPlan(t, steps)
		if !reflect.DeepEqual(steps, Generate(req)) {
			t.Fatal("not deterministic")
		}
	})
}

// FuzzSplitTasks: every task is clean and bounded.
func FuzzSplitTasks(f *testing.F) {
	for _, text := range inputs(f) {
		if len(text) <= 4096 {
			f.Add(text)
		}
	}
	f.Fuzz(func(t *testing.T, text string) {
		ts := splitTasks(text)
		if len(ts) > maxTasksRead {
			t.Fatalf("%d tasks", len(ts))
		}
		steps := make([]offload.Step, 0, len(ts))
		for _, tk := range ts {
			steps = append(steps, offload.Step{Title: tk.title, Substeps: []offload.Step{}})
		}
		if len(steps) > 0 {
			checkPlan(t, steps[:min(len(steps), maxSteps)])
		}
	})
}
