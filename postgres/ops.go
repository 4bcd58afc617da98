package postgres

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offload-app/offload"
)

// incrementSQL adds one, creating the row at 1. The WHERE is evaluated on
// the newest row version, locked, so an increment at math.MaxInt64 returns
// no row instead of failing the statement.
const incrementSQL = `INSERT INTO usage_counts (install_id, feature, count, created_at, updated_at)
VALUES ($1, $2, 1, $3, $3)
ON CONFLICT (install_id, feature) DO UPDATE
SET count = usage_counts.count + 1, updated_at = EXCLUDED.updated_at
WHERE usage_counts.count < 9223372036854775807
RETURNING count`

// reserveSQL adds one only while the count is below the quota ($4 > 0): no
// row returned means the row exists at or over quota, as seen under its
// row lock, so the check and the increment are one atomic step.
const reserveSQL = `INSERT INTO usage_counts (install_id, feature, count, created_at, updated_at)
VALUES ($1, $2, 1, $3, $3)
ON CONFLICT (install_id, feature) DO UPDATE
SET count = usage_counts.count + 1, updated_at = EXCLUDED.updated_at
WHERE usage_counts.count < $4::int8
RETURNING count`

const releaseSQL = `UPDATE usage_counts SET count = count - 1, updated_at = $3
WHERE install_id = $1 AND feature = $2 AND count > 0`

const countSQL = `SELECT count FROM usage_counts WHERE install_id = $1 AND feature = $2`

const eraseSQL = `DELETE FROM usage_counts WHERE install_id = $1`

// expireSQL deletes the oldest rows first, through the updated_at index.
// SKIP LOCKED leaves rows being written alone (they are being updated, so
// not idle) and lets two instances expire side by side; the locked rows are
// not updated by anyone else before the DELETE.
const expireSQL = `WITH doomed AS (
    SELECT install_id, feature FROM usage_counts
    WHERE updated_at < $1 ORDER BY updated_at LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM usage_counts AS u USING doomed AS d
WHERE u.install_id = d.install_id AND u.feature = d.feature`

// Pages of EachRow. Each page is its own short query (keyset pagination), so
// a slow fn never holds a transaction or a snapshot open on the server.
const (
	firstPageSQL = `SELECT install_id, feature, count, updated_at FROM usage_counts
ORDER BY install_id, feature LIMIT $1`
	nextPageSQL = `SELECT install_id, feature, count, updated_at FROM usage_counts
WHERE (install_id, feature) > ($2, $3) ORDER BY install_id, feature LIMIT $1`
)

const eachRowPage = 1000

// mergeSQL stores max(stored, count) and the later updated_at of each row,
// ignoring the feature cap, in one statement (so one transaction).
const mergeSQL = `INSERT INTO usage_counts (install_id, feature, count, created_at, updated_at)
SELECT install_id, feature, n, t, t
FROM unnest($1::text[], $2::text[], $3::int8[], $4::timestamptz[]) AS r(install_id, feature, n, t)
ON CONFLICT (install_id, feature) DO UPDATE
SET count = GREATEST(usage_counts.count, EXCLUDED.count),
    updated_at = GREATEST(usage_counts.updated_at, EXCLUDED.updated_at)`

// Increment adds one to the count durably and returns the new value. It is
// never refused by the feature cap; past math.MaxInt64 it is ErrCountRange.
func (s *Store) Increment(ctx context.Context, installID, feature string) (int64, error) {
	n, err := s.addOne(ctx, "increment", incrementSQL, installID, feature)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrCountRange
	}
	return n, err
}

// Reserve adds one while the count is below quota and returns the new
// value; at or over quota it is offload.ErrQuotaExceeded and changes nothing.
func (s *Store) Reserve(ctx context.Context, installID, feature string, quota int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if quota <= 0 {
		return 0, offload.ErrQuotaExceeded
	}
	n, err := s.addOne(ctx, "reserve", reserveSQL, installID, feature, quota)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, offload.ErrQuotaExceeded
	}
	return n, err
}

// addOne runs an increment-like statement; pgx.ErrNoRows means its WHERE
// refused the update.
func (s *Store) addOne(ctx context.Context, op, sql, installID, feature string, extra ...any) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !validKey(installID) || !validKey(feature) {
		return 0, ErrKey
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	start := time.Now()
	var n int64
	err := s.pool.QueryRow(ctx, sql, append([]any{installID, feature, s.now()}, extra...)...).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, err
	}
	if err != nil {
		return 0, callErr(ctx, op, err)
	}
	s.cfg.metrics.UsageCommit(1, time.Since(start))
	return n, nil
}

