package sqlite

import (
	"context"
	"time"

	"github.com/offload-app/offload"
)

type opKind uint8

// Reconciles and increments are written in shared multi-row statements;
// every other kind runs as its own statement, in queue order, after them.
const (
	opReconcile opKind = iota
	opIncrement
	opReserve // n is the quota
	opRelease
	opErase
	opExpire // n is the limit, before the timestamp
	opMerge  // rows
	opProbe  // Check: proves that a commit goes through
)

// request is one queued write. The writer owns it from the moment it is
// sent until it replies; reply has room for that one answer, so the writer
// never blocks on a caller that stopped waiting.
type request struct {
	ctx       context.Context // the caller's: a request whose caller gave up is skipped
	op        opKind
	installID string
	feature   string
	n         int64
	before    string
	rows      []offload.UsageRow
	reply     chan result
}

type result struct {
	count int64
	err   error
}

func (s *Store) newRequest(op opKind, installID, feature string, n int64) *request {
	r := s.pool.Get().(*request)
	r.op, r.installID, r.feature, r.n = op, installID, feature, n
	return r
}

// recycle drops the references a request holds and returns it to the pool.
func (s *Store) recycle(r *request) {
	r.ctx, r.installID, r.feature, r.before, r.rows = nil, "", "", "", nil
	s.pool.Put(r)
}

// do queues r and waits until the commit that holds it is durable, or until
// ctx ends: the caller then gets ctx.Err() at once, whatever the disk is
// doing, and the write commits later or, if the writer reaches it after
// that, not at all. An already-ended ctx writes nothing.
func (s *Store) do(ctx context.Context, r *request) (int64, error) {
	if err := ctx.Err(); err != nil {
		s.recycle(r)
		return 0, err
	}
	if err := s.usable("write"); err != nil {
		s.recycle(r)
		return 0, err
	}
	r.ctx = ctx
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.recycle(r)
		return 0, ctx.Err()
	case <-s.closing:
		s.recycle(r)
		return 0, storageErr("write", errClosed)
	}
	select {
	case res := <-r.reply:
		s.recycle(r)
		return res.count, res.err
	case <-ctx.Done():
		// r stays with the writer, which will answer into its buffer; it is
		// not put back in the pool, so no later call can see that answer.
		return 0, ctx.Err()
	case <-s.done:
		// The writer has stopped: it answered r first, or never saw it
		// (sent after its last look at the queue).
		select {
		case res := <-r.reply:
			s.recycle(r)
			return res.count, res.err
		default:
			return 0, storageErr("write", errClosed)
		}
	}
}

// writer is the one goroutine that writes. It runs until Close closes
// closing, and commits everything queued before it finds the queue empty
// after that.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*request, 0, s.cfg.maxBatch)
	results := make([]result, s.cfg.maxBatch)
	w := newBatchWriter(s.wconn, &s.stmts, s.cfg.maxFeatures)
	for {
		var r *request
		select {
		case r = <-s.reqs:
		case <-s.closing:
			select {
			case r = <-s.reqs:
			default:
				return
			}
		}
		batch = append(batch[:0], r)
	drain:
		for len(batch) < s.cfg.maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		batch = s.dropAbandoned(batch)
		if len(batch) > 0 {
			s.commitBatch(w, batch, results[:len(batch)])
		}
		clear(batch[:cap(batch)]) // drop references to answered requests
	}
}

// dropAbandoned answers, and removes from batch, the requests whose caller
// has stopped waiting: after a stall the queue is full of them, and writing
// them would only delay the callers still waiting.
func (s *Store) dropAbandoned(batch []*request) []*request {
	kept := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.reply <- result{err: err}
			continue
		}
		kept = append(kept, r)
	}
	return kept
}

// commitBatch runs batch in one transaction and answers every member after
// the COMMIT has returned. results is the writer's scratch space, one per
// member.
//
// A member that fails on its own (an increment past math.MaxInt64, a new
// feature past the cap, a reserve at its quota) fails alone, see
// batchWriter; the others' writes stay in the transaction. Any other failure
// (disk full, I/O error, read-only file, a failed COMMIT) is a storage
// failure: the transaction is rolled back and every member gets an error
// wrapping offload.ErrStorage, none of their writes is kept.
func (s *Store) commitBatch(w *batchWriter, batch []*request, results []result) {
	s.inBatch.Store(int64(len(batch)))
	defer s.inBatch.Store(0)
	if s.cfg.batchHook != nil {
		s.cfg.batchHook(len(batch))
	}
	if s.broken.Load() {
		// The file was deleted or replaced: a commit would go into a file
		// nobody will open again.
		s.fail(batch, storageErr("write", errReplaced))
		return
	}
	ctx := context.Background() // the writer finishes the batch, whoever stopped waiting
	start := time.Now()
	now := s.cfg.clock.Now().UTC().Format(timeFormat)
	if err := s.begin(ctx); err != nil {
		s.fail(batch, storageErr("begin transaction", err))
		return
	}
	clear(results)
	if err := w.writeAll(ctx, batch, results, now); err != nil {
		s.rollback()
		s.fail(batch, storageErr("write", err))
		return
	}
	if err := s.commit(ctx); err != nil {
		s.rollback()
		s.fail(batch, storageErr("commit", err))
		return
	}
	// Counters first, so a caller that has its answer sees them updated.
	// Check's probe is not a usage write.
	var written int
	for i, r := range batch {
		if results[i].err == nil && r.op != opProbe {
			written++
		}
	}
	s.cfg.metrics.UsageCommit(written, time.Since(start))
	s.commits.Add(1)
	s.writes.Add(uint64(written))
	if n := uint64(len(batch)); n > s.maxBatch.Load() {
		s.maxBatch.Store(n) // only the writer stores it
	}
	for i, r := range batch {
		r.reply <- results[i]
	}
}

func (s *Store) fail(batch []*request, err error) {
	s.failures.Add(1)
	for _, r := range batch {
		r.reply <- result{err: err}
	}
}

// begin starts an IMMEDIATE transaction, which takes the write lock at once.
// Another process (or another Store on the same file) may hold it: SQLite
// waits up to busy_timeout, and begin retries with backoff until busyRetry
// has passed, so "database is locked" reaches nobody unless the lock stays
// taken that long, and then only as an offload.ErrStorage.
func (s *Store) begin(ctx context.Context) error {
	deadline := time.Now().Add(s.cfg.busyRetry)
	backoff := time.Millisecond
	for {
		_, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil || !isBusy(err) {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		s.busyRetries.Add(1)
		t := time.NewTimer(min(backoff, left))
		select {
		case <-t.C:
		case <-ctx.Done(): // only Open passes a context that can end
			t.Stop()
			return ctx.Err()
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

func (s *Store) commit(ctx context.Context) error {
	if s.cfg.commitFault != nil {
		if err := s.cfg.commitFault(); err != nil {
			return err
		}
	}
	_, err := s.wconn.ExecContext(ctx, "COMMIT")
	return err
}

// rollback ends a failed transaction. SQLite may already have rolled it back
// itself (after an I/O or disk-full error), so its error says nothing new.
func (s *Store) rollback() {
	_, _ = s.wconn.ExecContext(context.Background(), "ROLLBACK")
}
