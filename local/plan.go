package local

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/offload-app/offload"
)

// The wording of every template follows the product's tone: concrete,
// encouraging, never calling a task easy, never telling the user what they
// must do.

// options are what the context hints change in a plan.
type options struct {
	gentle bool   // a hint says energy is low: shorter timers, more rest
	note   string // "Keep in mind: …" made from the hints, or ""
}

// maxHintsRead bounds the work on a client that sends many hints; the
// server's contract allows 32.
const maxHintsRead = 32

func newOptions(hints []string) options {
	var o options
	var kept []string
	for i, h := range hints {
		if i == maxHintsRead {
			break
		}
		h = strings.Join(strings.Fields(sanitize(h)), " ")
		if strings.IndexFunc(h, isContent) < 0 {
			continue
		}
		if isLowEnergy(h) {
			o.gentle = true
		}
		if len(kept) < maxHints {
			kept = append(kept, h)
		}
	}
	if len(kept) > 0 {
		o.note = "Keep in mind: " + strings.Join(kept, "; ")
	}
	return o
}

func isLowEnergy(hint string) bool {
	h := strings.ToLower(hint)
	for _, w := range [...]string{
		"tired", "exhaust", "low energy", "low-energy", "no energy", "overwhelm", "anxious",
		"anxiety", "stress", "burnout", "burned out", "burnt out", "sick", "unwell",
	} {
		if strings.Contains(h, w) {
			return true
		}
	}
	return false
}

func timer(o options) string {
	if o.gentle {
		return "Set a 2-minute timer and start"
	}
	return "Set a 5-minute timer and start"
}

func finish(i int, o options) string {
	if o.gentle {
		return pick(i, "Check it off and rest for a moment", "Notice what you got done and rest")
	}
	return pick(i, "Check it off and take a short break", "Notice what you got done",
		"Check it off and stretch for a moment")
}

// pick varies the wording from step to step, deterministically.
func pick(i int, xs ...string) string { return xs[i%len(xs)] }

func leaf(title string) offload.Step { return offload.Step{Title: title, Substeps: []offload.Step{}} }

func leaves(titles ...string) []offload.Step {
	steps := make([]offload.Step, len(titles))
	for i, t := range titles {
		steps[i] = leaf(t)
	}
	return steps
}

// maxMergedRunes is the longest merged title that still reads at a glance.
const maxMergedRunes = 140

const restOfList = "Look over the rest of your list and pick the next step"

// listPlan makes a plan of several tasks: the tasks themselves, merged into
// at most three at granularity 1, each with more substeps as granularity
// rises. When more tasks were left out, a last step points at them.
func listPlan(tasks []string, more bool, g int, o options) []offload.Step {
	var steps []offload.Step
	if g == 1 {
		groups := 3
		if more {
			groups = 2
		}
		steps = leaves(mergeInto(tasks, groups)...)
	} else {
		steps = make([]offload.Step, 0, len(tasks)+1)
		for i, t := range tasks {
			steps = append(steps, offload.Step{Title: t, Substeps: leaves(taskSubsteps(t, i, g, o)...)})
		}
	}
	if more {
		steps = append(steps, leaf(restOfList))
	}
	return steps
}

// mergeInto joins tasks into at most n contiguous groups of balanced size:
// "Buy milk; Call mom". A group too long to read at a glance becomes its
// first task and a count: "Call the landlord (+3 more)".
func mergeInto(tasks []string, n int) []string {
	if len(tasks) <= n {
		return tasks
	}
	out := make([]string, n)
	for j := range n {
		group := tasks[j*len(tasks)/n : (j+1)*len(tasks)/n]
		joined := strings.Join(group, "; ")
		if utf8.RuneCountInString(joined) > maxMergedRunes {
			joined = group[0] + " (+" + strconv.Itoa(len(group)-1) + " more)"
		}
		out[j] = joined
	}
	return out
}

