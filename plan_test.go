package offload

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStepsFixtures(t *testing.T) {
	tests := []struct {
		file    string
		wantErr error
		count   int // total steps when valid
	}{
		{"plan_valid.json", nil, 5},
		{"plan_depth5.json", nil, 5},
		{"plan_depth6.json", errTooDeep, 0},
		{"plan_missing_substeps.json", nil, 2},
		{"plan_100_steps.json", nil, 100},
		{"plan_101_steps.json", errTooManySteps, 0},
		{"plan_nonenglish.json", nil, 4},
		{"plan_hostile_nesting.json", errTooDeep, 0},
		{"plan_brackets_in_titles.json", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			steps, err := ParseSteps(readTestdata(t, tt.file))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if steps != nil {
					t.Error("steps returned with an error")
				}
				return
			}
			if n := countSteps(steps); n != tt.count {
				t.Errorf("steps = %d, want %d", n, tt.count)
			}
			checkPlanInvariants(t, steps)
		})
	}
}

func TestParseStepsNormalises(t *testing.T) {
	steps, err := ParseSteps(readTestdata(t, "plan_missing_substeps.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{
		{Title: "Tidy the desk", Substeps: []Step{}},
		{Title: "Water the plants", Substeps: []Step{}},
	}
	if !reflect.DeepEqual(steps, want) {
		t.Errorf("got %+v, want %+v", steps, want)
	}
}

func TestParseStepsRules(t *testing.T) {
	title := func(s string) []byte { return []byte(`{"steps":[{"title":` + s + `,"substeps":[]}]}`) }
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"title 280 runes", title(`"` + strings.Repeat("ß", 280) + `"`), nil},
		{"title 281 runes", title(`"` + strings.Repeat("ß", 281) + `"`), errBadTitle},
		{"title 280 after trim", title(`"  ` + strings.Repeat("a", 280) + `\n"`), nil},
		{"empty title", title(`""`), errBadTitle},
		{"whitespace title", title(`" \t\n "`), errBadTitle},
		{"null title", title(`null`), errBadTitle},
		{"number title", title(`7`), errSyntax},
		{"missing title", []byte(`{"steps":[{"substeps":[]}]}`), errBadTitle},
		{"empty input", nil, errNotObject},
		{"whitespace only", []byte(" \n "), errNotObject},
		{"null", []byte(`null`), errNotObject},
		{"array", []byte(`[]`), errNotObject},
		{"string", []byte(`"steps"`), errNotObject},
		{"no steps", []byte(`{}`), errNoSteps},
		{"null steps", []byte(`{"steps":null}`), errNoSteps},
		{"empty steps", []byte(`{"steps":[]}`), errNoSteps},
		{"steps object", []byte(`{"steps":{"title":"a"}}`), errSyntax},
		{"step not object", []byte(`{"steps":["a"]}`), errSyntax},
		{"substeps object", []byte(`{"steps":[{"title":"a","substeps":{}}]}`), errSyntax},
		{"trailing garbage", []byte(`{"steps":[{"title":"a"}]} x`), errSyntax},
		{"truncated", []byte(`{"steps":[{"title":"a"`), errSyntax},
		{"unknown fields ignored", []byte(`{"steps":[{"title":"a","done":true,"x":{"y":[1]}}],"meta":1}`), nil},
		{"unknown deep field", []byte(`{"x":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `,"steps":[{"title":"a"}]}`), errTooDeep},
		{"hostile nesting 100k", []byte(`{"steps":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`), errTooDeep},
		{"hostile objects 100k", []byte(strings.Repeat(`{"a":`, 100000) + `1` + strings.Repeat("}", 100000)), errTooDeep},
		{"too large", append([]byte(`{"steps":[{"title":"a"}]}`), make([]byte, MaxContentBytes)...), errTooLarge},
		{"escaped quote in title", title(`"say \"hi\" [now]"`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, err := ParseSteps(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				checkPlanInvariants(t, steps)
			}
		})
	}
}

func countSteps(steps []Step) int {
	n := len(steps)
	for _, s := range steps {
		n += countSteps(s.Substeps)
	}
	return n
}

// checkPlanInvariants asserts what every parsed plan guarantees.
func checkPlanInvariants(t testing.TB, steps []Step) {
	t.Helper()
	if len(steps) == 0 {
		t.Fatal("empty plan accepted")
	}
	if n := countSteps(steps); n > MaxSteps {
		t.Fatalf("%d steps accepted", n)
	}
	var walk func([]Step, int)
	walk = func(ss []Step, depth int) {
		if len(ss) > 0 && depth > MaxStepDepth {
			t.Fatalf("depth %d accepted", depth)
		}
		for _, s := range ss {
			n := utf8.RuneCountInString(s.Title)
			if n < 1 || n > MaxTitleChars || strings.TrimSpace(s.Title) != s.Title {
				t.Fatalf("bad title accepted (%d runes)", n)
			}
			if s.Substeps == nil {
				t.Fatal("nil substeps")
			}
			walk(s.Substeps, depth+1)
		}
	}
	walk(steps, 1)
}

// FuzzParseSteps: hostile content never panics, never overflows the stack,
// and whatever is accepted meets the plan invariants. Seeds: the testdata
// fixtures plus testdata/fuzz/FuzzParseSteps.
func FuzzParseSteps(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "plan_*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed fixtures: %v", err)
	}
	for _, name := range files {
		f.Add(readTestdata(f, filepath.Base(name)))
	}
	f.Add([]byte(`{"steps":[{"title":"a","substeps":[{"title":"b"}]}]}`))
	f.Add([]byte(`{"steps":[{"title":"\u0000\ud800"}]}`))
	f.Add([]byte(`{"steps":[{"title":"a"}],"steps":[]}`))
	f.Fuzz(func(t *testing.T, content []byte) {
		steps, err := ParseSteps(content)
		if err != nil {
			if steps != nil {
				t.Fatal("steps with error")
			}
			var pe planError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a content-free planError", err)
			}
			return
		}
		checkPlanInvariants(t, steps)
	})
}
