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
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/config"
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
)

// Provider generates breakdowns with OpenAI. It is safe for concurrent use;
// one Provider (one SDK client, one connection pool) serves every request.
type Provider struct {
	cfg    config.OpenAI
	logger *slog.Logger
	hc     *http.Client
	sleep  func(ctx context.Context, d time.Duration) error
	rand   func() float64

	completions sdk.ChatCompletionService
	// The request body is the same for every call but for the user message:
	// it is marshalled once by the SDK (see bodyTemplate) and each call
	// splices its JSON-encoded user message between prefix and suffix.
	bodyPrefix, bodySuffix []byte
}

var _ offload.Provider = (*Provider)(nil)

// Option configures a Provider.
type Option func(*Provider)

// WithHTTPClient sets the HTTP client. Its transport is still wrapped with
// the response-size cap.
func WithHTTPClient(c *http.Client) Option { return func(p *Provider) { p.hc = c } }

// WithSleep replaces the backoff sleep (tests record delays instead of
// waiting). It must return ctx.Err() when ctx ends first.
func WithSleep(f func(ctx context.Context, d time.Duration) error) Option {
	return func(p *Provider) { p.sleep = f }
}

// WithRand replaces the jitter source; f returns values in [0, 1).
func WithRand(f func() float64) Option { return func(p *Provider) { p.rand = f } }

