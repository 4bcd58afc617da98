package anthropic

import "bytes"

var fence = []byte("```")

// planJSON returns the JSON object of an answer's text: the text itself when
// it starts with '{', else the body of its first markdown code fence
// (```json … ```, ``` … ```), which Claude models add now and then in spite
// of the instructions. Anything else is returned trimmed, for
// offload.ParseSteps to refuse. It only slices text: the limits on size,
// depth and count stay ParseSteps' (see FuzzPlanJSON).
func planJSON(text []byte) []byte {
	t := bytes.TrimSpace(text)
	if len(t) == 0 || t[0] == '{' {
		return t
	}
	i := bytes.Index(t, fence)
	if i < 0 {
		return t
	}
	rest := t[i+len(fence):]
	// The info string ("json", "JSON", none) runs to the end of the line.
	j := 0
	for j < len(rest) && isInfoByte(rest[j]) {
		j++
	}
	rest = rest[j:]
	// The closing fence starts a line; a one-line fence (```{…}```) closes
	// at its last fence. No closing fence (a cut-off answer) takes the rest,
	// which then fails to parse unless it is whole.
	if k := bytes.Index(rest, []byte("\n```")); k >= 0 {
		rest = rest[:k]
	} else if k := bytes.LastIndex(rest, fence); k >= 0 {
		rest = rest[:k]
	}
	return bytes.TrimSpace(rest)
}

func isInfoByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '+'
}
