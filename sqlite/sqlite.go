// Package sqlite is the offload.UsageStore on an embedded SQLite file
// (modernc.org/sqlite, pure Go, no cgo).
//
// Every acknowledged write is durable: the database runs in WAL mode with
// synchronous=FULL, so a commit returns only after the WAL is fsync'd. To be
// fast anyway, one writer goroutine per Store commits writes in groups: it
// takes the first queued request, drains whatever else is queued (up to a
// batch cap), runs them all in one IMMEDIATE transaction with multi-row
// prepared upserts (up to 64 rows each), commits once, and only then answers each caller with its own
// RETURNING value. Requests that arrive while a commit is being flushed form
// the next group. Reads go to a separate pool of connections, which WAL lets
// run beside the writer.
//
// Counts are int64 in [0, math.MaxInt64]. Errors from storage wrap
// offload.ErrStorage and never carry install ids or feature names.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/offload-app/offload"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

var _ offload.UsageStore = (*Store)(nil)

// Defaults of the options.
const (
	DefaultMaxBatch    = 512
	DefaultBusyTimeout = 5 * time.Second
	DefaultBusyRetry   = 10 * time.Second
	DefaultReadConns   = 4
)

// timeFormat is RFC 3339 in UTC with second precision, like the wire contract.
const timeFormat = "2006-01-02T15:04:05Z"

const totalSQL = `SELECT count FROM usage_counts WHERE install_id = ?1`

// ErrCountRange is returned for a negative count and for an increment past
// math.MaxInt64. It is a caller error, not a storage failure.
var ErrCountRange = errors.New("sqlite: usage count out of range")

// Option configures Open.
type Option func(*config)

type config struct {
	clock       offload.Clock
	maxBatch    int
	busyTimeout time.Duration
	busyRetry   time.Duration
	readConns   int

	// Fault injection for tests (set through export_test.go).
	commitFault   func() error   // non-nil error: the commit fails instead of running
	batchHook     func(size int) // called by the writer before each batch
	writerPragmas []string       // run on the writer connection after migrating
}

// WithClock sets the clock of the created_at/updated_at timestamps.
func WithClock(c offload.Clock) Option { return func(cf *config) { cf.clock = c } }

// WithMaxBatch caps how many writes one transaction commits (default 512).
func WithMaxBatch(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxBatch = n
		}
	}
}

// WithBusyTimeout sets SQLite's busy_timeout: how long one statement waits
// for a lock held by another connection (default 5 s).
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) {
		if d >= 0 {
			c.busyTimeout = d
		}
	}
}

// WithBusyRetry bounds the total time the writer keeps retrying to take the
// write lock from another process before it fails the batch with
// offload.ErrStorage (default 10 s).
func WithBusyRetry(d time.Duration) Option {
	return func(c *config) {
		if d >= 0 {
			c.busyRetry = d
		}
	}
}

// WithReadConns sets the size of the read pool used by Total (default 4).
func WithReadConns(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.readConns = n
		}
	}
}

// Stats are cumulative counters of a Store.
type Stats struct {
	Commits     uint64 // write transactions committed
	Writes      uint64 // reconciles and increments acknowledged by those commits
	MaxBatch    uint64 // largest batch committed
	BusyRetries uint64 // times the write lock was busy and taking it was retried
	Failures    uint64 // batches failed with a storage error
}

// WritesPerCommit is the average group size.
func (s Stats) WritesPerCommit() float64 {
	if s.Commits == 0 {
		return 0
	}
	return float64(s.Writes) / float64(s.Commits)
}

// Store is the SQLite usage store. It is safe for concurrent use.
type Store struct {
	cfg config

	rdb       *sql.DB // read pool
	totalStmt *sql.Stmt

	wdb     *sql.DB   // one connection, owned by the writer goroutine
	wconn   *sql.Conn // after Open, only the writer goroutine uses it
	upserts upsertStmts

	// mu guards closed and the send side of reqs: senders hold it shared, so
	// Close (exclusive) can close reqs knowing nobody is sending.
	mu     sync.RWMutex
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the writer goroutine has returned

	pool sync.Pool // of *request

	closeOnce sync.Once
	closeErr  error

	commits, writes, maxBatch, busyRetries, failures atomic.Uint64
}