// Release gives back one Reserve; the count never goes below 0, and an
// unknown key is not an error.
func (s *Store) Release(ctx context.Context, installID, feature string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validKey(installID) || !validKey(feature) {
		return ErrKey
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	start := time.Now()
	if _, err := s.pool.Exec(ctx, releaseSQL, installID, feature, s.now()); err != nil {
		return callErr(ctx, "release", err)
	}
	s.cfg.metrics.UsageCommit(1, time.Since(start))
	return nil
}

// Count returns the stored count (0 for an unknown key).
func (s *Store) Count(ctx context.Context, installID, feature string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !validKey(installID) || !validKey(feature) {
		return 0, nil // text that cannot be stored has no row
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	var n int64
	err := s.pool.QueryRow(ctx, countSQL, installID, feature).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, callErr(ctx, "read", err)
	}
	return n, nil
}

// Erase deletes every count of the install, durably, and returns how many
// rows went.
func (s *Store) Erase(ctx context.Context, installID string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !validKey(installID) {
		return 0, nil
	}
	return s.exec(ctx, "erase", eraseSQL, installID)
}

// Expire deletes at most limit rows not updated since before, oldest first,
// and returns how many went.
func (s *Store) Expire(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	return s.exec(ctx, "expire", expireSQL, before.UTC(), limit)
}

func (s *Store) exec(ctx context.Context, op, sql string, args ...any) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	start := time.Now()
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return 0, callErr(ctx, op, err)
	}
	n := tag.RowsAffected()
	s.cfg.metrics.UsageCommit(int(n), time.Since(start))
	return n, nil
}

// EachRow calls fn for every row in (install_id, feature) byte order, a
// page at a time. Rows written meanwhile may or may not be seen; none is
// seen twice. An error from fn stops the walk and is returned as is.
func (s *Store) EachRow(ctx context.Context, fn func(offload.UsageRow) error) error {
	page := make([]offload.UsageRow, 0, eachRowPage)
	var last offload.UsageRow
	for first := true; ; first = false {
		if err := ctx.Err(); err != nil {
			return err
		}
		page = page[:0]
		if err := s.readPage(ctx, first, last, &page); err != nil {
			return err
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < eachRowPage {
			return nil
		}
		last = page[len(page)-1]
	}
}

func (s *Store) readPage(ctx context.Context, first bool, after offload.UsageRow, page *[]offload.UsageRow) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	var rows pgx.Rows
	var err error
	if first {
		rows, err = s.pool.Query(ctx, firstPageSQL, eachRowPage)
	} else {
		rows, err = s.pool.Query(ctx, nextPageSQL, eachRowPage, after.InstallID, after.Feature)
	}
	if err != nil {
		return callErr(ctx, "read", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r offload.UsageRow
		if err := rows.Scan(&r.InstallID, &r.Feature, &r.Count, &r.UpdatedAt); err != nil {
			return callErr(ctx, "read", err)
		}
		r.UpdatedAt = r.UpdatedAt.UTC()
		*page = append(*page, r)
	}
	if err := rows.Err(); err != nil {
		return callErr(ctx, "read", err)
	}
	return nil
}

// MergeRows stores max(stored, row.Count) and the later updated_at of each
// row, durably, in one statement, ignoring the feature cap. Rows repeating a
// key merge among themselves first. A row with a negative count is
// ErrCountRange and one with a key PostgreSQL text cannot hold is ErrKey;
// then nothing is written. A zero UpdatedAt counts as now.
func (s *Store) MergeRows(ctx context.Context, rows []offload.UsageRow) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	index := make(map[key]int, len(rows))
	ids := make([]string, 0, len(rows))
	features := make([]string, 0, len(rows))
	counts := make([]int64, 0, len(rows))
	times := make([]time.Time, 0, len(rows))
	for _, r := range rows {
		if r.Count < 0 {
			return ErrCountRange
		}
		if !validKey(r.InstallID) || !validKey(r.Feature) {
			return ErrKey
		}
		t := r.UpdatedAt.UTC()
		if r.UpdatedAt.IsZero() {
			t = now
		}
		k := key{r.InstallID, r.Feature}
		if j, ok := index[k]; ok {
			counts[j] = max(counts[j], r.Count)
			if t.After(times[j]) {
				times[j] = t
			}
			continue
		}
		index[k] = len(ids)
		ids = append(ids, r.InstallID)
		features = append(features, r.Feature)
		counts = append(counts, r.Count)
		times = append(times, t)
	}
	if len(ids) == 0 {
		return nil
	}
	// Key order, as the reconcile groups lock rows, so a merge into a live
	// store never deadlocks with them.
	perm := make([]int, len(ids))
	for i := range perm {
		perm[i] = i
	}
	slices.SortFunc(perm, func(a, b int) int {
		return cmp.Or(strings.Compare(ids[a], ids[b]), strings.Compare(features[a], features[b]))
	})
	ids, features, counts, times = permute(ids, perm), permute(features, perm), permute(counts, perm), permute(times, perm)
	_, err := s.exec(ctx, "merge", mergeSQL, ids, features, counts, times)
	return err
}

func permute[T any](v []T, perm []int) []T {
	out := make([]T, len(v))
	for i, j := range perm {
		out[i] = v[j]
	}
	return out
}
