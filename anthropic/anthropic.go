// Package anthropic is the Anthropic provider: it asks the Messages API (or a
// compatible server) for a breakdown through the official SDK, with the
// contract's retry policy, and validates the answer defensively. It mirrors
// package openai: same prompt, same retries, same error mapping.
//
// Privacy: no request or answer content and no provider body ever reaches a
// log line or an error; errors are *offload.ProviderError with a fixed class.
package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/internal/upstream"
)

// ProviderName is reported in the response's "provider" field.
const ProviderName = "anthropic"

// Defaults of Options, as the existing deployment has them.
const (
	DefaultBaseURL = "https://api.anthropic.com"
	DefaultModel   = "claude-haiku-4-5-20251001"
	DefaultVersion = "2023-06-01"
	DefaultTimeout = 20 * time.Second
	// DefaultMaxConns sizes the upstream connection pool when
	// Options.MaxConns is zero.
	DefaultMaxConns = 256
)

// MaxResponseBytes caps every upstream response body the SDK reads. A valid
// answer is well under it (the text is capped at 1 MiB, JSON escaping can
// grow it a few times); beyond it the read fails with
// upstream.ErrBodyTooLarge, which the adapter reports as
// provider_invalid_response instead of buffering whatever an upstream sends.
const MaxResponseBytes = 4 << 20

// maxTokens bounds the cost of one answer. The largest valid plan (100 steps
// of 280 characters) fits; a runaway answer is cut off and then fails
// validation.
const maxTokens = 8192

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
	classTruncated    = "max_tokens"
	classEmpty        = "empty_content"
	classBodyTooLarge = "body_too_large"
)

// Options configures a Provider. The zero value of every field but APIKey
// means its default.
type Options struct {
	APIKey string
	// BaseURL is the API root; requests go to {BaseURL}/v1/messages.
	BaseURL string
	Model   string
	// Version is sent as the anthropic-version header.
	Version string
	// MaxConns caps the connections to the upstream and sizes the idle
	// pool (default DefaultMaxConns); the server passes its in-flight bound.
	MaxConns int
	// Timeout bounds each attempt.
	Timeout time.Duration
	// Retry is the contract's policy; MaxAttempts below 1 means one attempt.
	Retry offload.RetryPolicy
	// HTTPClient is used as given, except that its transport is wrapped
	// with the response-size caps (the caller's client is not modified).
	HTTPClient *http.Client
	// Logger gets content-free retry lines; nil discards.
	Logger *slog.Logger
	// Sleep replaces the backoff sleep (tests record delays instead of
	// waiting); it must return ctx.Err() when ctx ends first.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand replaces the jitter source; it returns values in [0, 1).
	Rand func() float64
}

// Provider generates breakdowns with Anthropic. It is safe for concurrent
// use; one Provider (one SDK service, one connection pool) serves every
// request.
type Provider struct {
	opts Options
	hc   *http.Client

	messages sdk.MessageService
	// The request body is the same for every call but for the user message:
	// it is marshalled once by the SDK (see bodyTemplate) and each call
	// splices its JSON-encoded user message between prefix and suffix.
	bodyPrefix, bodySuffix []byte
}

var _ offload.Provider = (*Provider)(nil)

