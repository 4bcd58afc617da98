// Package sqlite is the offload.UsageStore on an embedded SQLite file
// (modernc.org/sqlite, pure Go, no cgo).
//
// Every acknowledged write is durable: the database runs in WAL mode with
// synchronous=FULL, so a commit returns only after the WAL is fsync'd. To be
// fast anyway, one writer goroutine per Store commits writes in groups: it
// takes the first queued request, drains whatever else is queued (up to a
// batch cap), runs them all in one IMMEDIATE transaction with multi-row
// prepared statements (up to 64 rows each), commits once, and only then
// answers each caller with its own value. Requests that arrive while a
// commit is being flushed form the next group. Every check-and-write (the
// feature cap, the quota of Reserve) runs inside that transaction, which
// holds the write lock, so it is atomic against every other connection and
// process. Reads go to a separate pool of connections, which WAL lets run
// beside the writer, and always read the file: nothing is cached.
//
// The file stays usable by the Python deployment's own SQL (see migration
// 003), so both can share it.
//
// Counts are int64 in [0, math.MaxInt64]. Errors from storage wrap
// offload.ErrStorage and never carry install ids, feature names or the path.
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
	"github.com/offload-app/offload/internal/migrations"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

var (
	_ offload.UsageStore  = (*Store)(nil)
	_ offload.UsageCopier = (*Store)(nil)
)

// Defaults of the options.
const (
	DefaultMaxBatch      = 512
	DefaultBusyTimeout   = 5 * time.Second
	DefaultBusyRetry     = 10 * time.Second
	DefaultReadConns     = 4
	DefaultMaxFeatures   = 16
	DefaultCloseTimeout  = 5 * time.Second
	DefaultWatchInterval = 2 * time.Second
)

// timeFormat is how created_at and updated_at are stored: SQLite's
// CURRENT_TIMESTAMP format, in UTC, which the Python deployment writes too,
// so rows of both compare as text (see migration 003).
const timeFormat = "2006-01-02 15:04:05"

const countSQL = `SELECT count FROM usage_counts WHERE install_id = ?1 AND feature = ?2`

// ErrCountRange is returned for a negative count and for an increment past
// math.MaxInt64. It is a caller error, not a storage failure.
var ErrCountRange = errors.New("sqlite: usage count out of range")

// Option configures Open.
type Option func(*config)

type config struct {
	clock         offload.Clock
	metrics       offload.Metrics
	maxBatch      int
	busyTimeout   time.Duration
	busyRetry     time.Duration
	readConns     int
	maxFeatures   int
	closeTimeout  time.Duration
	watchInterval time.Duration

	// For tests (set through export_test.go).
	commitFault   func() error     // non-nil error: the commit fails instead of running
	batchHook     func(size int)   // called by the writer before each batch
	writerPragmas []string         // run on the writer connection after migrating
	migrations    fs.FS            // instead of the embedded ones
	watchTicks    <-chan time.Time // instead of a ticker of watchInterval
}

// WithClock sets the clock of the created_at/updated_at timestamps.
func WithClock(c offload.Clock) Option { return func(cf *config) { cf.clock = c } }

// WithMetrics receives UsageCommit after every commit (default: none).
func WithMetrics(m offload.Metrics) Option {
	return func(c *config) {
		if m != nil {
			c.metrics = m
		}
	}
}

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

// WithReadConns sets the size of the read pool used by Count and EachRow
// (default 4).
func WithReadConns(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.readConns = n
		}
	}
}

// WithMaxFeatures caps the distinct features a Reconcile may create per
// install (default 16; 0 means no cap). Increment, Reserve and MergeRows
// are never refused, but their rows count towards it.
func WithMaxFeatures(n int) Option {
	return func(c *config) {
		if n >= 0 {
			c.maxFeatures = n
		}
	}
}

// WithCloseTimeout bounds how long Close waits for the queued writes to
// commit (default 5 s). A disk that does not finish by then (a frozen file
// system) makes Close return an error saying how many writes were
// abandoned, instead of hanging the shutdown.
func WithCloseTimeout(d time.Duration) Option {
	return func(c *config) {
		if d >= 0 {
			c.closeTimeout = d
		}
	}
}

// WithWatchInterval sets how often the store checks that its path still
// names the file it has open (default 2 s; 0 turns the watcher off, Check
// still looks).
func WithWatchInterval(d time.Duration) Option {
	return func(c *config) {
		if d >= 0 {
			c.watchInterval = d
		}
	}
}

