package local

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/offload-app/offload"
)

// checkPlan fails tb unless steps is a non-empty plan within the contract's
// limits: titles trimmed, valid UTF-8 and 1–280 code points; depth at most
// 5; at most 100 steps in all; Substeps never nil (so JSON has no null).
func checkPlan(tb testing.TB, steps []offload.Step) {
	tb.Helper()
	if len(steps) == 0 {
		tb.Fatal("empty plan")
	}
	total := 0
	var walk func(steps []offload.Step, depth int)
	walk = func(steps []offload.Step, depth int) {
		if len(steps) > 0 && depth > maxDepth {
			tb.Fatalf("depth %d > %d", depth, maxDepth)
		}
		for _, s := range steps {
			total++
			n := utf8.RuneCountInString(s.Title)
			switch {
			case !utf8.ValidString(s.Title):
				tb.Fatalf("title is not valid UTF-8: %q", s.Title)
			case n < 1 || n > maxTitleRunes:
				tb.Fatalf("title has %d code points: %q", n, s.Title)
			case s.Title != strings.TrimSpace(s.Title):
				tb.Fatalf("title not trimmed: %q", s.Title)
			case s.Substeps == nil:
				tb.Fatalf("nil substeps under %q", s.Title)
			}
			walk(s.Substeps, depth+1)
		}
	}
	walk(steps, 1)
	if total > maxSteps {
		tb.Fatalf("%d steps in all > %d", total, maxSteps)
	}
	b, err := json.Marshal(steps)
	if err != nil {
		tb.Fatal(err)
	}
	if strings.Contains(string(b), "null") {
		tb.Fatalf("JSON has null: %s", b)
	}
}

func countSteps(steps []offload.Step) int {
	n := len(steps)
	for _, s := range steps {
		n += countSteps(s.Substeps)
	}
	return n
}

func titlesOf(steps []offload.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Title
	}
	return out
}

