package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-app/offload"
)

// stub is a scripted provider. Each call takes the next result of script
// (the last one repeats); fn, when set, answers instead.
type stub struct {
	name string
	fn   func(ctx context.Context) (offload.Breakdown, error)

	mu        sync.Mutex
	script    []result
	calls     int
	deadlines []time.Time
}

type result struct {
	out offload.Breakdown
	err error
}

func (s *stub) Name() string { return s.name }

func (s *stub) Generate(ctx context.Context, _ offload.BreakdownRequest) (offload.Breakdown, error) {
	s.mu.Lock()
	s.calls++
	d, _ := ctx.Deadline()
	s.deadlines = append(s.deadlines, d)
	var r result
	if len(s.script) > 0 {
		r = s.script[0]
		if len(s.script) > 1 {
			s.script = s.script[1:]
		}
	}
	fn := s.fn
	s.mu.Unlock()
	if fn != nil {
		return fn(ctx)
	}
	return r.out, r.err
}

func (s *stub) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// then replaces the script.
func (s *stub) then(rs ...result) {
	s.mu.Lock()
	s.script = rs
	s.mu.Unlock()
}

func answers(name string) *stub {
	return &stub{name: name, script: []result{{out: plan(name)}}}
}

func fails(name string, err error) *stub {
	return &stub{name: name, script: []result{{err: err}}}
}

// plan is an answer whose title says who gave it.
func plan(from string) offload.Breakdown {
	return offload.Breakdown{
		Steps:    []offload.Step{{Title: "from " + from, Substeps: []offload.Step{}}},
		Usage:    offload.TokenUsage{InputTokens: 10, OutputTokens: 5},
		Attempts: 1,
	}
}

func perr(f offload.ProviderFailure, class string, status int) *offload.ProviderError {
	return &offload.ProviderError{Failure: f, Class: class, Status: status, Attempts: 3}
}