// New returns a provider for cfg. It does no I/O: a missing key shows up as
// provider_unavailable on Generate, so the server can still start and serve
// the other routes. A nil logger discards.
func New(cfg config.OpenAI, logger *slog.Logger, opts ...Option) *Provider {
	p := &Provider{cfg: cfg, logger: logger, sleep: offload.Sleep, rand: rand.Float64}
	for _, o := range opts {
		o(p)
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	if p.cfg.Retry.MaxAttempts < 1 {
		p.cfg.Retry.MaxAttempts = 1
	}

	hc := http.Client{Transport: defaultTransport()}
	if p.hc != nil {
		hc = *p.hc
		if hc.Transport == nil {
			hc.Transport = http.DefaultTransport
		}
	}
	hc.Transport = capTransport{next: hc.Transport, max: MaxResponseBytes}
	p.hc = &hc

	// The service is built from explicit options rather than sdk.NewClient,
	// which would also read OPENAI_* variables: config is the only place the
	// environment is read, and an ambient OPENAI_ORG_ID or custom header must
	// not change what this server sends.
	p.completions = sdk.NewChatCompletionService(
		option.WithBaseURL(cfg.BaseURL),
		option.WithAPIKey(string(cfg.APIKey)),
		option.WithHTTPClient(p.hc),
		option.WithMaxRetries(0), // our policy retries, with our budget
	)

	p.bodyPrefix, p.bodySuffix = bodyTemplate(cfg)
	return p
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
func bodyTemplate(cfg config.OpenAI) (prefix, suffix []byte) {
	var format sdk.ChatCompletionNewParamsResponseFormatUnion
	if cfg.ResponseFormat == config.FormatJSONObject {
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
		Model: cfg.Model,
		Messages: []sdk.ChatCompletionMessageParamUnion{
			sdk.SystemMessage(systemPrompt),
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
		// Only a broken SDK or a model name containing the marker gets
		// here; neither can be served correctly.
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
// ProviderInvalidResponse, anything else → ProviderRequestFailed.
//
// When ctx ends (the client went away), Generate stops at once and returns a
// ProviderError of class "canceled" (or "deadline" when ctx's own deadline
// passed, mapped to ProviderTimeout) that also wraps ctx.Err(), so
// errors.Is(err, context.Canceled) holds.
func (p *Provider) Generate(ctx context.Context, req offload.BreakdownRequest) (offload.Breakdown, error) {
	if p.cfg.APIKey == "" {
		return offload.Breakdown{}, &offload.ProviderError{Failure: offload.ProviderUnavailable, Class: classNoAPIKey}
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
			return out, nil
		}
		if f.class == classCanceled || f.class == classDeadline {
			return offload.Breakdown{}, canceled(ctx, f.class, attempt)
		}
		retry := f.retryable && attempt < p.cfg.Retry.MaxAttempts
		var d time.Duration
		if retry {
			d, retry = p.cfg.Retry.NextDelay(attempt, p.rand(), slept, f.retryAfter)
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
			return offload.Breakdown{}, &offload.ProviderError{Failure: f.failure, Class: f.class, Attempts: attempt}
		}
		if err := p.sleep(ctx, d); err != nil || ctx.Err() != nil {
			return offload.Breakdown{}, canceled(ctx, classCanceled, attempt)
		}
		slept += d
	}
}

// failure is one failed attempt.
type failure struct {
	failure    offload.ProviderFailure
	class      string
	retryable  bool
	retryAfter time.Duration
}

// requestBody is the template with req's user message in place.
func (p *Provider) requestBody(req offload.BreakdownRequest) []byte {
	user, _ := json.Marshal(userMessage(req)) // a string always encodes
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
	actx, cancel := ctx, context.CancelFunc(func() {})
	if p.cfg.Timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, p.cfg.Timeout)
	}
	defer cancel()
	var (
		res *http.Response
		out completion
	)
	// Empty params: the body comes pre-encoded (WithRequestBody) and the
	// answer is decoded into out (WithResponseBodyInto).
	_, err := p.completions.New(actx, sdk.ChatCompletionNewParams{},
		option.WithRequestBody("application/json", body),
		option.WithResponseBodyInto(&out),
		option.WithResponseInto(&res))
	if err != nil {
		return offload.Breakdown{}, classify(ctx, actx, res, err)
	}
	return answer(&out)
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
		f := &failure{failure: offload.ProviderRequestFailed, class: statusClass(status)}
		if status == http.StatusTooManyRequests || status >= 500 {
			f.retryable = true
			f.retryAfter = offload.RetryAfter(header)
		}
		return f
	}
	if errors.Is(err, errBodyTooLarge) {
		return &failure{failure: offload.ProviderInvalidResponse, class: classBodyTooLarge}
	}
	// Transport errors come before the 2xx check: a connection reset or a
	// truncated body while reading a 200 is a transport failure (retried),
	// not an invalid answer.
	var netErr net.Error
	if errors.As(err, &netErr) {
		if netErr.Timeout() {
			return &failure{failure: offload.ProviderTimeout, class: classTimeout, retryable: true}
		}
		return &failure{failure: offload.ProviderRequestFailed, class: classTransport, retryable: true}
	}
	var readErr *bodyReadError
	if errors.As(err, &readErr) {
		return &failure{failure: offload.ProviderRequestFailed, class: classTransport, retryable: true}
	}
	if res != nil {
		// A 2xx whose body the SDK could not decode.
		return &failure{failure: offload.ProviderInvalidResponse, class: classParse}
	}
	// The SDK refused to build or send the request (bad base URL and the
	// like): retrying cannot help.
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
			InputTokens:  clampTokens(c.Usage.PromptTokens),
			OutputTokens: clampTokens(c.Usage.CompletionTokens),
		},
	}, nil
}

// clampTokens keeps a hostile usage figure from going negative or wrapping.
func clampTokens(n int64) int {
	if n < 0 {
		return 0
	}
	if n > 1<<31-1 {
		return 1<<31 - 1
	}
	return int(n)
}

// canceledError is the error for a caller that went away: a ProviderError
// for the code mapping that also unwraps to ctx.Err().
type canceledError struct {
	pe    *offload.ProviderError
	cause error
}

func (e *canceledError) Error() string   { return e.pe.Error() }
func (e *canceledError) Unwrap() []error { return []error{e.pe, e.cause} }

func canceled(ctx context.Context, class string, attempts int) error {
	cause := ctx.Err()
	if cause == nil {
		cause = context.Canceled
	}
	failure := offload.ProviderRequestFailed
	if errors.Is(cause, context.DeadlineExceeded) {
		class, failure = classDeadline, offload.ProviderTimeout
	}
	return &canceledError{
		pe:    &offload.ProviderError{Failure: failure, Class: class, Attempts: attempts},
		cause: cause,
	}
}
