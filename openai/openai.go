// Package openai is the OpenAI provider: it asks a chat-completions endpoint
// (OpenAI or a compatible server) for a breakdown through the official SDK,
// with the contract's retry policy, and validates the answer defensively.
//
// Privacy: no request or answer content and no provider body ever reaches a
// log line or an error; errors are *offload.ProviderError with a fixed class.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/internal/upstream"
)

// ProviderName is reported in the response's "provider" field.
const ProviderName = "openai"

// maxCompletionTokens bounds the cost of one answer. The largest valid plan
// (100 steps of 280 characters) fits; a runaway answer is cut off and then
// fails validation.
const maxCompletionTokens = 8192

// Error classes: short, fixed labels for logs and ProviderError.Class.
const (
	classNoAPIKey     = "no_api_key"
	classCanceled     = "canceled"
	classDeadline     = "deadline"
	classTimeout      = "timeout"
	classTransport    = "transport"
	classRequest      = "request"
	classParse        = "parse"
	classRefusal      = "refusal"
	classNoChoices    = "no_choices"
	classEmpty        = "empty_content"
	classBodyTooLarge = "body_too_large"
	classBodyBudget   = "body_budget"
)

// Defaults of Options' zero fields.
const (
	DefaultBaseURL = "https://api.openai.com/v1"
	DefaultModel   = "gpt-4o-mini"
	DefaultTimeout = 20 * time.Second
	// DefaultMaxConns sizes the upstream connection pool when Options.MaxConns
	// is 0. Give the server's in-flight bound instead.
	DefaultMaxConns = 256
)

// DefaultRetry is the contract's retry policy, used when Options.Retry is
// the zero value.
var DefaultRetry = offload.RetryPolicy{
	MaxAttempts:   3,
	BaseDelay:     250 * time.Millisecond,
	MaxDelay:      2 * time.Second,
	MaxTotalDelay: 4 * time.Second,
	JitterFactor:  0.25,
}

// ResponseFormat is how the model is asked for JSON.
type ResponseFormat string

const (
	// FormatJSONSchema sends the plan's strict JSON schema (Structured
	// Outputs); the default.
	FormatJSONSchema ResponseFormat = "json_schema"
	// FormatJSONObject asks for any JSON object (JSON mode), for compatible
	// servers without Structured Outputs; the prompt describes the shape.
	FormatJSONObject ResponseFormat = "json_object"
)

// Options configure a Provider. Zero fields take the defaults above.
type Options struct {
	// APIKey is sent as the bearer token. Empty: Generate answers
	// provider_unavailable without calling anything. Key material: Options
	// is not for printing (a Provider does not show the key).
	APIKey string
	// BaseURL is the API root; requests go to {BaseURL}/chat/completions.
	// An absolute http or https URL.
	BaseURL string
	Model   string
	// Timeout bounds each attempt, from sending to the answer's last byte.
	Timeout        time.Duration
	ResponseFormat ResponseFormat
	// Retry is the policy across attempts; the zero value means DefaultRetry,
	// MaxAttempts 1 means no retry. The SDK's own retries are always off.
	Retry offload.RetryPolicy
	// MaxConns bounds the connections to the upstream and sizes the idle
	// pool, so that a burst reuses every connection it opened instead of
	// closing and redialling past a smaller idle limit. Give it the server's
	// in-flight bound: a request over it waits for a connection (within its
	// Timeout). Ignored with HTTPClient.
	MaxConns int
	// MaxResponseBytes caps a success body (default
	// DefaultMaxResponseBytes); a larger one is provider_invalid_response,
	// read no further than the cap.
	MaxResponseBytes int64
	// HTTPClient replaces the tuned client (tests, proxies). Its transport
	// is wrapped with the body caps and, if it is an *http.Transport,
	// header-capped on a clone: the caller's client is never modified.
	HTTPClient *http.Client
	// Logger gets the retry outcome lines; nil discards.
	Logger *slog.Logger
	// Sleep waits between attempts (nil: offload.Sleep); it must return
	// ctx.Err() when ctx ends first. Tests record delays instead.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand is the jitter source, in [0, 1) (nil: math/rand/v2).
	Rand func() float64
}