var (
	errTimeout   = perr(offload.ProviderTimeout, "timeout", 0)
	errTransport = perr(offload.ProviderRequestFailed, "transport", 0)
	err429       = perr(offload.ProviderRequestFailed, "status_429", 429)
	err500       = perr(offload.ProviderRequestFailed, "status_500", 500)
	err529       = perr(offload.ProviderRequestFailed, "status_529", 529)
	errParse     = perr(offload.ProviderInvalidResponse, "parse", 0)
	errNoKey     = &offload.ProviderError{Failure: offload.ProviderUnavailable, Class: "no_api_key"}
	err400       = &offload.ProviderError{Failure: offload.ProviderRequestFailed, Class: "status_400", Status: 400, Attempts: 1}
	err401       = &offload.ProviderError{Failure: offload.ProviderRequestFailed, Class: "status_401", Status: 401, Attempts: 1}
	err404       = &offload.ProviderError{Failure: offload.ProviderRequestFailed, Class: "status_404", Status: 404, Attempts: 1}
	err422       = &offload.ProviderError{Failure: offload.ProviderRequestFailed, Class: "status_422", Status: 422, Attempts: 1}
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// metrics records the chain's observations.
type metrics struct {
	offload.NopMetrics
	mu      sync.Mutex
	calls   []call
	breaker []string // "name=open" / "name=closed"
}

type call struct {
	Provider, Outcome string
	Attempts          int
	Usage             offload.TokenUsage
}

func (m *metrics) ProviderCall(provider, outcome string, attempts int, _ time.Duration, usage offload.TokenUsage) {
	m.mu.Lock()
	m.calls = append(m.calls, call{provider, outcome, attempts, usage})
	m.mu.Unlock()
}

func (m *metrics) BreakerOpen(provider string, open bool) {
	m.mu.Lock()
	state := "closed"
	if open {
		state = "open"
	}
	m.breaker = append(m.breaker, provider+"="+state)
	m.mu.Unlock()
}

// take returns and forgets the observations so far.
func (m *metrics) take() ([]call, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, b := m.calls, m.breaker
	m.calls, m.breaker = nil, nil
	return c, b
}

type harness struct {
	chain   *Chain
	clock   *fakeClock
	metrics *metrics
	logs    *bytes.Buffer
}

func newChain(t *testing.T, ps ...offload.Provider) *harness {
	t.Helper()
	h := &harness{clock: newClock(), metrics: &metrics{}, logs: &bytes.Buffer{}}
	c, err := New(ps, Options{
		Clock:   h.clock,
		Metrics: h.metrics,
		Logger:  slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.chain = c
	return h
}

func (h *harness) generate(t *testing.T) (offload.Breakdown, error) {
	t.Helper()
	return h.chain.Generate(context.Background(), offload.BreakdownRequest{InputText: "x", Granularity: 3})
}

func (h *harness) logLines(t *testing.T) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(h.logs.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func providerError(t *testing.T, err error) *offload.ProviderError {
	t.Helper()
	var pe *offload.ProviderError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *offload.ProviderError", err, err)
	}
	return pe
}

func TestWhichFailuresFailOver(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		failOver bool
		outcome  string
	}{
		{"timeout", errTimeout, true, "timeout"},
		{"transport", errTransport, true, "transport"},
		{"429", err429, true, "status_429"},
		{"500", err500, true, "status_500"},
		{"529 overloaded", err529, true, "status_529"},
		{"unusable answer", errParse, true, "parse"},
		{"no key", errNoKey, true, "no_api_key"},
		{"not a ProviderError", errors.New("boom"), true, "error"},
		{"ProviderError without class", &offload.ProviderError{Failure: offload.ProviderRequestFailed}, true, "error"},
		{"400 refused", err400, false, "status_400"},
		{"401 refused", err401, false, "status_401"},
		{"404 refused", err404, false, "status_404"},
		{"422 refused", err422, false, "status_422"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, second := fails("first", tt.err), answers("second")
			h := newChain(t, first, second)
			out, err := h.generate(t)
			calls, _ := h.metrics.take()
			if first.Calls() != 1 {
				t.Fatalf("first called %d times", first.Calls())
			}
			if tt.failOver {
				if err != nil || out.Provider != "second" || out.Steps[0].Title != "from second" || second.Calls() != 1 {
					t.Fatalf("want the second's answer, got %+v, %v (second called %d)", out, err, second.Calls())
				}
				want := []call{{"first", tt.outcome, callAttempts(tt.err), offload.TokenUsage{}}, {"second", "ok", 1, offload.TokenUsage{InputTokens: 10, OutputTokens: 5}}}
				if !reflect.DeepEqual(calls, want) {
					t.Errorf("metrics = %+v, want %+v", calls, want)
				}
				return
			}
			if second.Calls() != 0 {
				t.Fatalf("a refused request went to the second provider")
			}
			pe := providerError(t, err)
			if pe.Provider != "first" || pe.Status != tt.err.(*offload.ProviderError).Status || !pe.Refused() {
				t.Errorf("error = %+v", pe)
			}
			if offload.ErrorCode(err) != offload.CodeProviderRequestFailed {
				t.Errorf("code = %q", offload.ErrorCode(err))
			}
			if want := []call{{"first", tt.outcome, 1, offload.TokenUsage{}}}; !reflect.DeepEqual(calls, want) {
				t.Errorf("metrics = %+v, want %+v", calls, want)
			}
		})
	}
}

func callAttempts(err error) int {
	var pe *offload.ProviderError
	if errors.As(err, &pe) {
		return pe.Attempts
	}
	return 0
}

// When every provider fails, the last one's error decides the answer.
func TestAllFailLastDecides(t *testing.T) {
	tests := []struct {
		name     string
		errs     []error
		wantCode string
		wantLast string
	}{
		{"timeout then 503", []error{errTimeout, err500}, offload.CodeProviderRequestFailed, "b"},
		{"503 then timeout", []error{err500, errTimeout}, offload.CodeProviderTimeout, "b"},
		{"429 then no key", []error{err429, errNoKey}, offload.CodeProviderUnavailable, "b"},
		{"three, parse last", []error{errTimeout, errNoKey, errParse}, offload.CodeProviderInvalidResponse, "c"},
		{"refused in the middle", []error{err500, err400, errTimeout}, offload.CodeProviderRequestFailed, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps []offload.Provider
			for i, e := range tt.errs {
				ps = append(ps, fails(string(rune('a'+i)), e))
			}
			h := newChain(t, ps...)
			_, err := h.generate(t)
			if offload.ErrorCode(err) != tt.wantCode || providerError(t, err).Provider != tt.wantLast {
				t.Errorf("err %v from %q, want %s from %q", err, providerError(t, err).Provider, tt.wantCode, tt.wantLast)
			}
		})
	}
}