// taskSubsteps returns the substep titles of the i-th task of a list: none at
// granularity 1, one at 2, then more, down to micro-steps at 5. Tasks of a
// known kind get that kind's concrete steps; others get generic ones built
// around the task's own words.
func taskSubsteps(task string, i, g int, o options) []string {
	if g <= 1 {
		return nil
	}
	if k, ok := kitOf(kindOf(task)); ok {
		switch g {
		case 2:
			return []string{k.prep[0]}
		case 3:
			return []string{k.prep[0], k.do[0]}
		case 4:
			return []string{k.prep[0], k.do[0], finish(i, o)}
		}
		return []string{k.prep[0], k.prep[1], timer(o), k.do[0], k.do[1], finish(i, o)}
	}
	// start and next rotate together so "until the timer rings" follows a timer.
	var start, next string
	switch i % 3 {
	case 0:
		start, next = timer(o), "Keep going until the timer rings"
	case 1:
		start, next = "Start with the smallest piece", "Do the next small piece"
	default:
		start, next = "Do the first tiny part", "Keep a steady pace, one piece at a time"
	}
	if g == 2 {
		return []string{start}
	}
	var prep string
	if i%2 == 0 {
		prep = "Gather what you need for: " + task
	} else {
		prep = "Decide what done looks like for: " + task
	}
	switch g {
	case 3:
		return []string{prep, start}
	case 4:
		return []string{prep, start, finish(i, o)}
	}
	return []string{prep, pick(i, "Clear a small space to work in", "Put your phone face down",
		"Get a glass of water"), start, next, finish(i, o)}
}

// phasePlan makes a plan for a single task, or for none (blank input): a
// task alone gives nothing to split, so the plan is the path through it.
func phasePlan(task string, g int, o options) []offload.Step {
	ready := "Get ready for: " + task
	prep := [2]string{"Gather what you need", "Clear a small space to work in"}
	do := [2]string{"Pick the smallest part you can see", "Do the next small piece"}
	if task == "" {
		ready = "Pick one thing to work on"
		prep = [2]string{"Write down what's on your mind", "Circle the part that feels smallest"}
	}
	if k, ok := kitOf(kindOf(task)); ok {
		prep, do = k.prep, k.do
	}
	type phase struct {
		title string
		subs  []string
	}
	phases := [...]phase{
		{ready, []string{prep[0], prep[1], "Put your phone face down", "Have a glass of water nearby"}},
		{"Start with the smallest piece", []string{do[0], timer(o), "Stop when the timer rings, or keep going if it feels good"}},
		{"Keep going, one piece at a time", []string{do[1], "Take a short break when the timer rings", "Start another round if you feel like it"}},
		{"Look over what you've done", []string{"Notice what you got done", "Note what's left for next time"}},
		{"Wrap up and check it off", []string{"Put things back where they go", "Mark it done on your list", "Take a moment to enjoy it"}},
	}
	var use []int
	switch g {
	case 1:
		use = []int{0, 1, 4}
	case 2, 3:
		use = []int{0, 1, 2, 4}
	default:
		use = []int{0, 1, 2, 3, 4}
	}
	subs := min(g-1, 2) // granularity 5 takes every micro-step
	if g == maxGranularity {
		subs = len(phases[0].subs)
	}
	steps := make([]offload.Step, 0, len(use))
	for _, p := range use {
		s := phases[p].subs
		steps = append(steps, offload.Step{Title: phases[p].title, Substeps: leaves(s[:min(subs, len(s))]...)})
	}
	return steps
}

// finalize enforces the contract's limits on any plan: titles trimmed and
// 1–280 code points, depth at most maxDepth, at most maxSteps steps in all,
// Substeps never nil. It never returns an empty plan.
func finalize(steps []offload.Step) []offload.Step {
	budget := maxSteps
	out := limitSteps(steps, 1, &budget)
	if len(out) == 0 {
		budget = maxSteps
		out = limitSteps(phasePlan("", 1, options{}), 1, &budget)
	}
	return out
}

func limitSteps(in []offload.Step, depth int, budget *int) []offload.Step {
	out := make([]offload.Step, 0, min(len(in), *budget))
	for _, s := range in {
		if *budget == 0 {
			break
		}
		title := normalizeTitle(s.Title)
		if title == "" {
			continue
		}
		*budget--
		subs := []offload.Step{}
		if depth < maxDepth {
			subs = limitSteps(s.Substeps, depth+1, budget)
		}
		out = append(out, offload.Step{Title: title, Substeps: subs})
	}
	return out
}

// normalizeTitle trims t and cuts it to maxTitleRunes code points on a rune
// boundary, ending a cut title with "…".
func normalizeTitle(t string) string {
	if !utf8.ValidString(t) {
		t = strings.ToValidUTF8(t, "")
	}
	t = strings.TrimSpace(t)
	if len(t) <= maxTitleRunes || utf8.RuneCountInString(t) <= maxTitleRunes {
		return t
	}
	cut, n := 0, 0
	for i := range t {
		if n == maxTitleRunes-1 {
			cut = i
			break
		}
		n++
	}
	return strings.TrimRightFunc(t[:cut], unicode.IsSpace) + "…"
}