// Provider generates breakdowns with OpenAI. It is safe for concurrent use;
// one Provider (one SDK service, one connection pool) serves every request.
type Provider struct {
	// The key itself lives only in the SDK's options, so that printing a
	// Provider cannot show it.
	hasKey  bool
	timeout time.Duration
	bodies  *bodyReader
	retry   offload.RetryPolicy
	logger  *slog.Logger
	hc      *http.Client
	sleep   func(ctx context.Context, d time.Duration) error
	rand    func() float64

	completions sdk.ChatCompletionService
	// The request body is the same for every call but for the user message:
	// it is marshalled once by the SDK (see bodyTemplate) and each call
	// splices its JSON-encoded user message between prefix and suffix.
	bodyPrefix, bodySuffix []byte
}

var _ offload.Provider = (*Provider)(nil)

// New returns a provider for o. It does no I/O: a missing key shows up as
// provider_unavailable on Generate, so the server can still start and serve
// the other routes. It fails only on options that can never work (a base
// URL that is not absolute http(s), an unknown response format, negative
// sizes); the error quotes none of them, as a URL may carry a credential.
func New(o Options) (*Provider, error) {
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	if u, err := url.Parse(o.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("openai: base URL must be an absolute http or https URL")
	}
	if o.Model == "" {
		o.Model = DefaultModel
	}
	if strings.Contains(o.Model, userMarker) {
		return nil, errors.New("openai: invalid model name")
	}
	switch o.ResponseFormat {
	case "":
		o.ResponseFormat = FormatJSONSchema
	case FormatJSONSchema, FormatJSONObject:
	default:
		return nil, errors.New("openai: response format must be json_schema or json_object")
	}
	if o.MaxConns < 0 || o.MaxResponseBytes < 0 || o.Timeout < 0 {
		return nil, errors.New("openai: MaxConns, MaxResponseBytes and Timeout must not be negative")
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Retry == (offload.RetryPolicy{}) {
		o.Retry = DefaultRetry
	}
	o.Retry.MaxAttempts = max(o.Retry.MaxAttempts, 1)
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}

	p := &Provider{
		hasKey:  o.APIKey != "",
		timeout: o.Timeout,
		bodies:  newBodyReader(o.MaxResponseBytes),
		retry:   o.Retry,
		logger:  o.Logger,
		sleep:   o.Sleep,
		rand:    o.Rand,
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	if p.sleep == nil {
		p.sleep = offload.Sleep
	}
	if p.rand == nil {
		p.rand = rand.Float64
	}

	hc := http.Client{Transport: upstream.NewTransport(o.MaxConns)}
	if o.HTTPClient != nil {
		hc = *o.HTTPClient
		if hc.Transport == nil {
			hc.Transport = http.DefaultTransport
		}
		hc.Transport = upstream.CapHeaders(hc.Transport)
	}
	hc.Transport = upstream.CapBodies{Next: hc.Transport, Max: o.MaxResponseBytes}
	p.hc = &hc

	// The service is built from explicit options rather than sdk.NewClient,
	// which would also read OPENAI_* variables: the caller's options are the
	// only input, and an ambient OPENAI_ORG_ID or custom header must not
	// change what this server sends.
	p.completions = sdk.NewChatCompletionService(
		option.WithBaseURL(o.BaseURL),
		option.WithAPIKey(o.APIKey),
		option.WithHTTPClient(p.hc),
		option.WithMaxRetries(0), // our policy retries, with our budget
	)

	p.bodyPrefix, p.bodySuffix = bodyTemplate(o.Model, o.ResponseFormat)
	return p, nil
}

// rawJSON is a pre-encoded JSON value, passed through as-is by the SDK's
// encoder.
type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// userMarker stands for the user message in the body template. It is plain
// ASCII so every JSON encoder writes it verbatim between two quotes.
const userMarker = "OFFLOAD_USER_MESSAGE_9b3f27c1"

// bodyTemplate marshals the chat-completions request with the SDK's own
// types and encoder, once, and splits it around the user message. Encoding
// the 3 KB of constant prompt and schema by reflection on every call was a
// quarter of the adapter's CPU under load.
func bodyTemplate(model string, rf ResponseFormat) (prefix, suffix []byte) {
	var format sdk.ChatCompletionNewParamsResponseFormatUnion
	if rf == FormatJSONObject {
		format.OfJSONObject = &shared.ResponseFormatJSONObjectParam{}
	} else {
		format.OfJSONSchema = &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{
				Name:   schemaName,
				Strict: sdk.Bool(true),
				Schema: rawJSON(planSchema),
			},
		}
	}
	params := sdk.ChatCompletionNewParams{
		Model: model,
		Messages: []sdk.ChatCompletionMessageParamUnion{
			sdk.SystemMessage(offload.SystemPrompt),
			sdk.UserMessage(userMarker),
		},
		ResponseFormat:      format,
		MaxCompletionTokens: sdk.Int(maxCompletionTokens),
		// Zero content retention: ask OpenAI not to keep the completion.
		Store: sdk.Bool(false),
	}
	body, err := params.MarshalJSON()
	quoted := []byte(`"` + userMarker + `"`)
	i := bytes.Index(body, quoted)
	if err != nil || i < 0 || bytes.Count(body, quoted) != 1 {
		// Only a broken SDK gets here (New refuses a model name holding
		// the marker).
		panic("openai: cannot build the request body template")
	}
	return body[:i:i], body[i+len(quoted):]
}

