package postgres

// Hooks for the tests of package postgres_test.

// WithBatchHook calls hook in a writer before each reconcile group with its
// size.
func WithBatchHook(hook func(size int)) Option {
	return func(c *config) { c.batchHook = hook }
}

// Queued is how many reconciles wait in the queue.
func (s *Store) Queued() int { return len(s.reqs) }
