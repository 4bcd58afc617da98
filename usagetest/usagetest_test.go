package usagetest_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/usagetest"
)

// memBacking is the storage several memStores share, like one database file.
type memBacking struct {
	mu     sync.Mutex
	counts map[[2]string]int64
}

// memStore is the simplest correct UsageStore. The suite runs on it to show
// that it asks for nothing a store of another kind cannot do.
type memStore struct {
	b      *memBacking
	mu     sync.Mutex
	closed bool
}

var errRange = errors.New("mem: count out of range")

func (s *memStore) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return offload.ErrStorage
	}
	return nil
}

func (s *memStore) Reconcile(ctx context.Context, id, feature string, n int64) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, errRange
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	k := [2]string{id, feature}
	s.b.counts[k] = max(s.b.counts[k], n)
	return s.b.counts[k], nil
}

func (s *memStore) Increment(ctx context.Context, id, feature string) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	k := [2]string{id, feature}
	if s.b.counts[k] == math.MaxInt64 {
		return 0, errRange
	}
	s.b.counts[k]++
	return s.b.counts[k], nil
}

func (s *memStore) Total(ctx context.Context, id string) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	var total int64
	for k, n := range s.b.counts {
		if k[0] == id {
			if total > math.MaxInt64-n {
				return math.MaxInt64, nil
			}
			total += n
		}
	}
	return total, nil
}

func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func TestSuiteOnReferenceStore(t *testing.T) {
	usagetest.Run(t, func(t *testing.T) func() offload.UsageStore {
		b := &memBacking{counts: map[[2]string]int64{}}
		return func() offload.UsageStore { return &memStore{b: b} }
	})
}
