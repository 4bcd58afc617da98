package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"math/bits"
	"strconv"
	"strings"

	"github.com/offload-app/offload"
	sqlite3 "modernc.org/sqlite/lib"
)

// maxChunk is the most requests one multi-row statement writes. A statement
// is prepared for every power of two up to it (rows cannot be padded: every
// row is a write), so a chunk of n requests runs as at most
// log2(maxChunk)+1 statements.
const maxChunk = 64

const chunkSizes = 7 // 1, 2, 4, …, maxChunk

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

// updateSQL raises the existing rows among rows reconciles (?1 is the
// timestamp, then install id, feature and count per row) and returns them;
// the keys it does not return have no row yet, and creating one is subject
// to the feature cap. Splitting the upsert this way costs nothing when the
// row exists, the usual case, and lets the cap be checked for new rows only.
func updateSQL(rows int) string {
	const row = "(?, ?, ?)"
	return "UPDATE usage_counts SET count = max(usage_counts.count, v.column3), updated_at = ?1 FROM (VALUES " +
		strings.Repeat(row+", ", rows-1) + row +
		") AS v WHERE usage_counts.install_id = v.column1 AND usage_counts.feature = v.column2" +
		" RETURNING install_id, feature, count"
}

// The statements that write one request each.
const (
	featuresSQL = `SELECT count(*) FROM usage_counts WHERE install_id = ?1`
	// The WHERE of DO UPDATE leaves a row at or over the quota alone, and
	// then nothing is returned. A missing row is created at 1: Reserve is
	// only sent with a quota of 1 or more.
	reserveSQL = `INSERT INTO usage_counts (created_at, updated_at, install_id, feature, count) VALUES (?1, ?1, ?2, ?3, 1)
		ON CONFLICT (install_id, feature) DO UPDATE SET count = count + 1, updated_at = excluded.updated_at
		WHERE count < ?4 RETURNING count`
	releaseSQL = `UPDATE usage_counts SET count = count - 1, updated_at = ?1
		WHERE install_id = ?2 AND feature = ?3 AND count > 0`
	eraseSQL = `DELETE FROM usage_counts WHERE install_id = ?1`
	// Oldest first along the updated_at index, so a batch costs its own rows
	// and not a scan of the table.
	expireSQL = `DELETE FROM usage_counts WHERE (install_id, feature) IN
		(SELECT install_id, feature FROM usage_counts WHERE updated_at < ?1 ORDER BY updated_at LIMIT ?2)`
	mergeSQL = `INSERT INTO usage_counts (created_at, updated_at, install_id, feature, count) VALUES (?1, ?1, ?2, ?3, ?4)
		ON CONFLICT (install_id, feature) DO UPDATE SET count = max(count, excluded.count),
		updated_at = max(updated_at, excluded.updated_at)`
)

// stmts holds the prepared statements of the writer connection.
type stmts struct {
	upserts  [2][chunkSizes]*sql.Stmt // by kind (reconcile, increment) and log2 of rows
	updates  [chunkSizes]*sql.Stmt    // reconciles of existing rows, by log2 of rows
	features *sql.Stmt
	reserve  *sql.Stmt
	release  *sql.Stmt
	erase    *sql.Stmt
	expire   *sql.Stmt
	merge    *sql.Stmt
}

func (st *stmts) prepare(ctx context.Context, c *sql.Conn) error {
	prep := func(dst **sql.Stmt, q string) error {
		p, err := c.PrepareContext(ctx, q)
		*dst = p
		return err
	}
	for i := range chunkSizes {
		for _, op := range []opKind{opReconcile, opIncrement} {
			if err := prep(&st.upserts[op][i], upsertSQL(op, 1<<i)); err != nil {
				return err
			}
		}
		if err := prep(&st.updates[i], updateSQL(1<<i)); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&st.features, featuresSQL}, {&st.reserve, reserveSQL}, {&st.release, releaseSQL},
		{&st.erase, eraseSQL}, {&st.expire, expireSQL}, {&st.merge, mergeSQL},
	} {
		if err := prep(p.dst, p.q); err != nil {
			return err
		}
	}
	return nil
}

