// Package postgres is the offload.UsageStore on PostgreSQL (pgx, pgxpool),
// for running more than one instance of the server on shared counts.
//
// Every acknowledged write is durable: Open refuses a server whose
// synchronous_commit or fsync is off (checked on every new connection), so a
// commit returns only once its WAL is flushed. Every check-and-write is one
// statement or one transaction in the database, never a read in Go followed
// by a write, so it holds across any number of instances:
//
//   - Reconcile is UPDATE … SET count = GREATEST(count, n). Reconciles are
//     grouped: a few writer goroutines each take what is queued (up to a
//     batch cap) and send it as one multi-row UPDATE over unnest() arrays,
//     one statement and one commit for the group, then answer each caller.
//     Several groups are in flight at once, so PostgreSQL's own group commit
//     flushes them together.
//   - A reconcile of a key that has no row yet (rare: at most the cap per
//     install) is inserted in a transaction that first takes a per-install
//     advisory lock and then inserts only while the install has fewer rows
//     than the cap. Every reconcile that creates a row takes that lock, and
//     the insert's snapshot is taken after the lock is granted, so it sees
//     every row another instance created under it: no overshoot.
//   - Increment and Reserve are one INSERT … ON CONFLICT DO UPDATE … WHERE
//     each; the WHERE (count below quota, below math.MaxInt64) is evaluated
//     on the locked, newest row version, so exactly one of N concurrent
//     reserves at quota-1 gets through.
//
// Counts are int64 in [0, math.MaxInt64]. Errors from storage wrap
// offload.ErrStorage and never carry the URL, an install id, a feature name
// or a server message.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/offload-app/offload"
	"github.com/offload-app/offload/internal/migrations"
)

var (
	_ offload.UsageStore  = (*Store)(nil)
	_ offload.UsageCopier = (*Store)(nil)
)

// Defaults of the options.
const (
	DefaultMaxFeatures    = 16
	DefaultMaxConns       = 16
	DefaultWriters        = 4
	DefaultMaxBatch       = 256
	DefaultWriteTimeout   = 10 * time.Second
	DefaultCloseTimeout   = 5 * time.Second
	DefaultConnectTimeout = 5 * time.Second
)

// Option configures Open.
type Option func(*config)

type config struct {
	clock        offload.Clock
	metrics      offload.Metrics
	maxFeatures  int64
	maxConns     int32
	writers      int
	maxBatch     int
	writeTimeout time.Duration
	closeTimeout time.Duration

	batchHook func(size int) // tests: called by a writer before each batch
}

// WithMaxFeatures caps the distinct features one install may have rows for
// (default 16): a Reconcile that would create one more fails with
// offload.ErrFeatureLimit. Values below 1 are ignored.
func WithMaxFeatures(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxFeatures = int64(n)
		}
	}
}

// WithMetrics receives one UsageCommit per commit (a reconcile group, or one
// increment, reserve, release, erase, expire or merge).
func WithMetrics(m offload.Metrics) Option {
	return func(c *config) {
		if m != nil {
			c.metrics = m
		}
	}
}

// WithClock sets the clock of the created_at/updated_at timestamps.
func WithClock(clk offload.Clock) Option {
	return func(c *config) {
		if clk != nil {
			c.clock = clk
		}
	}
}

// WithMaxConns sets the size of the connection pool (default 16, or
// pool_max_conns from the URL when it has one). It must leave room beside
// the writers (WithWriters) for direct calls; it is raised to writers+2.
func WithMaxConns(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxConns = int32(n)
		}
	}
}

// WithWriters sets how many reconcile groups may be in flight at once
// (default 4), each on its own connection while it commits. More
// writers lower latency at moderate load; fewer make bigger groups, which
// cost PostgreSQL less CPU per reconcile (the figure that bounds several
// instances sharing one server).
func WithWriters(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.writers = n
		}
	}
}

// WithMaxBatch caps how many reconciles one statement carries (default 256).
func WithMaxBatch(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxBatch = n
		}
	}
}

// WithWriteTimeout bounds one reconcile group's round trips to the server
// (default 10 s); past it every member fails with offload.ErrStorage.
// Callers bound their own wait with their context.
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.writeTimeout = d
		}
	}
}

// WithCloseTimeout bounds Close (default 5 s): queued reconciles get that
// long to commit, then what is still running is cancelled and abandoned.
func WithCloseTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.closeTimeout = d
		}
	}
}

// Stats are cumulative counters of a Store's reconcile groups.
type Stats struct {
	Commits  uint64 // reconcile groups committed
	Writes   uint64 // reconciles acknowledged by those commits
	MaxBatch uint64 // largest group committed
	Failures uint64 // groups failed with a storage error
	Retries  uint64 // statements sent again after a broken connection or a deadlock
}

