// Package failover is the ordered provider chain: it asks each provider in
// turn until one answers, failing over on what the next provider may fix
// (timeout, transport error, 429, 5xx, an unusable answer, no key) and never
// on a request the upstream refused (any other 4xx: the user's content is
// not sent to a second company for the same answer). A circuit breaker per
// provider skips one that keeps failing, for a cooldown, then lets one
// request probe it.
//
// The breaker only reorders: the last provider is always tried, so a chain
// of one provider behaves exactly as that provider alone. The whole chain
// runs within the caller's ctx: each provider gets what remains of it.
//
// Privacy: log lines and metrics name the provider and a content-free
// outcome class, never the request, an answer or an upstream body.
package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/offload-app/offload"
)

// Defaults of Options.
const (
	DefaultCooldown  = 30 * time.Second
	DefaultThreshold = 5
	// MaxThreshold bounds Threshold: the contract opens a breaker after at
	// most five consecutive failed requests.
	MaxThreshold = 5
)

// Outcome labels of Metrics.ProviderCall besides the providers' own
// ProviderError classes ("timeout", "status_429", "parse", …).
const (
	OutcomeOK      = "ok"
	OutcomeSkipped = "skipped_open_breaker"
	// OutcomeError labels a failure that is not a *offload.ProviderError.
	OutcomeError = "error"
)

// Options configures a Chain. Zero values mean the defaults.
type Options struct {
	// Cooldown is how long an open breaker skips its provider before it
	// lets one request probe it (OFFLOAD_AI_BREAKER_COOLDOWN_SECONDS).
	Cooldown time.Duration
	// Threshold is the number of consecutive failed requests that opens a
	// provider's breaker, 1 to MaxThreshold.
	Threshold int
	Clock     offload.Clock
	Metrics   offload.Metrics
	// Logger gets content-free failover and breaker lines; nil discards.
	Logger *slog.Logger
}

// Chain is an offload.Provider over an ordered list of providers. It is safe
// for concurrent use.
type Chain struct {
	name    string
	members []member
	clock   offload.Clock
	metrics offload.Metrics
	logger  *slog.Logger
}

type member struct {
	name string
	p    offload.Provider
	br   *breaker
}

var _ offload.Provider = (*Chain)(nil)

// New returns the chain of providers, tried in the order given. It fails on
// an empty list, a nil provider, two providers of one name (their breakers
// and metrics could not be told apart) or options out of bounds.
func New(providers []offload.Provider, opts Options) (*Chain, error) {
	if len(providers) == 0 {
		return nil, errors.New("failover: no provider")
	}
	if opts.Cooldown == 0 {
		opts.Cooldown = DefaultCooldown
	}
	if opts.Cooldown < 0 {
		return nil, errors.New("failover: negative cooldown")
	}
	if opts.Threshold == 0 {
		opts.Threshold = DefaultThreshold
	}
	if opts.Threshold < 1 || opts.Threshold > MaxThreshold {
		return nil, fmt.Errorf("failover: threshold %d out of 1..%d", opts.Threshold, MaxThreshold)
	}
	c := &Chain{clock: opts.Clock, metrics: opts.Metrics, logger: opts.Logger}
	if c.clock == nil {
		c.clock = offload.SystemClock{}
	}
	if c.metrics == nil {
		c.metrics = offload.NopMetrics{}
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	names := make([]string, 0, len(providers))
	for i, p := range providers {
		if p == nil {
			return nil, fmt.Errorf("failover: provider %d is nil", i+1)
		}
		name := p.Name()
		for _, n := range names {
			if n == name {
				return nil, fmt.Errorf("failover: provider %q listed twice", name)
			}
		}
		names = append(names, name)
		c.members = append(c.members, member{name: name, p: p, br: &breaker{threshold: opts.Threshold, cooldown: opts.Cooldown}})
	}
	c.name = strings.Join(names, ",")
	return c, nil
}

// Name is the providers' names joined by "," ("openai,anthropic"); for a
// chain of one, that provider's name. The provider that answered a request
// is in its Breakdown.Provider.
func (c *Chain) Name() string { return c.name }

// BreakerOpen reports whether the named provider's breaker is open or
// half-open (for a status page); false for a name not in the chain.
func (c *Chain) BreakerOpen(name string) bool {
	for _, m := range c.members {
		if m.name == name {
			return m.br.isOpen()
		}
	}
	return false
}

// verdict is what the chain does after one provider's call.
type verdict int

const (
	answered verdict = iota
	failOver         // counts against the provider; try the next
	refused          // the upstream refused the request itself; stop
	gone             // ctx ended: the caller left or the budget is spent; stop
)

// judge decides on one call's result. When ctx has ended nothing counts
// against the provider: the budget may have been spent by the providers
// before it.
func judge(ctx context.Context, err error) (verdict, string) {
	if err == nil {
		return answered, OutcomeOK
	}
	var pe *offload.ProviderError
	isPE := errors.As(err, &pe)
	outcome := OutcomeError
	if isPE && pe.Class != "" {
		outcome = pe.Class
	}
	switch {
	case ctx.Err() != nil:
		if !isPE {
			outcome = "canceled"
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				outcome = "deadline"
			}
		}
		return gone, outcome
	case isPE && pe.Refused():
		return refused, outcome
	default:
		// Timeouts, transport errors, 429, 5xx, unusable answers, no key,
		// and errors of no known kind: the next provider may do better.
		return failOver, outcome
	}
}

