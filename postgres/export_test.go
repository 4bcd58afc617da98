package postgres

import "context"

// Hooks for the tests of package postgres_test.

// WithBatchHook calls hook in a writer before each reconcile group with its
// size.
func WithBatchHook(hook func(size int)) Option {
	return func(c *config) { c.batchHook = hook }
}

// Total is the sum of an install's counts; the conformance suite of this
// snapshot reads it until it moves to Count.
func (s *Store) Total(ctx context.Context, installID string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	var n int64
	// numeric sum, capped: the suite expects saturation at math.MaxInt64.
	err := s.pool.QueryRow(ctx, `SELECT least(coalesce(sum(count), 0), 9223372036854775807)::int8 FROM usage_counts WHERE install_id = $1`, installID).Scan(&n)
	if err != nil {
		return 0, callErr(ctx, "read", err)
	}
	return n, nil
}

// Queued is how many reconciles wait in the queue.
func (s *Store) Queued() int { return len(s.reqs) }
