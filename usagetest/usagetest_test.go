package usagetest_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/usagetest"
)

var (
	_ offload.UsageStore  = (*memStore)(nil)
	_ offload.UsageCopier = (*memStore)(nil)
)

type key struct{ id, feature string }

type row struct {
	count   int64
	updated time.Time
}

// memBacking is the storage several memStores share, like one database file.
type memBacking struct {
	mu   sync.Mutex
	rows map[key]row
	cap  int
}

// memStore is the simplest correct UsageStore. The suite runs on it to show
// that it asks for nothing a store of another kind cannot do.
type memStore struct {
	b      *memBacking
	mu     sync.Mutex
	closed bool
}

var errRange = errors.New("mem: count out of range")

func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

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

// features is how many rows id has; b.mu is held.
func (b *memBacking) features(id string) int {
	n := 0
	for k := range b.rows {
		if k.id == id {
			n++
		}
	}
	return n
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
	k := key{id, feature}
	r, ok := s.b.rows[k]
	if !ok && s.b.features(id) >= s.b.cap {
		return 0, offload.ErrFeatureLimit
	}
	s.b.rows[k] = row{max(r.count, n), now()}
	return s.b.rows[k].count, nil
}

func (s *memStore) Increment(ctx context.Context, id, feature string) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	k := key{id, feature}
	r := s.b.rows[k]
	if r.count == math.MaxInt64 {
		return 0, errRange
	}
	s.b.rows[k] = row{r.count + 1, now()}
	return r.count + 1, nil
}

func (s *memStore) Reserve(ctx context.Context, id, feature string, quota int64) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	k := key{id, feature}
	r := s.b.rows[k]
	if r.count >= quota {
		return 0, offload.ErrQuotaExceeded
	}
	s.b.rows[k] = row{r.count + 1, now()}
	return r.count + 1, nil
}

func (s *memStore) Release(ctx context.Context, id, feature string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	k := key{id, feature}
	if r, ok := s.b.rows[k]; ok && r.count > 0 {
		s.b.rows[k] = row{r.count - 1, now()}
	}
	return nil
}

func (s *memStore) Count(ctx context.Context, id, feature string) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.b.rows[key{id, feature}].count, nil
}

func (s *memStore) Erase(ctx context.Context, id string) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	var n int64
	for k := range s.b.rows {
		if k.id == id {
			delete(s.b.rows, k)
			n++
		}
	}
	return n, nil
}

func (s *memStore) Expire(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	var n int64
	for k, r := range s.b.rows {
		if n >= int64(limit) {
			break
		}
		if r.updated.Before(before.Truncate(time.Second)) {
			delete(s.b.rows, k)
			n++
		}
	}
	return n, nil
}

func (s *memStore) Check(ctx context.Context) error { return s.check(ctx) }

func (s *memStore) EachRow(ctx context.Context, fn func(offload.UsageRow) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	s.b.mu.Lock()
	var out []offload.UsageRow
	for k, r := range s.b.rows {
		out = append(out, offload.UsageRow{InstallID: k.id, Feature: k.feature, Count: r.count, UpdatedAt: r.updated})
	}
	s.b.mu.Unlock()
	slices.SortFunc(out, func(a, b offload.UsageRow) int {
		return cmp.Or(cmp.Compare(a.InstallID, b.InstallID), cmp.Compare(a.Feature, b.Feature))
	})
	for _, r := range out {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) MergeRows(ctx context.Context, rows []offload.UsageRow) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Count < 0 {
			return errRange
		}
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	for _, r := range rows {
		k := key{r.InstallID, r.Feature}
		old := s.b.rows[k]
		t := r.UpdatedAt.UTC().Truncate(time.Second)
		if old.updated.After(t) {
			t = old.updated
		}
		s.b.rows[k] = row{max(old.count, r.Count), t}
	}
	return nil
}

func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func TestSuiteOnReferenceStore(t *testing.T) {
	for _, limit := range []int{2, 4} {
		t.Run(fmt.Sprintf("cap=%d", limit), func(t *testing.T) {
			usagetest.Run(t, limit, func(t *testing.T) func() offload.UsageStore {
				b := &memBacking{rows: map[key]row{}, cap: limit}
				return func() offload.UsageStore { return &memStore{b: b} }
			})
		})
	}
}