// Stats are cumulative counters of a Store.
type Stats struct {
	Commits     uint64 // write transactions committed
	Writes      uint64 // writes acknowledged by those commits
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
	cfg  config
	path string      // absolute; never put in an error
	file os.FileInfo // of the file opened, to notice it replaced

	rdb       *sql.DB // read pool
	countStmt *sql.Stmt
	pageStmts [2]*sql.Stmt // EachRow's first and next pages

	wdb   *sql.DB   // one connection, owned by the writer goroutine
	wconn *sql.Conn // after Open, only the writer goroutine uses it
	stmts stmts

	reqs    chan *request
	closed  atomic.Bool   // set by Close: new calls fail at once
	broken  atomic.Bool   // the path no longer names the open file
	closing chan struct{} // closed by Close: the writer drains the queue and stops
	done    chan struct{} // closed when the writer goroutine has returned
	inBatch atomic.Int64  // size of the batch being written, for Close's report

	pool sync.Pool // of *request

	closeOnce sync.Once
	closeErr  error

	commits, writes, maxBatch, busyRetries, failures atomic.Uint64
}

// Open opens the usage database at path, creating it and its parent folders
// (mode 0700) as needed, checks that it is a sound SQLite database, and
// brings its schema to the newest version in one transaction (a failed
// migration leaves the file as it was). Any failure wraps offload.ErrStorage
// and says what is wrong with the file.
func Open(ctx context.Context, path string, opts ...Option) (_ *Store, err error) {
	cfg := config{
		clock:         offload.SystemClock{},
		metrics:       offload.NopMetrics{},
		maxBatch:      DefaultMaxBatch,
		busyTimeout:   DefaultBusyTimeout,
		busyRetry:     DefaultBusyRetry,
		readConns:     DefaultReadConns,
		maxFeatures:   DefaultMaxFeatures,
		closeTimeout:  DefaultCloseTimeout,
		watchInterval: DefaultWatchInterval,
		migrations:    migrationFiles,
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
		cfg:  cfg,
		path: abs,
		// Room for the batch after the one in progress, so a full next batch
		// waits in the queue rather than in blocked sends.
		reqs:    make(chan *request, 2*cfg.maxBatch),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.pool.New = func() any { return &request{reply: make(chan result, 1)} }
	defer func() {
		if err != nil {
			s.closeHandles()
		}
	}()
	// Open's errors are for the operator starting the service, so they name
	// the file; the errors of a running store do not.
	openOp := "open usage database " + strconv.Quote(abs)
	ms, err := loadMigrations(cfg.migrations)
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
	// SQLite has the file open now: this is the file the path must keep
	// naming.
	if s.file, err = os.Stat(abs); err != nil {
		return nil, storageErr(openOp, err)
	}
	if err := quickCheck(ctx, s.wconn); err != nil {
		return nil, storageErr(openOp, err)
	}
	if err := s.migrate(ctx, ms); err != nil {
		var tooNew *migrations.TooNewError
		if errors.As(err, &tooNew) {
			return nil, &offload.StorageError{Op: openOp, Reason: tooNew.Error(), Cause: tooNew}
		}
		return nil, storageErr(openOp+": migrate schema", err)
	}
	for _, p := range cfg.writerPragmas {
		if _, err := s.wconn.ExecContext(ctx, "PRAGMA "+p); err != nil {
			return nil, storageErr(openOp, err)
		}
	}
	if err := s.stmts.prepare(ctx, s.wconn); err != nil {
		return nil, storageErr(openOp, err)
	}

	// The read pool refuses writes (query_only), so only the writer ever
	// changes the file.
	if s.rdb, err = sql.Open("sqlite", dsn+"&_query_only=1"); err != nil {
		return nil, storageErr(openOp, err)
	}
	s.rdb.SetMaxOpenConns(cfg.readConns)
	s.rdb.SetMaxIdleConns(cfg.readConns)
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{{&s.countStmt, countSQL}, {&s.pageStmts[0], firstPageSQL}, {&s.pageStmts[1], nextPageSQL}} {
		if *p.dst, err = s.rdb.PrepareContext(ctx, p.q); err != nil {
			return nil, storageErr(openOp, err)
		}
	}

	go s.writer()
	s.startWatcher()
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

// usable fails once the store is closed or its file is gone.
func (s *Store) usable(op string) error {
	if s.closed.Load() {
		return storageErr(op, errClosed)
	}
	if s.broken.Load() {
		return storageErr(op, errReplaced)
	}
	return nil
}

// Reconcile stores max(stored, localCount) durably and returns the stored
// value. A negative localCount is ErrCountRange; a new feature for an
// install that already has the cap's number of rows is
// offload.ErrFeatureLimit.
func (s *Store) Reconcile(ctx context.Context, installID, feature string, localCount int64) (int64, error) {
	if localCount < 0 {
		return 0, ErrCountRange
	}
	return s.do(ctx, s.newRequest(opReconcile, installID, feature, localCount))
}

// Increment adds one to the count durably and returns the new value. It is
// never refused by the feature cap.
func (s *Store) Increment(ctx context.Context, installID, feature string) (int64, error) {
	return s.do(ctx, s.newRequest(opIncrement, installID, feature, 0))
}

// Reserve adds one to the count durably while it is below quota and
// returns the new value; at or over quota it is offload.ErrQuotaExceeded
// and writes nothing. The check and the write are one statement.
func (s *Store) Reserve(ctx context.Context, installID, feature string, quota int64) (int64, error) {
	if quota <= 0 {
		if err := s.ready(ctx, "write"); err != nil {
			return 0, err
		}
		return 0, offload.ErrQuotaExceeded
	}
	return s.do(ctx, s.newRequest(opReserve, installID, feature, quota))
}

// Release takes one back from the count durably, never below 0. An unknown
// key is left alone.
func (s *Store) Release(ctx context.Context, installID, feature string) error {
	_, err := s.do(ctx, s.newRequest(opRelease, installID, feature, 0))
	return err
}

// Erase deletes every row of the install, durably, and returns how many
// went.
func (s *Store) Erase(ctx context.Context, installID string) (int64, error) {
	return s.do(ctx, s.newRequest(opErase, installID, "", 0))
}

// Expire deletes, durably, at most limit rows whose updated_at is before
// before, oldest first, and returns how many went. Rows of the Python
// deployment and ours compare alike (one timestamp format). Each call is
// part of one write transaction, so keep limit small (hundreds to a few
// thousand) and loop: the writer is not stalled for long.
func (s *Store) Expire(ctx context.Context, before time.Time, limit int) (int64, error) {
	if limit <= 0 {
		return 0, s.ready(ctx, "write")
	}
	r := s.newRequest(opExpire, "", "", int64(limit))
	r.before = before.UTC().Format(timeFormat)
	return s.do(ctx, r)
}

// ready is the checks of a call that turns out to have nothing to write.
func (s *Store) ready(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.usable(op)
}

// Count reads the stored count from the file (0 for an unknown key).
func (s *Store) Count(ctx context.Context, installID, feature string) (int64, error) {
	if err := s.ready(ctx, "read"); err != nil {
		return 0, err
	}
	var n int64
	err := s.countStmt.QueryRowContext(ctx, installID, feature).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, readErr(ctx, err)
	}
	return n, nil
}

// readErr returns the caller's own cancellation as is, and anything else as
// a storage failure.
func readErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return storageErr("read", err)
}