func (st *stmts) close() error {
	all := []*sql.Stmt{st.features, st.reserve, st.release, st.erase, st.expire, st.merge}
	for i := range chunkSizes {
		all = append(all, st.upserts[opReconcile][i], st.upserts[opIncrement][i], st.updates[i])
	}
	var errs []error
	for _, p := range all {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

type key struct{ installID, feature string }

// batchWriter is the writer goroutine's scratch space for writing a batch,
// kept between batches so a batch allocates little.
type batchWriter struct {
	conn        *sql.Conn
	stmts       *stmts
	maxFeatures int
	chunk       []int            // batch indices of the chunk being formed
	keys        map[key]struct{} // the keys in chunk
	missing     []int            // reconciles of the chunk that have no row yet
	features    map[string]int   // rows per install, as the cap check counts them
	args        []any
	filled      []bool
}

func newBatchWriter(conn *sql.Conn, st *stmts, maxFeatures int) *batchWriter {
	return &batchWriter{
		conn:        conn,
		stmts:       st,
		maxFeatures: maxFeatures,
		chunk:       make([]int, 0, maxChunk),
		keys:        make(map[key]struct{}, maxChunk),
		missing:     make([]int, 0, maxChunk),
		features:    make(map[string]int),
		args:        make([]any, 0, 1+3*maxChunk),
		filled:      make([]bool, maxChunk),
	}
}

// writeAll runs every member of batch in the open transaction and sets its
// results entry: the count, or an error of the member alone
// (ErrCountRange, offload.ErrFeatureLimit, offload.ErrQuotaExceeded). A
// returned error is a storage failure; the caller then rolls the whole
// transaction back.
//
// Reconciles go first, then increments, each kind in shared multi-row
// statements, then the other kinds one by one. Reordering members is free:
// none has been answered, so they are all concurrent. A chunk never holds
// one key twice, so every returned row belongs to exactly one member.
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
				if err := w.flush(ctx, op, batch, w.chunk, results, now); err != nil {
					return err
				}
				w.chunk = w.chunk[:0]
				clear(w.keys)
			}
			w.keys[k] = struct{}{}
			w.chunk = append(w.chunk, i)
		}
		if err := w.flush(ctx, op, batch, w.chunk, results, now); err != nil {
			return err
		}
	}
	for i, r := range batch {
		if r.op == opReconcile || r.op == opIncrement {
			continue
		}
		res, err := w.single(ctx, r, now)
		if err != nil {
			return err
		}
		results[i] = res
	}
	return nil
}

// flush writes one chunk of members of kind op.
func (w *batchWriter) flush(ctx context.Context, op opKind, batch []*request, members []int, results []result, now string) error {
	if op == opReconcile {
		return w.reconcileChunk(ctx, batch, members, results, now)
	}
	return w.writeChunk(ctx, op, batch, members, results, now)
}

// reconcileChunk raises the rows that exist, then creates the missing ones
// that the feature cap allows. The transaction holds the write lock, so no
// other connection can add a row between the count and the insert, and the
// count of an install is carried from one new row to the next, so two new
// features of one install in one chunk are counted as two.
func (w *batchWriter) reconcileChunk(ctx context.Context, batch []*request, members []int, results []result, now string) error {
	for _, i := range members {
		results[i].count = -1 // no row yet, until the update returns one
	}
	for part := range powersOfTwo(members) {
		if err := w.run(ctx, w.stmts.updates[bits.Len(uint(len(part)))-1], opReconcile, batch, part, results, now, false); err != nil {
			return err
		}
	}
	w.missing = w.missing[:0]
	clear(w.features)
	for _, i := range members {
		if results[i].count >= 0 {
			continue
		}
		if w.maxFeatures > 0 {
			id := batch[i].installID
			n, ok := w.features[id]
			if !ok {
				if err := w.stmts.features.QueryRowContext(ctx, id).Scan(&n); err != nil {
					return err
				}
			}
			if n >= w.maxFeatures {
				w.features[id] = n
				results[i] = result{err: offload.ErrFeatureLimit}
				continue
			}
			w.features[id] = n + 1
		}
		w.missing = append(w.missing, i)
	}
	return w.writeChunk(ctx, opReconcile, batch, w.missing, results, now)
}

