package openai

// schemaName names the Structured Outputs format (a-z, 0-9, _ and -).
const schemaName = "task_breakdown"

// planSchema is the strict JSON schema of a plan. Strict mode requires every
// property to be required and additionalProperties to be false; the recursion
// of substeps goes through $defs/$ref, which strict mode supports. Depth and
// count limits cannot be expressed in strict mode, so ParseSteps enforces them.
const planSchema = `{` +
	`"type":"object",` +
	`"properties":{"steps":{"type":"array","description":"The steps, in the order to do them.","items":{"$ref":"#/$defs/step"}}},` +
	`"required":["steps"],` +
	`"additionalProperties":false,` +
	`"$defs":{"step":{` +
	`"type":"object",` +
	`"properties":{` +
	`"title":{"type":"string","description":"One concrete, actionable step, at most 280 characters."},` +
	`"substeps":{"type":"array","description":"Smaller steps that make up this step; empty when none are needed.","items":{"$ref":"#/$defs/step"}}` +
	`},` +
	`"required":["title","substeps"],` +
	`"additionalProperties":false}}}`