// Name implements offload.Provider.
func (p *Provider) Name() string { return ProviderName }

// Generate asks the model for a breakdown of req.
//
// Attempts: at most Retry.MaxAttempts, each bounded by its own Timeout.
// Timeouts, transport errors, 429 and 5xx are retried after a backoff while
// the total sleep stays within MaxTotalDelay (see offload.RetryPolicy.NextDelay); other 4xx and
// invalid answers are not. The final error maps to the contract codes:
// last failure a timeout → ProviderTimeout, invalid answer →
// ProviderInvalidResponse, anything else → ProviderRequestFailed. Every
// error is an *offload.ProviderError with Provider "openai" and, when the
// last attempt failed on an HTTP error status, that Status; a success
// reports its Attempts.
//
// When ctx ends (the client went away), Generate stops at once and returns a
// ProviderError of class "canceled" (or "deadline" when ctx's own deadline
// passed, mapped to ProviderTimeout) that also wraps ctx.Err(), so
// errors.Is(err, context.Canceled) holds.
func (p *Provider) Generate(ctx context.Context, req offload.BreakdownRequest) (offload.Breakdown, error) {
	if !p.hasKey {
		return offload.Breakdown{}, &offload.ProviderError{Failure: offload.ProviderUnavailable, Class: classNoAPIKey, Provider: ProviderName}
	}
	body := p.requestBody(req)

	var slept time.Duration
	for attempt := 1; ; attempt++ {
		out, f := p.attempt(ctx, body)
		if f == nil {
			if attempt > 1 {
				p.logger.LogAttrs(ctx, slog.LevelInfo, "provider_retry_recovered",
					slog.String("provider", ProviderName), slog.Int("attempts", attempt))
			}
			out.Attempts = attempt
			return out, nil
		}
		if f.class == classCanceled || f.class == classDeadline {
			return offload.Breakdown{}, offload.ProviderCanceled(ctx, ProviderName, f.class, attempt)
		}
		retry := f.retryable && attempt < p.retry.MaxAttempts
		var d time.Duration
		if retry {
			d, retry = p.retry.NextDelay(attempt, p.rand(), slept, f.retryAfter)
		}
		if !retry {
			// Only a failure after retrying, or a retryable one that we stop
			// retrying, is a "retries ended" event; a first-attempt 400 or
			// invalid answer is not a retry story.
			if f.retryable || attempt > 1 {
				p.logger.LogAttrs(ctx, slog.LevelWarn, "provider_retry_terminal",
					slog.String("provider", ProviderName), slog.Int("attempts", attempt),
					slog.String("error_class", f.class))
			}
			return offload.Breakdown{}, &offload.ProviderError{
				Failure: f.failure, Class: f.class, Attempts: attempt, Status: f.status, Provider: ProviderName,
			}
		}
		if err := p.sleep(ctx, d); err != nil || ctx.Err() != nil {
			return offload.Breakdown{}, offload.ProviderCanceled(ctx, ProviderName, classCanceled, attempt)
		}
		slept += d
	}
}

// failure is one failed attempt.
type failure struct {
	failure    offload.ProviderFailure
	class      string
	status     int // the HTTP error status it failed on, 0 otherwise
	retryable  bool
	retryAfter time.Duration
}

// requestBody is the template with req's user message in place.
func (p *Provider) requestBody(req offload.BreakdownRequest) []byte {
	user, _ := json.Marshal(offload.UserMessage(req)) // a string always encodes
	body := make([]byte, 0, len(p.bodyPrefix)+len(user)+len(p.bodySuffix))
	body = append(body, p.bodyPrefix...)
	body = append(body, user...)
	return append(body, p.bodySuffix...)
}

