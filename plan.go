package offload

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Limits on a provider's plan. The contract makes violations
// provider_invalid_response rather than something the app has to cope with.
const (
	MaxContentBytes = 1 << 20 // assistant content size
	MaxStepDepth    = 5       // levels of steps, top level = 1
	MaxSteps        = 100     // steps in all levels together
	MaxTitleChars   = 280     // runes, after trimming
)

// maxBracketDepth bounds JSON nesting before any recursive decoding: the
// deepest valid value is the (empty) substeps array of a level-5 step, which
// sits at depth 2·MaxStepDepth+2 ({ steps[ { substeps[ { … ).
const maxBracketDepth = 2*MaxStepDepth + 2

// planError is a content-free parse failure: it names the rule broken, never
// the content. A string type lets the sentinels be constants.
type planError string

func (e planError) Error() string { return string(e) }

const (
	errNotObject    planError = "plan: content is not a JSON object"
	errTooDeep      planError = "plan: nesting too deep"
	errTooLarge     planError = "plan: content too large"
	errSyntax       planError = "plan: malformed JSON"
	errNoSteps      planError = "plan: missing or empty steps"
	errBadTitle     planError = "plan: step title missing, empty or too long"
	errTooManySteps planError = "plan: too many steps"
)

type rawStep struct {
	Title    *string   `json:"title"`
	Substeps []rawStep `json:"substeps"`
}

// ParseSteps validates an assistant message content and returns its plan.
// Content must be a JSON object with a non-empty "steps" array; each step has
// a string title (trimmed, 1–280 runes) and optional "substeps" (absent or
// null becomes empty). More than MaxStepDepth levels, more than MaxSteps
// steps or more than MaxContentBytes bytes is an error. Unknown fields are
// ignored. It never panics and never recurses deeper than the depth bound,
// whatever the input: nesting is checked by an iterative pre-scan before
// encoding/json sees the bytes. Errors are content-free.
func ParseSteps(content []byte) ([]Step, error) {
	if len(content) > MaxContentBytes {
		return nil, errTooLarge
	}
	if err := scanShape(content); err != nil {
		return nil, err
	}
	var plan struct {
		Steps []rawStep `json:"steps"`
	}
	if err := json.Unmarshal(content, &plan); err != nil {
		return nil, errSyntax
	}
	if len(plan.Steps) == 0 {
		// An empty plan is useless to the user; treating it as invalid lets
		// the app fall back to its on-device plan.
		return nil, errNoSteps
	}
	total := 0
	return convertSteps(plan.Steps, 1, &total)
}

func convertSteps(raw []rawStep, depth int, total *int) ([]Step, error) {
	if depth > MaxStepDepth {
		return nil, errTooDeep
	}
	*total += len(raw)
	if *total > MaxSteps {
		return nil, errTooManySteps
	}
	steps := make([]Step, len(raw))
	for i, r := range raw {
		if r.Title == nil {
			return nil, errBadTitle
		}
		title := strings.TrimSpace(*r.Title)
		if title == "" || utf8.RuneCountInString(title) > MaxTitleChars {
			return nil, errBadTitle
		}
		steps[i].Title = title
		if len(r.Substeps) == 0 {
			steps[i].Substeps = []Step{}
			continue
		}
		sub, err := convertSteps(r.Substeps, depth+1, total)
		if err != nil {
			return nil, err
		}
		steps[i].Substeps = sub
	}
	return steps, nil
}

// scanShape checks, without recursion, that content starts with an object
// and never nests deeper than maxBracketDepth. Strings are skipped so that
// brackets inside titles do not count. Syntax is left to encoding/json.
func scanShape(content []byte) error {
	depth, first, inString, escaped := 0, true, false, false
	for _, c := range content {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			continue
		}
		if first && c != '{' {
			return errNotObject
		}
		first = false
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > maxBracketDepth {
				return errTooDeep
			}
		case '}', ']':
			depth--
		}
	}
	if first {
		return errNotObject
	}
	return nil
}
