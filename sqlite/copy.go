package sqlite

import (
	"context"
	"time"

	"github.com/offload-app/offload"
)

// pageRows is how many rows EachRow reads per query. Each page is its own
// short read, so fn runs with no read transaction open: the WAL can be
// checkpointed meanwhile, and fn may write to this very store.
const pageRows = 256

const (
	firstPageSQL = `SELECT install_id, feature, count, updated_at FROM usage_counts
		ORDER BY install_id, feature LIMIT ?1`
	nextPageSQL = `SELECT install_id, feature, count, updated_at FROM usage_counts
		WHERE (install_id, feature) > (?1, ?2) ORDER BY install_id, feature LIMIT ?3`
)

// EachRow calls fn for every row in (install_id, feature) byte order, a page
// at a time, and stops at fn's first error, which it returns as is. Rows
// written while it runs may or may not be listed.
func (s *Store) EachRow(ctx context.Context, fn func(offload.UsageRow) error) error {
	page := make([]offload.UsageRow, 0, pageRows)
	var after *key
	for {
		if err := s.ready(ctx, "read"); err != nil {
			return err
		}
		var err error
		if page, err = s.readPage(ctx, after, page[:0]); err != nil {
			return err
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < pageRows {
			return nil
		}
		last := page[len(page)-1]
		after = &key{last.InstallID, last.Feature}
	}
}

// readPage appends to page the rows after the key after (from the first
// when nil).
func (s *Store) readPage(ctx context.Context, after *key, page []offload.UsageRow) ([]offload.UsageRow, error) {
	st, args := s.pageStmts[0], []any{pageRows}
	if after != nil {
		st, args = s.pageStmts[1], []any{after.installID, after.feature, pageRows}
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, readErr(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var r offload.UsageRow
		var updated string
		if err := rows.Scan(&r.InstallID, &r.Feature, &r.Count, &updated); err != nil {
			return nil, readErr(ctx, err)
		}
		if r.UpdatedAt, err = parseTime(updated); err != nil {
			return nil, storageErr("read", err)
		}
		page = append(page, r)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr(ctx, err)
	}
	return page, nil
}

// parseTime reads a stored timestamp: ours and the Python deployment's are
// in timeFormat; RFC 3339 is what migration 002 wrote, accepted in case a
// row was put in by hand since.
func parseTime(v string) (time.Time, error) {
	t, err := time.ParseInLocation(timeFormat, v, time.UTC)
	if err != nil {
		if t, err = time.Parse(time.RFC3339, v); err != nil {
			return time.Time{}, errBadTimestamp
		}
	}
	return t.UTC().Truncate(time.Second), nil
}

// MergeRows stores max(stored, row.Count) for every row, with updated_at the
// later of the two, in one durable transaction and ignoring the feature
// cap. A negative count is ErrCountRange for the whole call, which then
// writes nothing; a zero UpdatedAt is taken as now. Keep the slice to a few
// thousand rows: the writer commits nothing else while it runs.
func (s *Store) MergeRows(ctx context.Context, rows []offload.UsageRow) error {
	for _, r := range rows {
		if r.Count < 0 {
			return ErrCountRange
		}
	}
	if len(rows) == 0 {
		return s.ready(ctx, "write")
	}
	now := s.cfg.clock.Now()
	in := make([]offload.UsageRow, len(rows))
	for i, r := range rows {
		if r.UpdatedAt.IsZero() {
			r.UpdatedAt = now
		}
		in[i] = r
	}
	r := s.newRequest(opMerge, "", "", 0)
	r.rows = in
	_, err := s.do(ctx, r)
	return err
}