// The chain never gives a provider more time than the caller's ctx has
// left, and a first provider that spends it all leaves the second untried.
func TestBudgetKept(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	want, _ := ctx.Deadline()
	slow := &stub{name: "slow", fn: func(ctx context.Context) (offload.Breakdown, error) {
		<-ctx.Done() // spends the whole budget, as a hanging upstream does
		return offload.Breakdown{}, &offload.ProviderError{Failure: offload.ProviderTimeout, Class: "deadline", Attempts: 2}
	}}
	next := answers("next")
	h := newChain(t, slow, next)
	start := time.Now()
	_, err := h.chain.Generate(ctx, offload.BreakdownRequest{})
	if time.Since(start) > 5*time.Second {
		t.Fatal("the chain outlived the caller's deadline")
	}
	if next.Calls() != 0 {
		t.Errorf("the second provider was called past the deadline")
	}
	if offload.ErrorCode(err) != offload.CodeProviderTimeout || providerError(t, err).Provider != "slow" {
		t.Errorf("err = %v", err)
	}
	if got := slow.deadlines[0]; !got.Equal(want) {
		t.Errorf("first provider's deadline %v, want the caller's %v", got, want)
	}
	// The provider that ran out of the caller's time is not blamed.
	if h.chain.BreakerOpen("slow") || slow.Calls() != 1 {
		t.Error("breaker state changed")
	}
	for range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _ = h.chain.Generate(ctx, offload.BreakdownRequest{})
	}
	if h.chain.BreakerOpen("slow") {
		t.Error("calls the caller abandoned opened the breaker")
	}

	// A first provider that fails in time leaves the rest of the same
	// deadline, never a new one, to the second.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	want2, _ := ctx2.Deadline()
	first, second := fails("first", err529), answers("second")
	h = newChain(t, first, second)
	if _, err := h.chain.Generate(ctx2, offload.BreakdownRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(second.deadlines) != 1 || !second.deadlines[0].Equal(want2) {
		t.Errorf("second provider's deadline %v, want the caller's %v", second.deadlines, want2)
	}
}

// A caller that leaves stops the chain at once, with the provider's error
// (which wraps context.Canceled).
func TestCallerGoneStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	first := &stub{name: "first", fn: func(ctx context.Context) (offload.Breakdown, error) {
		cancel()
		return offload.Breakdown{}, errors.Join(&offload.ProviderError{Failure: offload.ProviderRequestFailed, Class: "canceled", Attempts: 1}, context.Canceled)
	}}
	second := answers("second")
	h := newChain(t, first, second)
	_, err := h.chain.Generate(ctx, offload.BreakdownRequest{})
	if !errors.Is(err, context.Canceled) || second.Calls() != 0 || providerError(t, err).Provider != "first" {
		t.Errorf("err %v, second called %d", err, second.Calls())
	}
	// A provider that returns ctx.Err() bare (package local) is passed on.
	h = newChain(t, localLike{}, answers("second"))
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := h.chain.Generate(ctx, offload.BreakdownRequest{}); err != context.Canceled {
		t.Errorf("err = %v, want context.Canceled as is", err)
	}
	if calls, _ := h.metrics.take(); len(calls) != 1 || calls[0].Outcome != "canceled" {
		t.Errorf("metrics = %+v", calls)
	}
}

type localLike struct{}

func (localLike) Name() string { return "local" }
func (localLike) Generate(ctx context.Context, _ offload.BreakdownRequest) (offload.Breakdown, error) {
	if err := ctx.Err(); err != nil {
		return offload.Breakdown{}, err
	}
	return plan("local"), nil
}

