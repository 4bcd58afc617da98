package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"math/bits"
	"strings"

	sqlite3 "modernc.org/sqlite/lib"
)

// maxChunk is the most requests one upsert statement writes. A statement is
// prepared for every power of two up to it (rows cannot be padded: every
// row is a write), so a chunk of n requests runs as at most
// log2(maxChunk)+1 statements.
const maxChunk = 64

const chunkSizes = 7 // 1, 2, 4, …, maxChunk

// upsertStmts holds the prepared upserts of the writer connection, by kind
// of write and by log2 of the number of rows.
type upsertStmts [2][chunkSizes]*sql.Stmt

// upsertSQL is one INSERT … ON CONFLICT DO UPDATE … RETURNING of rows rows.
// ?1 is the timestamp; each row then binds its install id, feature and, for
// a reconcile, count to anonymous parameters (2, 3, …), which the driver
// binds without a name lookup per parameter. RETURNING names each row's key
// because SQLite leaves the order of the returned rows unspecified.
func upsertSQL(op opKind, rows int) string {
	row, update := "(?1, ?1, ?, ?, 1)", "count + 1"
	if op == opReconcile {
		row, update = "(?1, ?1, ?, ?, ?)", "max(count, excluded.count)"
	}
	return "INSERT INTO usage_counts (created_at, updated_at, install_id, feature, count) VALUES " +
		strings.Repeat(row+", ", rows-1) + row +
		" ON CONFLICT (install_id, feature) DO UPDATE SET count = " + update +
		", updated_at = excluded.updated_at RETURNING install_id, feature, count"
}

func (u *upsertStmts) prepare(ctx context.Context, c *sql.Conn) error {
	for _, op := range []opKind{opReconcile, opIncrement} {
		for i := range chunkSizes {
			st, err := c.PrepareContext(ctx, upsertSQL(op, 1<<i))
			if err != nil {
				return err
			}
			u[op][i] = st
		}
	}
	return nil
}

func (u *upsertStmts) close() error {
	var errs []error
	for _, byRows := range u {
		for _, st := range byRows {
			if st != nil {
				errs = append(errs, st.Close())
			}
		}
	}
	return errors.Join(errs...)
}

type key struct{ installID, feature string }

// batchWriter is the writer goroutine's scratch space for writing a batch,
// kept between batches so a batch allocates little.
type batchWriter struct {
	stmts  *upsertStmts
	chunk  []int            // batch indices of the chunk being formed
	keys   map[key]struct{} // the keys in chunk
	args   []any
	filled []bool
}

func newBatchWriter(stmts *upsertStmts) *batchWriter {
	return &batchWriter{
		stmts:  stmts,
		chunk:  make([]int, 0, maxChunk),
		keys:   make(map[key]struct{}, maxChunk),
		args:   make([]any, 0, 1+3*maxChunk),
		filled: make([]bool, maxChunk),
	}
}

// writeAll runs the upsert of every member of batch in the open transaction
// and sets its results entry: the RETURNING count, or ErrCountRange for a
// member whose row breaks a constraint. A returned error is a storage
// failure; the caller then rolls the whole transaction back.
//
// Members of one kind go into shared multi-row statements (reconciles
// first, then increments). Reordering members is free: none has been
// answered, so they are all concurrent. A chunk never holds one key twice,
// so every returned row belongs to exactly one member.
func (w *batchWriter) writeAll(ctx context.Context, batch []*request, results []result, now string) error {
	for _, op := range []opKind{opReconcile, opIncrement} {
		w.chunk = w.chunk[:0]
		clear(w.keys)
		for i, r := range batch {
			if r.op != op {
				continue
			}
			k := key{r.installID, r.feature}
			if _, dup := w.keys[k]; dup || len(w.chunk) == maxChunk {
				if err := w.writeChunk(ctx, op, batch, w.chunk, results, now); err != nil {
					return err
				}
				w.chunk = w.chunk[:0]
				clear(w.keys)
			}
			w.keys[k] = struct{}{}
			w.chunk = append(w.chunk, i)
		}
		if err := w.writeChunk(ctx, op, batch, w.chunk, results, now); err != nil {
			return err
		}
	}
	return nil
}

// writeChunk writes members (batch indices of distinct keys) with as few
// prepared statements as their count allows. If a statement breaks a
// constraint, SQLite undoes that statement alone, and its rows are redone
// one per statement, so only the bad row fails.
func (w *batchWriter) writeChunk(ctx context.Context, op opKind, batch []*request, members []int, results []result, now string) error {
	for len(members) > 0 {
		n := 1 << (bits.Len(uint(len(members))) - 1) // largest power of two ≤ len
		part := members[:n]
		members = members[n:]
		err := w.upsert(ctx, op, batch, part, results, now)
		if sqliteCode(err) != sqlite3.SQLITE_CONSTRAINT {
			if err != nil {
				return err
			}
			continue
		}
		for k := range part {
			err := w.upsert(ctx, op, batch, part[k:k+1], results, now)
			if sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT {
				results[part[k]] = result{err: ErrCountRange}
			} else if err != nil {
				return err
			}
		}
	}
	return nil
}

// upsert runs the statement for len(members) rows (a power of two) and
// gives each member the count returned for its key.
func (w *batchWriter) upsert(ctx context.Context, op opKind, batch []*request, members []int, results []result, now string) (err error) {
	st := w.stmts[op][bits.Len(uint(len(members)))-1]
	w.args = append(w.args[:0], now)
	for _, i := range members {
		r := batch[i]
		w.args = append(w.args, r.installID, r.feature)
		if op == opReconcile {
			w.args = append(w.args, r.count)
		}
	}
	rows, err := st.QueryContext(ctx, w.args...)
	clear(w.args) // drop references to the members' strings
	if err != nil {
		return err
	}
	defer func() {
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
	}()
	filled := w.filled[:len(members)]
	clear(filled)
	got := 0
	for rows.Next() {
		var k key
		var count int64
		if err := rows.Scan(&k.installID, &k.feature, &count); err != nil {
			return err
		}
		j := match(batch, members, filled, got, k)
		if j < 0 {
			return errUnexpectedRow
		}
		filled[j] = true
		results[members[j]].count = count
		got++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if got != len(members) {
		return errUnexpectedRow
	}
	return nil
}

func (r *request) is(k key) bool { return r.installID == k.installID && r.feature == k.feature }

// match is the position in members of the not yet filled member with key
// k, or -1. Rows come back in input order in practice, so the row's own
// position is tried first.
func match(batch []*request, members []int, filled []bool, pos int, k key) int {
	if pos < len(members) && !filled[pos] && batch[members[pos]].is(k) {
		return pos
	}
	for j, i := range members {
		if !filled[j] && batch[i].is(k) {
			return j
		}
	}
	return -1
}
