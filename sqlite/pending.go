package sqlite

import (
	"context"
	"errors"
	"time"

	"github.com/offload-app/offload"
)

// Placeholders until the store implements the full interface.

func (s *Store) Reserve(ctx context.Context, installID, feature string, quota int64) (int64, error) {
	return 0, errors.ErrUnsupported
}
func (s *Store) Release(ctx context.Context, installID, feature string) error {
	return errors.ErrUnsupported
}
func (s *Store) Count(ctx context.Context, installID, feature string) (int64, error) {
	return 0, errors.ErrUnsupported
}
func (s *Store) Erase(ctx context.Context, installID string) (int64, error) {
	return 0, errors.ErrUnsupported
}
func (s *Store) Expire(ctx context.Context, before time.Time, limit int) (int64, error) {
	return 0, errors.ErrUnsupported
}
func (s *Store) Check(ctx context.Context) error { return nil }

// WithMetrics and WithMaxFeatures are placeholders until the store has them.
func WithMetrics(m offload.Metrics) Option { return func(*config) {} }
func WithMaxFeatures(n int) Option         { return func(*config) {} }
