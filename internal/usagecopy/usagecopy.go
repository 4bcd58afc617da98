// Package usagecopy moves usage counts between two stores (SQLite file to
// PostgreSQL, the reverse, or two of a kind), for `offload-api usage copy`.
//
// The copy is a max-merge: every destination row becomes max(its count, the
// source's), so running it again, or into a store that is serving traffic,
// loses nothing and double-counts nothing. Then it verifies: it reads the
// source again and checks that the destination holds every row with at
// least the source's count.
package usagecopy

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"

	"github.com/offload-app/offload"
)

// Store is what a side of a copy must be: a store that lists and merges its
// rows, and can be asked for one count.
type Store interface {
	offload.UsageCopier
	Count(ctx context.Context, installID, feature string) (int64, error)
}

// DefaultBatch is how many rows one MergeRows carries: one transaction each,
// small enough not to hold the destination's writer for long.
const DefaultBatch = 500

// Phase is the step a Progress report is about.
type Phase int

const (
	Copying Phase = iota
	Verifying
)

// Progress is reported after every batch copied and every batch verified.
type Progress struct {
	Phase Phase
	Rows  int64 // rows copied (Copying) or checked (Verifying) so far
}

// Options tune Copy. The zero value is usable.
type Options struct {
	Batch    int            // rows per MergeRows (DefaultBatch when 0)
	Progress func(Progress) // called from Copy's goroutine; may be nil
}

// Result is what Copy did.
type Result struct {
	Copied   int64 // source rows merged into the destination
	Verified int64 // source rows found in the destination with at least their count
}

// VerifyError says that some source rows are missing from the destination
// or lower there (a row erased or released in the destination meanwhile, or
// a store that lost writes). It names no key.
type VerifyError struct {
	Checked, Bad int64
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("verification failed: %d of %d source rows are missing or lower in the destination", e.Bad, e.Checked)
}

// Copy merges every row of src into dst in batches, then verifies. The
// error of a failed batch says how many rows were merged before it; what
// was merged stays (running Copy again finishes the job).
func Copy(ctx context.Context, src, dst Store, o Options) (Result, error) {
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	report := func(p Phase, n int64) {
		if o.Progress != nil {
			o.Progress(Progress{Phase: p, Rows: n})
		}
	}
	var res Result
	batch := make([]offload.UsageRow, 0, o.Batch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := dst.MergeRows(ctx, batch); err != nil {
			return fmt.Errorf("merge rows %d to %d into the destination: %w", res.Copied+1, res.Copied+int64(len(batch)), err)
		}
		res.Copied += int64(len(batch))
		clear(batch)
		batch = batch[:0]
		report(Copying, res.Copied)
		return nil
	}
	err := src.EachRow(ctx, func(r offload.UsageRow) error {
		batch = append(batch, r)
		if len(batch) == o.Batch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, fmt.Errorf("copy (%d rows merged): %w", res.Copied, err)
	}

	verified, err := verify(ctx, src, dst, o.Batch, func(n int64) { report(Verifying, n) })
	res.Verified = verified
	return res, err
}

// verify walks src and dst side by side (both list rows in (install_id,
// feature) byte order), so the check costs two sequential reads, not one
// query per row. A source row the walk does not find in dst with at least
// its count is asked of dst directly before it counts as bad, so a store
// that orders differently costs speed, not correctness.
func verify(ctx context.Context, src, dst Store, every int, progress func(int64)) (int64, error) {
	dstRows, stop := pull(ctx, dst)
	defer stop()
	var (
		checked, bad int64
		cur          offload.UsageRow
		have         bool
		dstDone      bool
	)
	next := func() error {
		r, err, ok := dstRows()
		if err != nil {
			return err
		}
		cur, have, dstDone = r, ok, !ok
		return nil
	}
	err := src.EachRow(ctx, func(r offload.UsageRow) error {
		for !dstDone && (!have || compare(cur, r) < 0) {
			if err := next(); err != nil {
				return fmt.Errorf("read the destination: %w", err)
			}
		}
		ok := have && compare(cur, r) == 0 && cur.Count >= r.Count
		if !ok {
			n, err := dst.Count(ctx, r.InstallID, r.Feature)
			if err != nil {
				return fmt.Errorf("read the destination: %w", err)
			}
			ok = n >= r.Count
		}
		checked++
		if !ok {
			bad++
		}
		if checked%int64(every) == 0 {
			progress(checked)
		}
		return nil
	})
	if err != nil {
		return checked - bad, fmt.Errorf("verify: %w", err)
	}
	progress(checked)
	if bad > 0 {
		return checked - bad, &VerifyError{Checked: checked, Bad: bad}
	}
	return checked, nil
}

func compare(a, b offload.UsageRow) int {
	if c := strings.Compare(a.InstallID, b.InstallID); c != 0 {
		return c
	}
	return strings.Compare(a.Feature, b.Feature)
}

// errStop ends the destination's walk when verify no longer needs it.
var errStop = errors.New("usagecopy: stop")

// pull turns s.EachRow into a pull iterator: next returns the following row
// (ok false at the end) or the walk's error.
func pull(ctx context.Context, s Store) (next func() (offload.UsageRow, error, bool), stop func()) {
	var walkErr error
	seq := func(yield func(offload.UsageRow) bool) {
		err := s.EachRow(ctx, func(r offload.UsageRow) error {
			if !yield(r) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			walkErr = err
		}
	}
	n, stop := iter.Pull(iter.Seq[offload.UsageRow](seq))
	return func() (offload.UsageRow, error, bool) {
		r, ok := n()
		if !ok && walkErr != nil {
			return r, walkErr, false
		}
		return r, nil, ok
	}, stop
}