func readFixture(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// inputs is every kind of text the generator must cope with.
func inputs(tb testing.TB) map[string]string {
	return map[string]string{
		"empty":            "",
		"whitespace":       " \n\t \r\n  \u3000",
		"one word":         "taxes",
		"vague task":       "clean the apartment",
		"long paragraph":   readFixture(tb, "long_paragraph.txt"),
		"bullets":          readFixture(tb, "bullets.txt"),
		"numbered":         "1. Buy milk\n2) Call mom\n3. Pay rent\n(4) Water the plants",
		"and then":         "clean the kitchen and then do laundry, then call mom and pay the rent",
		"german":           "Wohnung putzen. Einkaufen gehen und dann Wäsche waschen! Steuererklärung machen?",
		"japanese":         "部屋を掃除する。洗濯をする！買い物に行く？",
		"spanish":          "¿Limpiar la cocina? Llamar a mamá; pagar el alquiler.",
		"emoji":            "🧹🧺 then 📞 mom 👩‍👩‍👧 and buy 🎂",
		"emoji only":       "🎉",
		"arabic":           "نظف المطبخ. اتصل بأمي.",
		"invalid utf8":     "buy \xff\xfe milk. \xc3\x28 call mom",
		"controls":         "\x00\x01buy milk\x7f\x1b[31m",
		"punctuation only": "!!! ??? ... ;;; - * •",
		"filler only":      "I need to. Please. And then.",
		"long word":        strings.Repeat("x", 1000),
		"long cjk":         strings.Repeat("漢", 5000),
		"many lines":       strings.Repeat("- water the plants again\n- buy milk\n", 200) + "- call mom",
		"many sentences":   strings.Repeat("Call mom. Buy milk. Pay rent. ", 500),
		"huge":             strings.Repeat("wash the car, then ", 20000),
		"combining":        "cafe\u0301 reservieren. nai\u0308ve plan",
		"headings only":    "# Today\nChores:",
		"many joiners":     strings.Repeat("x finally y, ", 1500),
		"nested bullets":   "- house\n  - clean\n    - kitchen\n      - sink\n        - plug\n          - chain",
	}
}

func TestGenerateNeverEmptyAndWithinLimits(t *testing.T) {
	for name, text := range inputs(t) {
		for g := -1; g <= 7; g++ {
			steps := Generate(offload.BreakdownRequest{InputText: text, Granularity: g,
				ContextHints: []string{"low energy", text}, TemplateIDs: []string{"t1"}})
			t.Run(name, func(t *testing.T) { checkPlan(t, steps) })
		}
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	for name, text := range inputs(t) {
		for g := 1; g <= 5; g++ {
			req := offload.BreakdownRequest{InputText: text, Granularity: g, ContextHints: []string{"kids at home"}}
			a, b := Generate(req), Generate(req)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s, g=%d: two calls differ", name, g)
			}
		}
	}
}

func TestGranularityChangesThePlan(t *testing.T) {
	all := inputs(t)
	for _, name := range []string{"empty", "one word", "vague task", "long paragraph", "bullets",
		"numbered", "and then", "german", "japanese", "emoji"} {
		t.Run(name, func(t *testing.T) {
			var counts []int
			var plans [][]offload.Step
			for g := 1; g <= 5; g++ {
				p := Generate(offload.BreakdownRequest{InputText: all[name], Granularity: g})
				plans = append(plans, p)
				counts = append(counts, countSteps(p))
			}
			if reflect.DeepEqual(plans[0], plans[4]) {
				t.Fatal("granularity 1 and 5 give the same plan")
			}
			for g := 1; g < 5; g++ {
				if counts[g] < counts[g-1] {
					t.Errorf("steps in all by granularity: %v, want non-decreasing", counts)
				}
			}
			if counts[0] >= counts[4] {
				t.Errorf("steps in all by granularity: %v, want more at 5 than at 1", counts)
			}
			if n := len(plans[0]); n > 3 {
				t.Errorf("granularity 1 has %d top-level steps, want at most 3", n)
			}
			for _, s := range plans[0] {
				if len(s.Substeps) != 0 {
					t.Errorf("granularity 1 has substeps under %q", s.Title)
				}
			}
			for _, s := range plans[4] {
				if len(s.Substeps) == 0 && s.Title != restOfList {
					t.Errorf("granularity 5 has no substeps under %q", s.Title)
				}
			}
		})
	}
}

func TestGranularityIsClamped(t *testing.T) {
	text := "Buy milk. Call mom. Pay rent. Water the plants."
	gen := func(g int) []offload.Step {
		return Generate(offload.BreakdownRequest{InputText: text, Granularity: g})
	}
	for _, tc := range []struct{ got, want int }{{0, 1}, {-7, 1}, {6, 5}, {1 << 30, 5}} {
		if !reflect.DeepEqual(gen(tc.got), gen(tc.want)) {
			t.Errorf("granularity %d differs from %d", tc.got, tc.want)
		}
	}
}

func TestGenerateTopLevelSteps(t *testing.T) {
	tests := []struct {
		name string
		text string
		g    int
		want []string
	}{
		{"sentences", "Buy milk. Call mom! Pay rent?", 2, []string{"Buy milk", "Call mom", "Pay rent"}},
		{"clauses", "I need to call Andrew and buy a brand new charger, then clean the kitchen",
			3, []string{"Call Andrew", "Buy a brand new charger", "Clean the kitchen"}},
		{"bullets", "Today:\n- buy milk\n* call mom\n• pay rent", 4, []string{"Buy milk", "Call mom", "Pay rent"}},
		{"japanese", "部屋を掃除する。洗濯をする。買い物に行く。", 5, []string{"部屋を掃除する", "洗濯をする", "買い物に行く"}},
		{"merged at 1", "One. Two. Three. Four. Five. Six.", 1, []string{"One; Two", "Three; Four", "Five; Six"}},
		{"long groups at 1", "Call the landlord about the broken window in the bedroom before the visit on Thursday. " +
			"Write the summary of the quarterly report with the numbers that Maria sent last week. " +
			"Email the old employer about the final payslip that the tax software asks for. " +
			"Book an appointment at the garage for the winter tires before the first frost comes. " +
			"Buy a birthday present for my sister, maybe the cookbook she mentioned last month. " +
			"Reply to the two clients about the invoice that was paid twice by their office.", 1,
			[]string{"Call the landlord about the broken window in the bedroom before the visit on Thursday (+1 more)",
				"Email the old employer about the final payslip that the tax software asks for (+1 more)",
				"Buy a birthday present for my sister, maybe the cookbook she mentioned last month (+1 more)"}},
		{"three stay at 1", "One. Two. Three.", 1, []string{"One", "Two", "Three"}},
		{"single task", "clean the apartment", 1,
			[]string{"Get ready for: Clean the apartment", "Start with the smallest piece", "Wrap up and check it off"}},
		{"single task micro", "clean the apartment", 5,
			[]string{"Get ready for: Clean the apartment", "Start with the smallest piece",
				"Keep going, one piece at a time", "Look over what you've done", "Wrap up and check it off"}},
		{"blank", "  \n ", 1, []string{"Pick one thing to work on", "Start with the smallest piece", "Wrap up and check it off"}},
		{"one word", "taxes", 2, []string{"Get ready for: Taxes", "Start with the smallest piece",
			"Keep going, one piece at a time", "Wrap up and check it off"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			steps := Generate(offload.BreakdownRequest{InputText: tc.text, Granularity: tc.g})
			checkPlan(t, steps)
			if got := titlesOf(steps); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("titles\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestSubstepsFitTheTask(t *testing.T) {
	tests := []struct {
		text string
		g    int
		want []string // substeps of the first step
	}{
		{"Call mom. Pay rent.", 3, []string{"Find the number", "Dial and say hello"}},
		{"Call mom. Pay rent.", 2, []string{"Find the number"}},
		{"clean the apartment", 3, []string{"Grab a trash bag and a basket for things that belong elsewhere", "Put on some music you like"}},
		{"Wohnung putzen. Einkaufen gehen.", 3, []string{"Gather what you need for: Wohnung putzen", "Set a 5-minute timer and start"}},
		{"Wohnung putzen. Einkaufen gehen.", 4, []string{"Gather what you need for: Wohnung putzen", "Set a 5-minute timer and start",
			"Check it off and take a short break"}},
	}
	for _, tc := range tests {
		steps := Generate(offload.BreakdownRequest{InputText: tc.text, Granularity: tc.g})
		if got := titlesOf(steps[0].Substeps); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q g=%d: substeps\n got %q\nwant %q", tc.text, tc.g, got, tc.want)
		}
	}
}

func TestLongListEndsWithTheRest(t *testing.T) {
	var b strings.Builder
	for i := range 30 {
		b.WriteString("- task number ")
		b.WriteString(strings.Repeat("i", i+1))
		b.WriteString("\n")
	}
	for g := 1; g <= 5; g++ {
		steps := Generate(offload.BreakdownRequest{InputText: b.String(), Granularity: g})
		checkPlan(t, steps)
		want := maxTopSteps
		if g == 1 {
			want = 3
		}
		if len(steps) != want || steps[len(steps)-1].Title != restOfList {
			t.Errorf("g=%d: %d steps ending %q, want %d ending %q", g, len(steps),
				steps[len(steps)-1].Title, want, restOfList)
		}
	}
}

func TestBrainDumpPrefersActionableSentences(t *testing.T) {
	steps := Generate(offload.BreakdownRequest{InputText: readFixture(t, "long_paragraph.txt"), Granularity: 2})
	checkPlan(t, steps)
	if len(steps) != maxTopSteps {
		t.Fatalf("%d top-level steps, want %d", len(steps), maxTopSteps)
	}
	if got, want := steps[0].Title, "Call the landlord anyway to confirm the time"; got != want {
		t.Errorf("first step %q, want %q", got, want)
	}
	for _, s := range steps {
		if strings.HasPrefix(s.Title, "My sister's birthday") || strings.HasPrefix(s.Title, "This week is") {
			t.Errorf("narration chosen as a step: %q", s.Title)
		}
	}
}

func TestContextHints(t *testing.T) {
	text := "Wohnung putzen. Einkaufen gehen."
	gen := func(g int, hints ...string) []offload.Step {
		return Generate(offload.BreakdownRequest{InputText: text, Granularity: g, ContextHints: hints})
	}
	plain := gen(3)
	t.Run("note on the first step", func(t *testing.T) {
		got := gen(3, "kids at home", " \n ", "short on time")
		if first := got[0].Substeps[0].Title; first != "Keep in mind: kids at home; short on time" {
			t.Errorf("first substep %q", first)
		}
		if !reflect.DeepEqual(got[1:], plain[1:]) {
			t.Error("a hint changed steps other than the first")
		}
	})
	t.Run("no note at granularity 1", func(t *testing.T) {
		if !reflect.DeepEqual(gen(1, "kids at home"), gen(1)) {
			t.Error("a hint changed a granularity-1 plan")
		}
	})
	t.Run("blank hints are ignored", func(t *testing.T) {
		if !reflect.DeepEqual(gen(3, "", "  ", "\x00"), plain) {
			t.Error("blank hints changed the plan")
		}
	})
	t.Run("low energy gives shorter timers", func(t *testing.T) {
		b, _ := json.Marshal(gen(3, "Feeling TIRED today"))
		if !strings.Contains(string(b), "2-minute timer") || strings.Contains(string(b), "5-minute timer") {
			t.Errorf("plan %s", b)
		}
	})
	t.Run("template ids are accepted", func(t *testing.T) {
		got := Generate(offload.BreakdownRequest{InputText: text, Granularity: 3, TemplateIDs: []string{"weekly-review"}})
		if !reflect.DeepEqual(got, plain) {
			t.Error("template ids changed the plan")
		}
	})
}

// TestTone checks the product's tone in the generated wording: never
// calling a task easy, never ordering the user about.
func TestTone(t *testing.T) {
	banned := []string{"easy", "simply", "just", "must", "only", "quick", "quickly", "obviously", "should"}
	for _, text := range []string{"", "clean the apartment", "Call mom. Pay rent. Write the report.",
		"Wohnung putzen. Einkaufen gehen. Steuer. Laufen. Kochen."} {
		for g := 1; g <= 5; g++ {
			steps := Generate(offload.BreakdownRequest{InputText: text, Granularity: g, ContextHints: []string{"tired"}})
			b, _ := json.Marshal(steps)
			for _, w := range wordSpans(strings.ToLower(string(b)), nil) {
				word := strings.ToLower(string(b))[w.start:w.end]
				for _, ban := range banned {
					if word == ban {
						t.Errorf("%q g=%d: plan says %q", text, g, ban)
					}
				}
			}
		}
	}
}

func TestFinalizeEnforcesLimits(t *testing.T) {
	deep := offload.Step{Title: "leaf"}
	for range 9 {
		deep = offload.Step{Title: "  level  ", Substeps: []offload.Step{deep}}
	}
	wide := make([]offload.Step, 300)
	for i := range wide {
		wide[i] = offload.Step{Title: "step", Substeps: []offload.Step{{Title: "sub"}}}
	}
	for name, in := range map[string][]offload.Step{
		"deep":         {deep},
		"wide":         wide,
		"blank titles": {{Title: " "}, {Title: "ok", Substeps: []offload.Step{{Title: "\t"}}}},
		"all blank":    {{Title: ""}, {Title: "  "}},
		"nil":          nil,
		"long title":   {{Title: strings.Repeat("é", 1000)}},
	} {
		t.Run(name, func(t *testing.T) { checkPlan(t, finalize(in)) })
	}
	if got := countSteps(finalize(wide)); got != maxSteps {
		t.Errorf("wide plan kept %d steps, want %d", got, maxSteps)
	}
}

func TestNormalizeTitle(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"  hello  ", "hello"},
		{strings.Repeat("a", 280), strings.Repeat("a", 280)},
		{strings.Repeat("a", 281), strings.Repeat("a", 279) + "…"},
		{strings.Repeat("日", 300), strings.Repeat("日", 279) + "…"},
		{strings.Repeat("a", 278) + "   bbbb", strings.Repeat("a", 278) + "…"},
		{"\xffok\xfe", "ok"},
		{" \t ", ""},
	}
	for _, tc := range tests {
		if got := normalizeTitle(tc.in); got != tc.want {
			t.Errorf("normalizeTitle(%.20q…) = %.20q… (%d code points), want %.20q…",
				tc.in, got, utf8.RuneCountInString(got), tc.want)
		}
	}
}

func TestProvider(t *testing.T) {
	req := offload.BreakdownRequest{InputText: "Call mom and pay rent", Granularity: 3}
	var p offload.Provider = Provider{}
	if p.Name() != "local" {
		t.Errorf("Name() = %q", p.Name())
	}
	got, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got.Usage != (offload.TokenUsage{}) {
		t.Errorf("usage %+v, want zero", got.Usage)
	}
	if !reflect.DeepEqual(got.Steps, Generate(req)) {
		t.Error("provider steps differ from Generate")
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel2()
	for _, tc := range []struct {
		ctx  context.Context
		want error
	}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		got, err := p.Generate(tc.ctx, req)
		if err != tc.want || !errors.Is(err, tc.want) {
			t.Errorf("err = %v, want %v as is", err, tc.want)
		}
		if got.Steps != nil {
			t.Error("steps returned with an error")
		}
	}
}

func TestFixturesAreLong(t *testing.T) {
	if n := utf8.RuneCountInString(readFixture(t, "long_paragraph.txt")); n < 3500 || n > 4000 {
		t.Errorf("long_paragraph.txt has %d code points, want 3500–4000", n)
	}
}

// benchInput repeats text up to exactly n code points.
func benchInput(text string, n int) string {
	r := []rune(strings.Repeat(text, n/utf8.RuneCountInString(text)+1))
	return string(r[:n])
}

func BenchmarkGenerate(b *testing.B) {
	for _, bc := range []struct{ name, text string }{
		{"paragraph", readFixture(b, "long_paragraph.txt")},
		{"bullets", readFixture(b, "bullets.txt")},
		{"no_punctuation", "wash the dishes "},
		{"japanese", "部屋を掃除して洗濯をする。"},
	} {
		text := benchInput(bc.text, 4000)
		for _, g := range []int{1, 5} {
			req := offload.BreakdownRequest{InputText: text, Granularity: g, ContextHints: []string{"tired"}}
			b.Run(bc.name+"_4000/g"+string(rune('0'+g)), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					Generate(req)
				}
			})
		}
	}
}
