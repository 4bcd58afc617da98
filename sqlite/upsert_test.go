package sqlite

import (
	"strings"
	"testing"
)

// TestMatch: a returned row is given to the member with its key wherever
// SQLite puts it in the output, and to no member twice.
func TestMatch(t *testing.T) {
	batch := []*request{
		{installID: "a", feature: "f"},
		{installID: "b", feature: "f"},
		{installID: "a", feature: "g"},
		{installID: "c", feature: "f"},
	}
	members := []int{0, 1, 2, 3}
	filled := make([]bool, len(members))
	for pos, tc := range []struct {
		k    key
		want int
	}{
		{key{"a", "g"}, 2}, // out of order
		{key{"b", "f"}, 1}, // in place
		{key{"a", "g"}, -1},
		{key{"a", "f"}, 0},
		{key{"d", "f"}, -1},
	} {
		got := match(batch, members, filled, pos, tc.k)
		if got != tc.want {
			t.Fatalf("row %d %v: member %d, want %d", pos, tc.k, got, tc.want)
		}
		if got >= 0 {
			filled[got] = true
		}
	}
}

// TestUpsertSQL: every size has one row and the right number of
// parameters per row.
func TestUpsertSQL(t *testing.T) {
	for _, tc := range []struct {
		op     opKind
		perRow int
		update string
	}{
		{opReconcile, 3, "max(count, excluded.count)"},
		{opIncrement, 2, "count + 1"},
	} {
		for i := range chunkSizes {
			rows := 1 << i
			q := upsertSQL(tc.op, rows)
			if got := strings.Count(q, "(?1, ?1,"); got != rows {
				t.Errorf("op %d, %d rows: %d value rows", tc.op, rows, got)
			}
			if got := strings.Count(q, "?") - 2*rows; got != tc.perRow*rows {
				t.Errorf("op %d, %d rows: %d anonymous parameters, want %d", tc.op, rows, got, tc.perRow*rows)
			}
			if !strings.Contains(q, "SET count = "+tc.update) {
				t.Errorf("op %d: update clause missing in %q", tc.op, q)
			}
		}
	}
	if 1<<(chunkSizes-1) != maxChunk {
		t.Errorf("largest statement has %d rows, want maxChunk %d", 1<<(chunkSizes-1), maxChunk)
	}
}