func TestBreakerTransitions(t *testing.T) {
	a, b := fails("a", err500), answers("b")
	h := newChain(t, a, b)
	req := func() string {
		t.Helper()
		out, err := h.generate(t)
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		return out.Provider
	}

	// Closed: four failures, then a success, reset the run.
	for range 4 {
		req()
	}
	a.then(result{out: plan("a")})
	if got := req(); got != "a" {
		t.Fatalf("answered by %q", got)
	}
	a.then(result{err: err500})
	for range 4 {
		req()
	}
	// A refused request proves the provider is up: it resets the run too.
	a.then(result{err: err400}, result{err: err500})
	if _, err := h.generate(t); providerError(t, err).Status != 400 {
		t.Fatalf("err = %v", err)
	}
	for range 4 {
		req()
	}
	if h.chain.BreakerOpen("a") {
		t.Fatal("opened before 5 consecutive failures")
	}
	h.metrics.take()

	// The fifth consecutive failure opens it.
	req()
	calls, br := h.metrics.take()
	if !reflect.DeepEqual(br, []string{"a=open"}) || !h.chain.BreakerOpen("a") {
		t.Fatalf("breaker metrics %v", br)
	}
	if len(calls) != 2 || calls[0].Outcome != "status_500" {
		t.Errorf("calls = %+v", calls)
	}
	open := linesWith(h.logLines(t), "provider_breaker_open")
	if len(open) != 1 || open[0]["provider"] != "a" || open[0]["cooldown_seconds"] != float64(30) {
		t.Errorf("open lines = %v", open)
	}

	// Open: skipped for the whole cooldown.
	callsBefore := a.Calls()
	for _, step := range []time.Duration{0, time.Second, 28 * time.Second} {
		h.clock.Advance(step)
		if got := req(); got != "b" {
			t.Fatalf("answered by %q", got)
		}
	}
	if a.Calls() != callsBefore {
		t.Fatalf("an open breaker let %d calls through", a.Calls()-callsBefore)
	}
	calls, _ = h.metrics.take()
	if len(calls) != 6 || calls[0] != (call{Provider: "a", Outcome: "skipped_open_breaker"}) || calls[1].Provider != "b" {
		t.Errorf("calls = %+v", calls)
	}

	// Half-open at the end of the cooldown: one probe; it fails, so the
	// breaker opens for another cooldown.
	h.clock.Advance(time.Second)
	req()
	if a.Calls() != callsBefore+1 {
		t.Fatalf("no probe after the cooldown")
	}
	if _, br := h.metrics.take(); len(br) != 0 {
		t.Errorf("a failed probe is no gauge change: %v", br)
	}
	if len(linesWith(h.logLines(t), "provider_breaker_reopened")) != 1 {
		t.Error("no reopened line")
	}
	h.clock.Advance(29 * time.Second)
	req()
	if a.Calls() != callsBefore+1 {
		t.Fatal("a failed probe did not restart the cooldown")
	}

	// The next probe succeeds: closed again, and a serves.
	h.clock.Advance(time.Second)
	a.then(result{out: plan("a")})
	if got := req(); got != "a" {
		t.Fatalf("probe answered by %q", got)
	}
	if _, br := h.metrics.take(); !reflect.DeepEqual(br, []string{"a=closed"}) || h.chain.BreakerOpen("a") {
		t.Errorf("breaker metrics %v", br)
	}
	if got := req(); got != "a" {
		t.Fatalf("answered by %q after closing", got)
	}
	if len(linesWith(h.logLines(t), "provider_breaker_closed")) != 1 {
		t.Error("no closed line")
	}
}