// Store is the PostgreSQL usage store. It is safe for concurrent use, and
// any number of Stores (in any number of processes) may share a database.
type Store struct {
	cfg  config
	pool *pgxpool.Pool

	// ctx is the writers' base context: Close cancels it once the close
	// timeout has passed, which makes pgx cancel what is still running.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards closed and the send side of reqs: senders hold it shared, so
	// Close (exclusive) can close reqs knowing nobody is sending.
	mu      sync.RWMutex
	closed  bool
	closing atomic.Bool // set first by Close, so new calls fail at once
	reqs    chan *request
	writers sync.WaitGroup

	reqPool sync.Pool // of *request

	closeOnce sync.Once
	closeErr  error

	commits, writes, maxBatch, failures, retries atomic.Uint64
}

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string, as pgx reads them), checks that the server makes
// commits durable, and brings the schema to the newest version. Any failure
// wraps offload.ErrStorage with a message that names neither the URL nor
// its password.
func Open(ctx context.Context, url string, opts ...Option) (_ *Store, err error) {
	cfg := config{
		clock:        offload.SystemClock{},
		metrics:      offload.NopMetrics{},
		maxFeatures:  DefaultMaxFeatures,
		writers:      DefaultWriters,
		maxBatch:     DefaultMaxBatch,
		writeTimeout: DefaultWriteTimeout,
		closeTimeout: DefaultCloseTimeout,
	}
	for _, o := range opts {
		o(&cfg)
	}
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", offload.ErrStorage, err)
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parser's message quotes the connection string; drop it.
		return nil, storageErr("open", errBadURL)
	}
	switch {
	case cfg.maxConns > 0:
		pcfg.MaxConns = cfg.maxConns
	case !strings.Contains(url, "pool_max_conns"):
		pcfg.MaxConns = DefaultMaxConns
	}
	pcfg.MaxConns = max(pcfg.MaxConns, int32(cfg.writers)+2)
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	pcfg.AfterConnect = checkDurable

	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, storageErr("open", err)
	}
	defer func() {
		if err != nil {
			pool.Close()
		}
	}()
	// The pool connects lazily; this makes the first connection (and its
	// durability check) now, so a wrong URL stops the process at start.
	if err := pool.Ping(ctx); err != nil {
		return nil, storageErr("connect", err)
	}
	if err := migrate(ctx, pool, ms); err != nil {
		var tooNew *migrations.TooNewError
		if errors.As(err, &tooNew) {
			return nil, &offload.StorageError{Op: "migrate schema", Reason: tooNew.Error(), Cause: tooNew}
		}
		var me *migrationError
		if errors.As(err, &me) {
			return nil, &offload.StorageError{Op: "migrate schema", Reason: me.Error() + ": " + reason(me.err), Cause: err}
		}
		return nil, storageErr("migrate schema", err)
	}

	s := &Store{
		cfg:  cfg,
		pool: pool,
		// Room for the groups after the ones in progress, so a full next
		// group waits in the queue rather than in blocked sends.
		reqs: make(chan *request, 2*cfg.maxBatch),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.reqPool.New = func() any { return &request{reply: make(chan result, 1)} }
	for range cfg.writers {
		s.writers.Go(s.writer)
	}
	return s, nil
}

// checkDurable refuses a connection on which a commit could return before
// its WAL is on disk. Only "off" is refused: "local", "remote_write" and
// "remote_apply" all flush locally first.
func checkDurable(ctx context.Context, c *pgx.Conn) error {
	var syncCommit, fsync string
	err := c.QueryRow(ctx, "SELECT current_setting('synchronous_commit'), current_setting('fsync')").Scan(&syncCommit, &fsync)
	if err != nil {
		return err
	}
	if syncCommit == "off" || fsync == "off" {
		return errNotDurable
	}
	return nil
}

// validKey reports whether PostgreSQL text can hold s.
func validKey(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// now is the timestamp of a write: UTC, second precision.
func (s *Store) now() time.Time { return s.cfg.clock.Now().UTC().Truncate(time.Second) }

// Stats returns the cumulative counters.
func (s *Store) Stats() Stats {
	return Stats{
		Commits:  s.commits.Load(),
		Writes:   s.writes.Load(),
		MaxBatch: s.maxBatch.Load(),
		Failures: s.failures.Load(),
		Retries:  s.retries.Load(),
	}
}

// Check reports whether the store can commit now: it runs one transaction
// that is given a transaction id, so committing it writes and flushes WAL
// like a real write, and it fails on a standby or a read-only server. It is
// bounded by ctx.
func (s *Store) Check(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	var readOnly string
	err := s.pool.QueryRow(ctx, "SELECT current_setting('transaction_read_only'), pg_current_xact_id()::text").Scan(&readOnly, new(string))
	if err != nil {
		return callErr(ctx, "check", err)
	}
	if readOnly == "on" {
		return storageErr("check", errReadOnly)
	}
	return nil
}

// enter takes mu shared for a direct call, so Close cannot close the pool
// under it; the caller releases it. After Close it fails.
func (s *Store) enter() error {
	if s.closing.Load() {
		return storageErr("call", errClosed)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return storageErr("call", errClosed)
	}
	return nil
}

// Close commits the reconciles already queued, stops the writers and closes
// the pool, all within the close timeout: past it, what still runs is
// cancelled and Close returns an error saying so. Calls after the first
// return the first one's result; store methods called after Close fail with
// offload.ErrStorage.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		deadline := time.NewTimer(s.cfg.closeTimeout)
		defer deadline.Stop()
		// Direct calls hold mu shared while they run: taking it waits for
		// them, but no longer than the close timeout.
		locked := make(chan struct{})
		go func() {
			s.mu.Lock()
			s.closed = true
			close(s.reqs)
			s.mu.Unlock()
			close(locked)
		}()
		done := make(chan struct{})
		go func() {
			<-locked
			s.writers.Wait()
			s.pool.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-deadline.C:
			s.cancel() // the writers' statements end now
			s.closeErr = storageErr("close", errCloseTimeout)
			// Give the cancelled statements a moment to return; the pool
			// closes in the background when they do.
			select {
			case <-done:
			case <-time.After(time.Second):
			}
		}
		s.cancel()
	})
	return s.closeErr
}