// New returns a provider for opts. It does no I/O: a missing key shows up as
// provider_unavailable on Generate, so the server can still start and serve
// the other routes.
func New(opts Options) *Provider {
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	if opts.Model == "" {
		opts.Model = DefaultModel
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Retry.MaxAttempts < 1 {
		opts.Retry.MaxAttempts = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Sleep == nil {
		opts.Sleep = offload.Sleep
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	p := &Provider{opts: opts}

	hc := http.Client{Transport: upstream.NewTransport(opts.MaxConns)}
	if opts.HTTPClient != nil {
		hc = *opts.HTTPClient
		if hc.Transport == nil {
			hc.Transport = http.DefaultTransport
		}
		hc.Transport = upstream.CapHeaders(hc.Transport)
	}
	hc.Transport = upstream.CapBodies{Next: hc.Transport, Max: MaxResponseBytes}
	p.hc = &hc

	// The service is built from explicit options rather than sdk.NewClient,
	// which would also read ANTHROPIC_* variables and credential files:
	// config is the only place the environment is read, and an ambient
	// ANTHROPIC_BASE_URL or custom header must not change what this server
	// sends.
	p.messages = sdk.NewMessageService(
		option.WithBaseURL(strings.TrimSuffix(opts.BaseURL, "/")),
		// x-api-key is the header the Messages API documents for keys and
		// the one the existing deployment (and compatible gateways) use;
		// the SDK's WithAPIKey sends an Authorization bearer instead.
		option.WithHeader("x-api-key", opts.APIKey),
		option.WithHeader("anthropic-version", opts.Version),
		option.WithHTTPClient(p.hc),
		option.WithMaxRetries(0), // our policy retries, with our budget
		option.WithRequestTimeout(opts.Timeout),
		// No spans: an ambient ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE
		// could otherwise put the user's text in traces.
		option.WithoutOpenTelemetry(),
	)

	p.bodyPrefix, p.bodySuffix = bodyTemplate(opts.Model)
	return p
}

// userMarker stands for the user message in the body template. It is plain
// ASCII so every JSON encoder writes it verbatim between two quotes.
const userMarker = "OFFLOAD_USER_MESSAGE_9b3f27c1"

// bodyTemplate marshals the Messages request with the SDK's own types and
// encoder, once, and splits it around the user message, as package openai
// does: the constant prompt is not re-encoded on every call.
func bodyTemplate(model string) (prefix, suffix []byte) {
	params := sdk.MessageNewParams{
		Model:     sdk.Model(model),
		MaxTokens: maxTokens,
		System:    []sdk.TextBlockParam{{Text: offload.SystemPrompt}},
		Messages:  []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock(userMarker))},
	}
	body, err := params.MarshalJSON()
	quoted := []byte(`"` + userMarker + `"`)
	i := bytes.Index(body, quoted)
	if err != nil || i < 0 || bytes.Count(body, quoted) != 1 {
		// Only a broken SDK or a model name containing the marker gets
		// here; neither can be served correctly.
		panic("anthropic: cannot build the request body template")
	}
	return body[:i:i], body[i+len(quoted):]
}

// Name implements offload.Provider.
func (p *Provider) Name() string { return ProviderName }

// Generate asks the model for a breakdown of req.
//
// Attempts: at most Retry.MaxAttempts, each bounded by Timeout. Timeouts,
// transport errors, 429 and 5xx (529 overloaded included) are retried after
// a backoff while the total sleep stays within MaxTotalDelay (see
// offload.RetryPolicy.NextDelay); other 4xx and invalid answers are not. The
// final error maps to the contract codes: last failure a timeout →
// ProviderTimeout, invalid answer → ProviderInvalidResponse, anything else →
// ProviderRequestFailed. Status is the last attempt's upstream status.
//
// When ctx ends (the client went away), Generate stops at once and returns a
// ProviderError of class "canceled" (or "deadline" when ctx's own deadline
// passed, mapped to ProviderTimeout) that also wraps ctx.Err(), so
// errors.Is(err, context.Canceled) holds.
func (p *Provider) Generate(ctx context.Context, req offload.BreakdownRequest) (offload.Breakdown, error) {
	if p.opts.APIKey == "" {
		return offload.Breakdown{}, &offload.ProviderError{Failure: offload.ProviderUnavailable, Class: classNoAPIKey, Provider: ProviderName}
	}
	body := p.requestBody(req)
	log := p.opts.Logger

	var slept time.Duration
	for attempt := 1; ; attempt++ {
		out, f := p.attempt(ctx, body)
		if f == nil {
			if attempt > 1 {
				log.LogAttrs(ctx, slog.LevelInfo, "provider_retry_recovered",
					slog.String("provider", ProviderName), slog.Int("attempts", attempt))
			}
			out.Attempts = attempt
			return out, nil
		}
		if f.class == classCanceled || f.class == classDeadline {
			return offload.Breakdown{}, offload.ProviderCanceled(ctx, ProviderName, f.class, attempt)
		}
		retry := f.retryable && attempt < p.opts.Retry.MaxAttempts
		var d time.Duration
		if retry {
			d, retry = p.opts.Retry.NextDelay(attempt, p.opts.Rand(), slept, f.retryAfter)
		}
		if !retry {
			// Only a failure after retrying, or a retryable one that we stop
			// retrying, is a "retries ended" event; a first-attempt 400 or
			// invalid answer is not a retry story.
			if f.retryable || attempt > 1 {
				log.LogAttrs(ctx, slog.LevelWarn, "provider_retry_terminal",
					slog.String("provider", ProviderName), slog.Int("attempts", attempt),
					slog.String("error_class", f.class))
			}
			return offload.Breakdown{}, &offload.ProviderError{
				Failure: f.failure, Class: f.class, Attempts: attempt, Status: f.status, Provider: ProviderName,
			}
		}
		if err := p.opts.Sleep(ctx, d); err != nil || ctx.Err() != nil {
			return offload.Breakdown{}, offload.ProviderCanceled(ctx, ProviderName, classCanceled, attempt)
		}
		slept += d
	}
}

// failure is one failed attempt.
type failure struct {
	failure    offload.ProviderFailure
	class      string
	status     int // upstream error status; 0 for none or an unusable 2xx, as offload.ProviderError documents
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

// message is the part of a Messages API answer the adapter reads. Decoding
// into it (instead of the SDK's full Message) skips the SDK's reflective
// decoder, and nothing else of the answer is looked at.
type message struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	StopReason string `json:"stop_reason"`
	Usage      struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
	} `json:"usage"`
}