// completion is the part of a chat.completion the adapter reads. Decoding
// into it (instead of the SDK's full ChatCompletion) skips the SDK's
// reflective decoder, and nothing else of the answer is looked at.
type completion struct {
	Choices []struct {
		Message struct {
			Content *string `json:"content"`
			Refusal *string `json:"refusal"`
		} `json:"message"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
	} `json:"usage"`
}

func (p *Provider) attempt(ctx context.Context, body []byte) (offload.Breakdown, *failure) {
	actx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	// Empty params: the body comes pre-encoded (WithRequestBody). A success
	// answer is handed over unread (WithResponseBodyInto of an
	// *http.Response) and read once, into a pooled buffer, under the cap;
	// the SDK would read it whole and copy it again into its decoder. Error
	// answers the SDK reads itself, under upstream.CapBodies' smaller cap.
	var res *http.Response
	_, err := p.completions.New(actx, sdk.ChatCompletionNewParams{},
		option.WithRequestBody("application/json", body),
		option.WithResponseBodyInto(&res))
	if err == nil {
		var out completion
		err = p.bodies.decode(res.Body, &out)
		res.Body.Close()
		if err == nil {
			return answer(&out)
		}
	}
	return offload.Breakdown{}, classify(ctx, actx, res, err)
}

// classify turns an SDK error into a failure without looking at its text:
// openai.Error's fields and the body the SDK keeps may echo the prompt.
func classify(ctx, actx context.Context, res *http.Response, err error) *failure {
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &failure{failure: offload.ProviderTimeout, class: classDeadline}
		}
		return &failure{failure: offload.ProviderRequestFailed, class: classCanceled}
	}
	if actx.Err() != nil {
		return &failure{failure: offload.ProviderTimeout, class: classTimeout, retryable: true}
	}
	status, header := 0, http.Header(nil)
	var apiErr *sdk.Error
	if errors.As(err, &apiErr) {
		status = apiErr.StatusCode
		if apiErr.Response != nil {
			header = apiErr.Response.Header
		}
	} else if res != nil {
		status, header = res.StatusCode, res.Header
	}
	if status >= 400 {
		f := &failure{failure: offload.ProviderRequestFailed, class: statusClass(status), status: status}
		if status == http.StatusTooManyRequests || status >= 500 {
			f.retryable = true
			f.retryAfter = offload.RetryAfter(header)
		}
		return f
	}
	if errors.Is(err, upstream.ErrBodyTooLarge) {
		return &failure{failure: offload.ProviderInvalidResponse, class: classBodyTooLarge}
	}
	if errors.Is(err, errBodyBudget) {
		return &failure{failure: offload.ProviderInvalidResponse, class: classBodyBudget}
	}
	// Transport errors come before the 2xx check: a connection reset or a
	// truncated body while reading a 200 is a transport failure (retried),
	// not an invalid answer. An oversized response header is one too
	// (net/http reports it as a plain error in a *url.Error).
	var netErr net.Error
	if errors.As(err, &netErr) {
		if netErr.Timeout() {
			return &failure{failure: offload.ProviderTimeout, class: classTimeout, retryable: true}
		}
		return &failure{failure: offload.ProviderRequestFailed, class: classTransport, retryable: true}
	}
	var readErr *upstream.ReadError
	if errors.As(err, &readErr) {
		return &failure{failure: offload.ProviderRequestFailed, class: classTransport, retryable: true}
	}
	if res != nil {
		// A 2xx whose body does not decode.
		return &failure{failure: offload.ProviderInvalidResponse, class: classParse}
	}
	// The SDK refused to build or send the request: retrying cannot help.
	return &failure{failure: offload.ProviderRequestFailed, class: classRequest}
}

// statusClass is "status_" and the code, built without fmt on the hot path.
func statusClass(code int) string {
	if code < 100 || code > 999 {
		return "status_other"
	}
	return "status_" + string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
}

func answer(c *completion) (offload.Breakdown, *failure) {
	invalid := func(class string) (offload.Breakdown, *failure) {
		return offload.Breakdown{}, &failure{failure: offload.ProviderInvalidResponse, class: class}
	}
	if len(c.Choices) == 0 {
		return invalid(classNoChoices)
	}
	msg := c.Choices[0].Message
	if msg.Refusal != nil && *msg.Refusal != "" {
		return invalid(classRefusal)
	}
	if msg.Content == nil || *msg.Content == "" {
		return invalid(classEmpty)
	}
	steps, err := offload.ParseSteps([]byte(*msg.Content))
	if err != nil {
		return invalid(classParse)
	}
	return offload.Breakdown{
		Steps: steps,
		Usage: offload.TokenUsage{
			InputTokens:  offload.TokenCount(c.Usage.PromptTokens),
			OutputTokens: offload.TokenCount(c.Usage.CompletionTokens),
		},
	}, nil
}