// While the half-open probe is in flight, other requests skip the provider.
func TestHalfOpenOneProbe(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	var mu sync.Mutex
	failing := true
	a := &stub{name: "a", fn: func(ctx context.Context) (offload.Breakdown, error) {
		mu.Lock()
		f := failing
		mu.Unlock()
		if f {
			return offload.Breakdown{}, errTransport
		}
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return plan("a"), nil
	}}
	b := answers("b")
	h := newChain(t, a, b)
	for range 5 {
		h.generate(t)
	}
	if !h.chain.BreakerOpen("a") {
		t.Fatal("not open")
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	h.clock.Advance(DefaultCooldown)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	probe := make(chan offload.Breakdown, 1)
	go func() {
		out, _ := h.chain.Generate(ctx, offload.BreakdownRequest{})
		probe <- out
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("no probe")
	}
	for range 3 {
		out, err := h.generate(t)
		if err != nil || out.Provider != "b" {
			t.Fatalf("during the probe: %+v, %v", out, err)
		}
	}
	close(release)
	select {
	case out := <-probe:
		if out.Provider != "a" {
			t.Errorf("probe answered by %q", out.Provider)
		}
	case <-ctx.Done():
		t.Fatal("probe did not return")
	}
	if h.chain.BreakerOpen("a") || a.Calls() != 6 {
		t.Errorf("open %v, calls %d", h.chain.BreakerOpen("a"), a.Calls())
	}
}

// A probe the caller abandons proves nothing: the next request probes.
func TestAbandonedProbeReleased(t *testing.T) {
	a, b := fails("a", err500), answers("b")
	h := newChain(t, a, b)
	for range 5 {
		h.generate(t)
	}
	h.clock.Advance(DefaultCooldown)
	ctx, cancel := context.WithCancel(context.Background())
	a.fn = func(context.Context) (offload.Breakdown, error) {
		cancel()
		return offload.Breakdown{}, errors.Join(&offload.ProviderError{Failure: offload.ProviderRequestFailed, Class: "canceled"}, context.Canceled)
	}
	_, _ = h.chain.Generate(ctx, offload.BreakdownRequest{})
	a.fn = nil
	a.then(result{out: plan("a")})
	if out, err := h.generate(t); err != nil || out.Provider != "a" {
		t.Errorf("the next request did not probe: %+v, %v", out, err)
	}
}

// The last provider is tried even when its breaker is open, so a chain of
// one behaves as the provider alone, and its success closes the breaker.
func TestLastProviderAlwaysTried(t *testing.T) {
	only := fails("only", err529)
	h := newChain(t, only)
	for i := range 12 {
		_, err := h.generate(t)
		if !errors.Is(err, err529) || providerError(t, err).Provider != "only" || only.Calls() != i+1 {
			t.Fatalf("request %d: err %v, want the provider's own; calls %d", i+1, err, only.Calls())
		}
	}
	calls, br := h.metrics.take()
	if !reflect.DeepEqual(br, []string{"only=open"}) || len(calls) != 12 {
		t.Errorf("breaker %v, %d calls", br, len(calls))
	}
	for _, c := range calls {
		if c.Outcome != "status_529" {
			t.Errorf("outcome %q", c.Outcome)
		}
	}
	if len(linesWith(h.logLines(t), "provider_failover")) != 0 {
		t.Error("a chain of one has nothing to fail over to")
	}
	only.then(result{out: plan("only")})
	if out, err := h.generate(t); err != nil || out.Provider != "only" {
		t.Fatalf("%+v, %v", out, err)
	}
	if _, br := h.metrics.take(); !reflect.DeepEqual(br, []string{"only=closed"}) {
		t.Errorf("breaker %v", br)
	}

	// Two providers, both open: the first is skipped, the last tried.
	a, b := fails("a", errTimeout), fails("b", errTimeout)
	h = newChain(t, a, b)
	for range 5 {
		h.generate(t)
	}
	_, err := h.generate(t)
	if a.Calls() != 5 || b.Calls() != 6 || providerError(t, err).Provider != "b" {
		t.Errorf("calls a=%d b=%d, err %v", a.Calls(), b.Calls(), err)
	}
}

// A chain of one returns exactly what the provider does.
func TestSingleProviderIsItself(t *testing.T) {
	canceledErr := errors.Join(&offload.ProviderError{Failure: offload.ProviderRequestFailed, Class: "canceled", Provider: "p"}, context.Canceled)
	for _, r := range []result{
		{out: plan("p")},
		{out: offload.Breakdown{Steps: plan("p").Steps, Provider: "inner"}},
		{err: err500}, {err: err400}, {err: errNoKey}, {err: canceledErr}, {err: errors.New("boom")},
	} {
		p := &stub{name: "p", script: []result{r}}
		h := newChain(t, p)
		if h.chain.Name() != "p" {
			t.Fatalf("Name = %q", h.chain.Name())
		}
		out, err := h.generate(t)
		wantOut := r.out
		if r.err == nil && wantOut.Provider == "" {
			wantOut.Provider = "p"
		}
		if !reflect.DeepEqual(out, wantOut) || offload.ErrorCode(err) != offload.ErrorCode(r.err) ||
			errors.Is(err, context.Canceled) != errors.Is(r.err, context.Canceled) {
			t.Errorf("%v: got %+v, %v", r.err, out, err)
		}
		var got, want *offload.ProviderError
		if errors.As(r.err, &want) {
			errors.As(err, &got)
			w := *want
			w.Provider = "p"
			if got == nil || *got != w {
				t.Errorf("error %+v, want %+v", got, w)
			}
		}
	}
}

func TestName(t *testing.T) {
	h := newChain(t, answers("openai"), answers("anthropic"), localLike{})
	if h.chain.Name() != "openai,anthropic,local" {
		t.Errorf("Name = %q", h.chain.Name())
	}
	// A nested chain's answer keeps the inner provider's name.
	inner := newChain(t, fails("x", err500), answers("y"))
	outer := newChain(t, inner.chain, answers("z"))
	if out, err := outer.generate(t); err != nil || out.Provider != "y" {
		t.Errorf("%+v, %v", out, err)
	}
	inner2 := newChain(t, fails("x", err500), fails("y", err500))
	outer2 := newChain(t, inner2.chain, fails("z", err400))
	if _, err := outer2.generate(t); providerError(t, err).Provider != "z" {
		t.Errorf("err = %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		ps   []offload.Provider
		opts Options
	}{
		{"empty", nil, Options{}},
		{"nil provider", []offload.Provider{answers("a"), nil}, Options{}},
		{"duplicate", []offload.Provider{answers("a"), answers("a")}, Options{}},
		{"threshold over 5", []offload.Provider{answers("a")}, Options{Threshold: 6}},
		{"negative threshold", []offload.Provider{answers("a")}, Options{Threshold: -1}},
		{"negative cooldown", []offload.Provider{answers("a")}, Options{Cooldown: -time.Second}},
	}
	for _, tt := range tests {
		if _, err := New(tt.ps, tt.opts); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	c, err := New([]offload.Provider{answers("a")}, Options{})
	if err != nil || c.members[0].br.threshold != 5 || c.members[0].br.cooldown != 30*time.Second {
		t.Errorf("defaults: %v", err)
	}
	if _, err := c.Generate(context.Background(), offload.BreakdownRequest{}); err != nil {
		t.Errorf("with default clock, metrics and logger: %v", err)
	}
}

func TestThresholdOption(t *testing.T) {
	a := fails("a", err500)
	c, err := New([]offload.Provider{a, answers("b")}, Options{Threshold: 2, Cooldown: time.Minute, Clock: newClock()})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		_, _ = c.Generate(context.Background(), offload.BreakdownRequest{})
	}
	if a.Calls() != 2 {
		t.Errorf("calls = %d, want 2 before the breaker opened", a.Calls())
	}
}

// Log lines name the provider and the outcome only.
func TestLogLinesContentFree(t *testing.T) {
	canary := "CANARY-CHAIN-INPUT-5e1a"
	a, b := fails("a", err429), answers("b")
	h := newChain(t, a, b)
	for range 6 {
		if _, err := h.chain.Generate(context.Background(), offload.BreakdownRequest{InputText: canary, ContextHints: []string{canary}}); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(h.logs.String(), canary) {
		t.Fatalf("canary in logs: %s", h.logs.String())
	}
	allowed := map[string]bool{"time": true, "level": true, "msg": true, "provider": true, "outcome": true,
		"attempts": true, "failures": true, "cooldown_seconds": true}
	lines := h.logLines(t)
	if len(linesWith(lines, "provider_failover")) != 5 || len(linesWith(lines, "provider_skipped")) != 1 {
		t.Errorf("lines = %v", lines)
	}
	for _, l := range lines {
		for k := range l {
			if !allowed[k] {
				t.Errorf("log key %q in %v", k, l)
			}
		}
		if l["msg"] == "provider_failover" && (l["provider"] != "a" || l["outcome"] != "status_429" || l["attempts"] != float64(3)) {
			t.Errorf("failover line %v", l)
		}
	}
}

func TestConcurrentChain(t *testing.T) {
	var n int
	var mu sync.Mutex
	flaky := &stub{name: "flaky", fn: func(context.Context) (offload.Breakdown, error) {
		mu.Lock()
		n++
		odd := n%2 == 1
		mu.Unlock()
		if odd {
			return offload.Breakdown{}, err500
		}
		return plan("flaky"), nil
	}}
	h := newChain(t, flaky, answers("b"))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			if _, err := h.generate(t); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func linesWith(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}