func (p *Provider) attempt(ctx context.Context, body []byte) (offload.Breakdown, *failure) {
	actx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	var (
		res *http.Response
		out message
	)
	// Empty params: the body comes pre-encoded (WithRequestBody) and the
	// answer is decoded into out (WithResponseBodyInto).
	_, err := p.messages.New(actx, sdk.MessageNewParams{},
		option.WithRequestBody("application/json", body),
		option.WithResponseBodyInto(&out),
		option.WithResponseInto(&res))
	if err != nil {
		return offload.Breakdown{}, classify(ctx, actx, res, err)
	}
	return answer(&out)
}

// classify turns an SDK error into a failure without looking at its text:
// the SDK's Error keeps the upstream body, which may echo the prompt.
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
	// Transport errors come before the 2xx check: a connection reset or a
	// truncated body while reading a 200 is a transport failure (retried),
	// not an invalid answer. A header block over upstream.MaxHeaderBytes is
	// one too (net/http fails the round trip).
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

func answer(m *message) (offload.Breakdown, *failure) {
	invalid := func(class string) (offload.Breakdown, *failure) {
		return offload.Breakdown{}, &failure{failure: offload.ProviderInvalidResponse, class: class}
	}
	if m.StopReason == "refusal" {
		return invalid(classRefusal)
	}
	// The plan is the text blocks, joined; any other block (thinking,
	// tool_use) is not asked for and is ignored.
	var text []byte
	for _, c := range m.Content {
		if c.Type == "text" {
			text = append(text, c.Text...)
		}
	}
	if len(bytes.TrimSpace(text)) == 0 {
		return invalid(classEmpty)
	}
	steps, err := offload.ParseSteps(planJSON(text))
	if err != nil {
		if m.StopReason == "max_tokens" {
			return invalid(classTruncated)
		}
		return invalid(classParse)
	}
	return offload.Breakdown{
		Steps: steps,
		Usage: offload.TokenUsage{
			InputTokens:  offload.TokenCount(m.Usage.InputTokens),
			OutputTokens: offload.TokenCount(m.Usage.OutputTokens),
		},
	}, nil
}