// Check reports whether the store can commit now: the path still names the
// file the store has open, and a small write goes through the writer and
// commits before ctx ends (a stalled disk shows as not ready). Its errors
// wrap offload.ErrStorage and name no path.
func (s *Store) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return storageErr("check", err)
	}
	if err := s.usable("check"); err != nil {
		return err
	}
	if err := s.checkFile(); err != nil {
		return err
	}
	if _, err := s.do(ctx, s.newRequest(opProbe, "", "", 0)); err != nil {
		if !errors.Is(err, offload.ErrStorage) {
			return storageErr("check", err) // ctx ended before the commit did
		}
		return err
	}
	return nil
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
// database. It waits for the queue at most the close timeout: if the disk
// has not finished by then, it returns an error saying how many writes were
// abandoned, and the database is closed whenever the writer gets free.
// Calls after the first return the first one's result; store methods
// called after Close fail with offload.ErrStorage.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.closing)
		t := time.NewTimer(s.cfg.closeTimeout)
		defer t.Stop()
		select {
		case <-s.done:
			if err := s.closeHandles(); err != nil {
				s.closeErr = storageErr("close", err)
			}
		case <-t.C:
			n := len(s.reqs) + int(s.inBatch.Load())
			s.closeErr = &offload.StorageError{
				Op:     "close",
				Reason: fmt.Sprintf("gave up after %v with %d queued write(s) not committed", s.cfg.closeTimeout, n),
				Cause:  errCloseTimeout,
			}
			go func() {
				<-s.done
				_ = s.closeHandles()
			}()
		}
	})
	return s.closeErr
}

// closeHandles closes whatever Open managed to open. The read pool goes
// first, so the writer's connection is the last one and checkpoints the WAL
// into the database file as it closes.
func (s *Store) closeHandles() error {
	var errs []error
	for _, st := range append([]*sql.Stmt{s.countStmt}, s.pageStmts[:]...) {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	errs = append(errs, s.stmts.close())
	if s.wconn != nil {
		errs = append(errs, s.wconn.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	return errors.Join(errs...)
}
