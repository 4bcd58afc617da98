package sqlite

import (
	"context"
	"time"
)

type opKind uint8

const (
	opReconcile opKind = iota
	opIncrement
)

// request is one queued write. The writer owns it from the moment it is
// sent until it replies; reply has room for that one answer, so the writer
// never blocks on a caller that stopped waiting.
type request struct {
	op        opKind
	installID string
	feature   string
	count     int64
	reply     chan result
}

type result struct {
	count int64
	err   error
}

// write queues one write and waits until the commit that holds it is
// durable. If ctx ends first the write may still commit; the caller gets
// ctx.Err(). An already-ended ctx writes nothing.
func (s *Store) write(ctx context.Context, op opKind, installID, feature string, n int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	r := s.pool.Get().(*request)
	r.op, r.installID, r.feature, r.count = op, installID, feature, n
	if err := s.enqueue(ctx, r); err != nil {
		r.installID, r.feature = "", ""
		s.pool.Put(r)
		return 0, err
	}
	select {
	case res := <-r.reply:
		r.installID, r.feature = "", ""
		s.pool.Put(r)
		return res.count, res.err
	case <-ctx.Done():
		// r stays with the writer, which will answer into its buffer; it is
		// not put back in the pool, so no later call can see that answer.
		return 0, ctx.Err()
	}
}

func (s *Store) enqueue(ctx context.Context, r *request) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return storageErr("write", errClosed)
	}
	select {
	case s.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer is the one goroutine that writes. It runs until Close closes reqs,
// and commits everything queued before that.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*request, 0, s.cfg.maxBatch)
	results := make([]result, s.cfg.maxBatch)
	w := newBatchWriter(&s.upserts)
	for {
		r, ok := <-s.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		open := true
	drain:
		for len(batch) < s.cfg.maxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					open = false
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commitBatch(w, batch, results[:len(batch)])
		clear(batch) // drop references to answered requests
		if !open {
			return
		}
	}
}

// commitBatch runs batch in one transaction and answers every member after
// the COMMIT has returned. results is the writer's scratch space, one per
// member.
//
// A member whose row breaks a constraint (an increment past math.MaxInt64)
// fails alone, see writeChunk; the others' writes stay in the transaction.
// Any other failure (disk full, I/O error, read-only file, a failed COMMIT)
// is a storage failure: the transaction is rolled back and every member gets
// an error wrapping offload.ErrStorage, none of their writes is kept.
func (s *Store) commitBatch(w *batchWriter, batch []*request, results []result) {
	if s.cfg.batchHook != nil {
		s.cfg.batchHook(len(batch))
	}
	ctx := context.Background() // the writer finishes what was queued, whoever stopped waiting
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
	var written uint64
	for i := range batch {
		if results[i].err == nil {
			written++
		}
	}
	s.commits.Add(1)
	s.writes.Add(written)
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