// powersOfTwo cuts members into parts of decreasing powers of two.
func powersOfTwo(members []int) func(yield func([]int) bool) {
	return func(yield func([]int) bool) {
		for len(members) > 0 {
			n := 1 << (bits.Len(uint(len(members))) - 1) // largest power of two ≤ len
			if !yield(members[:n]) {
				return
			}
			members = members[n:]
		}
	}
}

// writeChunk upserts members (batch indices of distinct keys) with as few
// prepared statements as their count allows. If a statement breaks a
// constraint, SQLite undoes that statement alone, and its rows are redone
// one per statement, so only the bad row fails.
func (w *batchWriter) writeChunk(ctx context.Context, op opKind, batch []*request, members []int, results []result, now string) error {
	for part := range powersOfTwo(members) {
		st := w.stmts.upserts[op][bits.Len(uint(len(part)))-1]
		err := w.run(ctx, st, op, batch, part, results, now, true)
		if sqliteCode(err) != sqlite3.SQLITE_CONSTRAINT {
			if err != nil {
				return err
			}
			continue
		}
		for k := range part {
			err := w.run(ctx, w.stmts.upserts[op][0], op, batch, part[k:k+1], results, now, true)
			if sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT {
				results[part[k]] = result{err: ErrCountRange}
			} else if err != nil {
				return err
			}
		}
	}
	return nil
}

// run runs st for len(members) rows (a power of two) and gives each member
// the count returned for its key. all says that every member must get a
// row back (an upsert); an update returns only the rows that exist.
func (w *batchWriter) run(ctx context.Context, st *sql.Stmt, op opKind, batch []*request, members []int, results []result, now string, all bool) (err error) {
	w.args = append(w.args[:0], now)
	for _, i := range members {
		r := batch[i]
		w.args = append(w.args, r.installID, r.feature)
		if op == opReconcile {
			w.args = append(w.args, r.n)
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
	if all && got != len(members) {
		return errUnexpectedRow
	}
	return nil
}

// single runs one request of a kind that has a statement of its own. A
// returned error is a storage failure; a failure of the member alone is in
// the result.
func (w *batchWriter) single(ctx context.Context, r *request, now string) (result, error) {
	switch r.op {
	case opReserve:
		var n int64
		err := w.stmts.reserve.QueryRowContext(ctx, now, r.installID, r.feature, r.n).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return result{err: offload.ErrQuotaExceeded}, nil
		}
		return result{count: n}, err
	case opRelease:
		_, err := w.stmts.release.ExecContext(ctx, now, r.installID, r.feature)
		return result{}, err
	case opErase:
		return affected(w.stmts.erase.ExecContext(ctx, r.installID))
	case opExpire:
		return affected(w.stmts.expire.ExecContext(ctx, r.before, r.n))
	case opMerge:
		for _, row := range r.rows {
			if _, err := w.stmts.merge.ExecContext(ctx, row.UpdatedAt.UTC().Format(timeFormat), row.InstallID, row.Feature, row.Count); err != nil {
				return result{}, err
			}
		}
		return result{count: int64(len(r.rows))}, nil
	case opProbe:
		// Rewriting user_version with its own value is the smallest write
		// there is (the header page): the commit then really reaches the
		// disk, so a full, read-only or failing disk shows.
		// The value is read in this transaction, which holds the write
		// lock, so a newer binary's migration cannot be undone by it.
		var v int
		if err := w.conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return result{}, err
		}
		// PRAGMA takes no parameters; the value is an integer just read.
		_, err := w.conn.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(v))
		return result{}, err
	}
	return result{}, errUnexpectedRow
}

func affected(res sql.Result, err error) (result, error) {
	if err != nil {
		return result{}, err
	}
	n, err := res.RowsAffected()
	return result{count: n}, err
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
