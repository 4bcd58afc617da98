// Package mock has fakes of the domain interfaces, made of function fields,
// for tests that need to script a dependency's answers.
package mock

import (
	"context"
	"sync"
	"time"

	"github.com/offload-app/offload"
)

var (
	_ offload.Provider   = (*Provider)(nil)
	_ offload.UsageStore = (*UsageStore)(nil)
	_ offload.Clock      = (*Clock)(nil)
)

// Provider is an offload.Provider whose Generate is GenerateFn.
type Provider struct {
	ProviderName string
	GenerateFn   func(ctx context.Context, req offload.BreakdownRequest) (offload.Breakdown, error)
}

func (p *Provider) Name() string {
	if p.ProviderName == "" {
		return "mock"
	}
	return p.ProviderName
}

func (p *Provider) Generate(ctx context.Context, req offload.BreakdownRequest) (offload.Breakdown, error) {
	return p.GenerateFn(ctx, req)
}

// UsageStore is an offload.UsageStore made of function fields.
type UsageStore struct {
	ReconcileFn func(ctx context.Context, installID, feature string, localCount int64) (int64, error)
	IncrementFn func(ctx context.Context, installID, feature string) (int64, error)
	ReserveFn   func(ctx context.Context, installID, feature string, quota int64) (int64, error)
	ReleaseFn   func(ctx context.Context, installID, feature string) error
	CountFn     func(ctx context.Context, installID, feature string) (int64, error)
	EraseFn     func(ctx context.Context, installID string) (int64, error)
	ExpireFn    func(ctx context.Context, before time.Time, limit int) (int64, error)
	CheckFn     func(ctx context.Context) error
	CloseFn     func() error
}

func (s *UsageStore) Reconcile(ctx context.Context, installID, feature string, n int64) (int64, error) {
	return s.ReconcileFn(ctx, installID, feature, n)
}

func (s *UsageStore) Increment(ctx context.Context, installID, feature string) (int64, error) {
	return s.IncrementFn(ctx, installID, feature)
}

func (s *UsageStore) Reserve(ctx context.Context, installID, feature string, quota int64) (int64, error) {
	return s.ReserveFn(ctx, installID, feature, quota)
}

func (s *UsageStore) Release(ctx context.Context, installID, feature string) error {
	return s.ReleaseFn(ctx, installID, feature)
}

func (s *UsageStore) Count(ctx context.Context, installID, feature string) (int64, error) {
	return s.CountFn(ctx, installID, feature)
}

func (s *UsageStore) Erase(ctx context.Context, installID string) (int64, error) {
	return s.EraseFn(ctx, installID)
}

func (s *UsageStore) Expire(ctx context.Context, before time.Time, limit int) (int64, error) {
	return s.ExpireFn(ctx, before, limit)
}

// Check is nil-safe: a store without CheckFn is always ready.
func (s *UsageStore) Check(ctx context.Context) error {
	if s.CheckFn == nil {
		return nil
	}
	return s.CheckFn(ctx)
}

func (s *UsageStore) Close() error {
	if s.CloseFn == nil {
		return nil
	}
	return s.CloseFn()
}

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