// Generate asks the providers in order, skipping one whose breaker is open
// unless it is the last. It returns the first answer, with
// Breakdown.Provider naming who gave it; a refused request's error at once;
// when the caller's ctx ends, that provider's error; when every provider
// failed, the last one's error. Errors are the providers' own, with
// ProviderError.Provider set.
func (c *Chain) Generate(ctx context.Context, req offload.BreakdownRequest) (offload.Breakdown, error) {
	var lastErr error
	for i, m := range c.members {
		last := i == len(c.members)-1
		if lastErr != nil && ctx.Err() != nil {
			// Out of time between two providers: the last failure stands.
			break
		}
		start := c.clock.Now()
		ok, probe := m.br.allow(start)
		if !ok && !last {
			c.metrics.ProviderCall(m.name, OutcomeSkipped, 0, 0, offload.TokenUsage{})
			c.logger.LogAttrs(ctx, slog.LevelDebug, "provider_skipped",
				slog.String("provider", m.name), slog.String("outcome", OutcomeSkipped))
			continue
		}

		out, err := m.p.Generate(ctx, req)
		end := c.clock.Now()
		v, outcome := judge(ctx, err)
		attempts := out.Attempts
		var pe *offload.ProviderError
		if errors.As(err, &pe) {
			attempts = pe.Attempts
		}
		c.metrics.ProviderCall(m.name, outcome, attempts, end.Sub(start), out.Usage)

		switch v {
		case answered:
			c.breakerChanged(ctx, m, m.br.success(probe))
			if out.Provider == "" {
				out.Provider = m.name
			}
			return out, nil
		case refused:
			// The provider is up and judged the request: not a failure.
			c.breakerChanged(ctx, m, m.br.success(probe))
			return offload.Breakdown{}, attribute(err, m.name)
		case gone:
			m.br.release(probe)
			return offload.Breakdown{}, attribute(err, m.name)
		}
		c.breakerChanged(ctx, m, m.br.failure(end, probe))
		lastErr = attribute(err, m.name)
		if !last {
			c.logger.LogAttrs(ctx, slog.LevelWarn, "provider_failover",
				slog.String("provider", m.name), slog.String("outcome", outcome), slog.Int("attempts", attempts))
		}
	}
	return offload.Breakdown{}, lastErr
}

func (c *Chain) breakerChanged(ctx context.Context, m member, t transition) {
	switch t {
	case opened:
		c.metrics.BreakerOpen(m.name, true)
		c.logger.LogAttrs(ctx, slog.LevelWarn, "provider_breaker_open",
			slog.String("provider", m.name), slog.Int("failures", m.br.threshold),
			slog.Float64("cooldown_seconds", m.br.cooldown.Seconds()))
	case reopened:
		// Still open for the gauge: it went to half-open silently.
		c.logger.LogAttrs(ctx, slog.LevelWarn, "provider_breaker_reopened", slog.String("provider", m.name))
	case closedAgain:
		c.metrics.BreakerOpen(m.name, false)
		c.logger.LogAttrs(ctx, slog.LevelInfo, "provider_breaker_closed", slog.String("provider", m.name))
	}
}

// attributed is a provider's error with ProviderError.Provider set, built
// without modifying the provider's error value (which may be shared). It
// unwraps to the attributed copy first, then to the original, so errors.As
// finds the copy and errors.Is(err, context.Canceled) still holds.
type attributed struct {
	pe  *offload.ProviderError
	err error
}

func (e *attributed) Error() string   { return e.pe.Error() }
func (e *attributed) Unwrap() []error { return []error{e.pe, e.err} }

func attribute(err error, name string) error {
	var pe *offload.ProviderError
	if !errors.As(err, &pe) || pe.Provider != "" {
		// Set already: by the adapter, or by a chain nested in this one,
		// which knows better which of its providers failed.
		return err
	}
	cp := *pe
	cp.Provider = name
	return &attributed{pe: &cp, err: err}
}