// Open opens the usage database at path, creating it and its parent folders
// (mode 0700) as needed, checks that it is a sound SQLite database, and
// brings its schema to the newest version. Any failure wraps
// offload.ErrStorage and says what is wrong with the file.
func Open(ctx context.Context, path string, opts ...Option) (_ *Store, err error) {
	cfg := config{
		clock:       offload.SystemClock{},
		maxBatch:    DefaultMaxBatch,
		busyTimeout: DefaultBusyTimeout,
		busyRetry:   DefaultBusyRetry,
		readConns:   DefaultReadConns,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if path == "" {
		return nil, fmt.Errorf("%w: usage database path is empty", offload.ErrStorage)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: usage database path: %w", offload.ErrStorage, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("%w: cannot create the folder of the usage database: %w", offload.ErrStorage, err)
	}
	if err := createFile(abs); err != nil {
		return nil, fmt.Errorf("%w: cannot open the usage database file: %w", offload.ErrStorage, err)
	}

	s := &Store{
		cfg: cfg,
		// Room for the batch after the one in progress, so a full next batch
		// waits in the queue rather than in blocked sends.
		reqs: make(chan *request, 2*cfg.maxBatch),
		done: make(chan struct{}),
	}
	s.pool.New = func() any { return &request{reply: make(chan result, 1)} }
	defer func() {
		if err != nil {
			s.closeHandles()
		}
	}()
	openOp := "open usage database " + strconv.Quote(abs)
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", offload.ErrStorage, err)
	}

	dsn := dataSourceName(abs, cfg.busyTimeout)
	if s.wdb, err = sql.Open("sqlite", dsn); err != nil {
		return nil, storageErr(openOp, err)
	}
	s.wdb.SetMaxOpenConns(1)
	if s.wconn, err = s.wdb.Conn(ctx); err != nil {
		return nil, storageErr(openOp, err)
	}
	if err := checkDurable(ctx, s.wconn); err != nil {
		return nil, storageErr(openOp, err)
	}
	if err := quickCheck(ctx, s.wconn); err != nil {
		return nil, storageErr(openOp, err)
	}
	if err := s.migrate(ctx, ms); err != nil {
		var tooNew *schemaTooNewError
		if errors.As(err, &tooNew) {
			return nil, &storageError{op: openOp, reason: tooNew.Error(), cause: tooNew}
		}
		return nil, storageErr(openOp+": migrate schema", err)
	}
	for _, p := range cfg.writerPragmas {
		if _, err := s.wconn.ExecContext(ctx, "PRAGMA "+p); err != nil {
			return nil, storageErr(openOp, err)
		}
	}
	if err := s.upserts.prepare(ctx, s.wconn); err != nil {
		return nil, storageErr(openOp, err)
	}

	// The read pool refuses writes (query_only), so only the writer ever
	// changes the file.
	if s.rdb, err = sql.Open("sqlite", dsn+"&_query_only=1"); err != nil {
		return nil, storageErr(openOp, err)
	}
	s.rdb.SetMaxOpenConns(cfg.readConns)
	s.rdb.SetMaxIdleConns(cfg.readConns)
	if s.totalStmt, err = s.rdb.PrepareContext(ctx, totalSQL); err != nil {
		return nil, storageErr(openOp, err)
	}

	go s.writer()
	return s, nil
}

// createFile creates the database file if it is missing, so that it, and
// the -wal and -shm files SQLite gives the same mode, are private to the
// service's user; and syncs the folder, so the new file's name survives a
// power cut along with the counts committed into it. An existing file must
// be readable and writable.
func createFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		return f.Close()
	}
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// dataSourceName is a file: URI, so any path works (the driver would cut a
// plain path at its first '?'), with the PRAGMAs that every connection of
// the pool runs when it opens.
func dataSourceName(abs string, busy time.Duration) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a commit returns only after the WAL is fsync'd, so an
	// acknowledged count survives a power cut. Never NORMAL or OFF.
	q.Add("_pragma", "synchronous(FULL)")
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

// checkDurable refuses a connection that is not in WAL mode with
// synchronous=FULL, e.g. on a file system where WAL cannot work.
func checkDurable(ctx context.Context, c *sql.Conn) error {
	var mode string
	var sync int
	if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return err
	}
	if mode != "wal" || sync != 2 {
		return errNotDurable
	}
	return nil
}

// quickCheck runs PRAGMA quick_check, so a damaged file stops the process at
// start instead of failing requests later. Its findings are not returned:
// only whether it passed.
func quickCheck(ctx context.Context, c *sql.Conn) error {
	var res string
	if err := c.QueryRowContext(ctx, "PRAGMA quick_check(1)").Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return errCorrupt
	}
	return nil
}

// Reconcile stores max(stored, localCount) durably and returns the stored
// value. A negative localCount is ErrCountRange.
func (s *Store) Reconcile(ctx context.Context, installID, feature string, localCount int64) (int64, error) {
	if localCount < 0 {
		return 0, ErrCountRange
	}
	return s.write(ctx, opReconcile, installID, feature, localCount)
}

// Increment adds one to the count durably and returns the new value.
func (s *Store) Increment(ctx context.Context, installID, feature string) (int64, error) {
	return s.write(ctx, opIncrement, installID, feature, 0)
}

// Total returns the sum of the install's counts over all features. The sum
// saturates at math.MaxInt64 instead of overflowing.
func (s *Store) Total(ctx context.Context, installID string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Held shared for the whole read, so Close cannot close the pool under it.
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, storageErr("read", errClosed)
	}
	rows, err := s.totalStmt.QueryContext(ctx, installID)
	if err != nil {
		return 0, readErr(ctx, err)
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return 0, readErr(ctx, err)
		}
		if n > 0 && total > maxInt64-n {
			total = maxInt64
		} else {
			total += n
		}
	}
	if err := rows.Err(); err != nil {
		return 0, readErr(ctx, err)
	}
	return total, nil
}

const maxInt64 = 1<<63 - 1

// readErr returns the caller's own cancellation as is, and anything else as
// a storage failure.
func readErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return storageErr("read", err)
}

// Stats returns the cumulative counters.
func (s *Store) Stats() Stats {
	return Stats{
		Commits:     s.commits.Load(),
		Writes:      s.writes.Load(),
		MaxBatch:    s.maxBatch.Load(),
		BusyRetries: s.busyRetries.Load(),
		Failures:    s.failures.Load(),
	}
}

// Close commits the writes already queued, stops the writer and closes the
// database. Calls after the first return the first one's result; store
// methods called after Close fail with offload.ErrStorage.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.reqs)
		s.mu.Unlock()
		<-s.done
		if err := s.closeHandles(); err != nil {
			s.closeErr = storageErr("close", err)
		}
	})
	return s.closeErr
}

// closeHandles closes whatever Open managed to open. The read pool goes
// first, so the writer's connection is the last one and checkpoints the WAL
// into the database file as it closes.
func (s *Store) closeHandles() error {
	var errs []error
	if s.totalStmt != nil {
		errs = append(errs, s.totalStmt.Close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	errs = append(errs, s.upserts.close())
	if s.wconn != nil {
		errs = append(errs, s.wconn.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	return errors.Join(errs...)
}
