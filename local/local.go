// Package local is the deterministic, dependency-free breakdown generator. The
// server uses it as the "local" provider (the default when no OpenAI key is
// set) and the client package runs it on the device.
//
// It splits a task description into steps with plain string rules (list
// items, lines, sentences, ";" and "and"/"then" clauses), strips filler such
// as "I need to", and adds encouraging substeps as the granularity rises. A
// single vague task becomes a generic plan ("Get ready", "Start with the
// smallest piece", …). The plan is never empty and always fits the wire
// contract: titles trimmed and 1–280 code points, at most 5 levels, at most
// 100 steps in all, Substeps never nil.
package local

import (
	"context"

	"github.com/offload-app/offload"
)

// ProviderName is what Provider.Name reports.
const ProviderName = "local"

const (
	minGranularity = 1
	maxGranularity = 5
	maxTitleRunes  = 280      // contract: a step title is 1–280 code points
	maxDepth       = 5        // contract: nesting deeper than 5 levels is invalid
	maxSteps       = 100      // contract: at most 100 steps counting substeps
	maxTopSteps    = 12       // a longer list stops being a plan one can start
	maxInputBytes  = 16 << 10 // ≥ the server's 4,000 code points; bounds work on the device
	maxHints       = 3
)

// Generate breaks a task description into steps. It is deterministic (the
// same request gives the same plan) and never returns an empty plan.
// Granularity outside 1–5 is clamped. Context hints add a "Keep in mind"
// substep to the first step (granularity 2 and up), and a hint of low energy
// ("tired", "overwhelmed") shortens the timers. Template ids are accepted and
// ignored.
func Generate(req offload.BreakdownRequest) []offload.Step {
	g := min(max(req.Granularity, minGranularity), maxGranularity)
	o := newOptions(req.ContextHints)
	titles, more := chooseTasks(splitTasks(req.InputText))

	var steps []offload.Step
	switch len(titles) {
	case 0:
		steps = phasePlan("", g, o)
	case 1:
		steps = phasePlan(titles[0], g, o)
	default:
		steps = listPlan(titles, more, g, o)
	}
	if g >= 2 && o.note != "" && len(steps) > 0 {
		note := offload.Step{Title: o.note, Substeps: []offload.Step{}}
		steps[0].Substeps = append([]offload.Step{note}, steps[0].Substeps...)
	}
	return finalize(steps)
}

// Provider is the offload.Provider backed by Generate. The zero value is
// ready to use.
type Provider struct{}

var _ offload.Provider = Provider{}

// Name returns "local".
func (Provider) Name() string { return ProviderName }

// Generate returns Generate(req) with zero token usage. Its only error is
// ctx.Err(), unwrapped, when ctx is already done: the caller is gone, so there
// is nobody to answer.
func (Provider) Generate(ctx context.Context, req offload.BreakdownRequest) (offload.Breakdown, error) {
	if err := ctx.Err(); err != nil {
		return offload.Breakdown{}, err
	}
	return offload.Breakdown{Steps: Generate(req)}, nil
}
