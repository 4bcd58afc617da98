package sqlite

import (
	"context"
	"io/fs"
	"time"
)

// Fault injection for the tests of package sqlite_test.

// WithCommitFault makes every commit call fault first; when it returns an
// error, the commit fails with it instead of running. A fault that blocks
// stands in for a commit stuck in fsync.
func WithCommitFault(fault func() error) Option {
	return func(c *config) { c.commitFault = fault }
}

// WithBatchHook calls hook in the writer before each batch with its size.
func WithBatchHook(hook func(size int)) Option {
	return func(c *config) { c.batchHook = hook }
}

// WithWriterPragma runs "PRAGMA p" on the writer's connection once the
// schema is migrated.
func WithWriterPragma(p string) Option {
	return func(c *config) { c.writerPragmas = append(c.writerPragmas, p) }
}

// WithMigrations makes Open apply the migrations of fsys (a "migrations"
// folder) instead of the embedded ones.
func WithMigrations(fsys fs.FS) Option {
	return func(c *config) { c.migrations = fsys }
}

// WithWatchTicks drives the file watcher by ticks instead of a ticker. The
// watcher handles one tick before it takes the next, so once a second send
// on an unbuffered ticks has gone through, the first one's check is done.
func WithWatchTicks(ticks <-chan time.Time) Option {
	return func(c *config) { c.watchTicks = ticks }
}

// MigrationFiles are the embedded migrations.
var MigrationFiles fs.FS = migrationFiles

// Queued is how many writes wait in the queue.
func (s *Store) Queued() int { return len(s.reqs) }

// ReadPragma reads PRAGMA name on the writer connection and on n read-pool
// connections held at once (so they are n distinct connections).
// n must not exceed the read pool size.
func (s *Store) ReadPragma(name string, n int) (writer string, readers []string, err error) {
	ctx := context.Background()
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA "+name).Scan(&writer); err != nil {
		return "", nil, err
	}
	for range n {
		c, err := s.rdb.Conn(ctx)
		if err != nil {
			return "", nil, err
		}
		defer c.Close()
		var v string
		if err := c.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v); err != nil {
			return "", nil, err
		}
		readers = append(readers, v)
	}
	return writer, readers, nil
}

// WriterDone is closed once the writer goroutine has returned.
func (s *Store) WriterDone() <-chan struct{} { return s.done }

// ExpireSQL is the statement of Expire, for its query plan.
const ExpireSQL = expireSQL
