package usagecopy_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/internal/usagecopy"
)

// memStore is a sorted in-memory Store. reverse lists rows in the opposite
// order, to stand for a store whose order differs from the other side's.
type memStore struct {
	rows     map[[2]string]offload.UsageRow
	reverse  bool
	merges   int
	failAt   int // MergeRows call (1-based) that fails; 0: none
	lossy    bool
	eachRows int
}

func newMem(rows ...offload.UsageRow) *memStore {
	m := &memStore{rows: map[[2]string]offload.UsageRow{}}
	for _, r := range rows {
		m.rows[[2]string{r.InstallID, r.Feature}] = r
	}
	return m
}

func (m *memStore) EachRow(ctx context.Context, fn func(offload.UsageRow) error) error {
	m.eachRows++
	var all []offload.UsageRow
	for _, r := range m.rows {
		all = append(all, r)
	}
	slices.SortFunc(all, func(a, b offload.UsageRow) int {
		c := cmp.Or(strings.Compare(a.InstallID, b.InstallID), strings.Compare(a.Feature, b.Feature))
		if m.reverse {
			return -c
		}
		return c
	})
	for _, r := range all {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) MergeRows(ctx context.Context, rows []offload.UsageRow) error {
	m.merges++
	if m.merges == m.failAt {
		return errors.New("merge failed")
	}
	for _, r := range rows {
		if m.lossy {
			continue
		}
		k := [2]string{r.InstallID, r.Feature}
		old, ok := m.rows[k]
		if ok {
			r.Count = max(r.Count, old.Count)
			if old.UpdatedAt.After(r.UpdatedAt) {
				r.UpdatedAt = old.UpdatedAt
			}
		}
		m.rows[k] = r
	}
	return nil
}

func (m *memStore) Count(ctx context.Context, id, feature string) (int64, error) {
	return m.rows[[2]string{id, feature}].Count, nil
}

func rowsN(n int, count func(i int) int64) []offload.UsageRow {
	t := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var rows []offload.UsageRow
	for i := range n {
		rows = append(rows, offload.UsageRow{InstallID: fmt.Sprintf("install-%04d", i/3), Feature: fmt.Sprintf("f%d", i%3), Count: count(i), UpdatedAt: t})
	}
	return rows
}

func TestCopy(t *testing.T) {
	src := rowsN(1201, func(i int) int64 { return int64(i) })
	tests := []struct {
		name       string
		dst        *memStore
		batch      int
		wantErr    string
		wantCopied int64
		wantOK     int64
		wantMerges int
	}{
		{"empty destination", newMem(), 500, "", 1201, 1201, 3},
		{"higher destination counts stay", newMem(rowsN(1201, func(int) int64 { return 1 << 40 })...), 500, "", 1201, 1201, 3},
		{"batch of one", newMem(), 1, "", 1201, 1201, 1201},
		{"default batch", newMem(), 0, "", 1201, 1201, 3},
		{"destination in another order", &memStore{rows: map[[2]string]offload.UsageRow{}, reverse: true}, 500, "", 1201, 1201, 3},
		{"merge fails", &memStore{rows: map[[2]string]offload.UsageRow{}, failAt: 2}, 500, "rows 501 to 1000", 500, 0, 2},
		{"destination loses writes", &memStore{rows: map[[2]string]offload.UsageRow{}, lossy: true}, 500, "1200 of 1201", 1201, 1, 3}, // row 0 has count 0: absent is as good,
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var progress []usagecopy.Progress
			res, err := usagecopy.Copy(context.Background(), newMem(src...), tc.dst, usagecopy.Options{
				Batch:    tc.batch,
				Progress: func(p usagecopy.Progress) { progress = append(progress, p) },
			})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Copy: %v, want error containing %q", err, tc.wantErr)
			}
			if res.Copied != tc.wantCopied || res.Verified != tc.wantOK || tc.dst.merges != tc.wantMerges {
				t.Errorf("copied %d verified %d in %d merges, want %d, %d, %d", res.Copied, res.Verified, tc.dst.merges, tc.wantCopied, tc.wantOK, tc.wantMerges)
			}
			if err != nil {
				return
			}
			for _, r := range src {
				if got := tc.dst.rows[[2]string{r.InstallID, r.Feature}].Count; got < r.Count {
					t.Fatalf("%s/%s = %d, want at least %d", r.InstallID, r.Feature, got, r.Count)
				}
			}
			if last := progress[len(progress)-1]; last.Phase != usagecopy.Verifying || last.Rows != 1201 {
				t.Errorf("last progress %+v", last)
			}
			if !slices.IsSortedFunc(progress, func(a, b usagecopy.Progress) int {
				return cmp.Or(cmp.Compare(a.Phase, b.Phase), cmp.Compare(a.Rows, b.Rows))
			}) {
				t.Errorf("progress goes backwards: %v", progress)
			}
		})
	}
}

func TestCopyIsIdempotent(t *testing.T) {
	src := newMem(rowsN(10, func(i int) int64 { return int64(i + 1) })...)
	dst := newMem()
	for range 3 {
		res, err := usagecopy.Copy(context.Background(), src, dst, usagecopy.Options{})
		if err != nil || res.Copied != 10 || res.Verified != 10 {
			t.Fatalf("Copy = %+v, %v", res, err)
		}
	}
	if len(dst.rows) != 10 {
		t.Fatalf("%d rows", len(dst.rows))
	}
	for k, r := range src.rows {
		if dst.rows[k].Count != r.Count {
			t.Errorf("%v = %d, want %d", k, dst.rows[k].Count, r.Count)
		}
	}
}

func TestCopyOfAnEmptyStore(t *testing.T) {
	res, err := usagecopy.Copy(context.Background(), newMem(), newMem(), usagecopy.Options{})
	if err != nil || res != (usagecopy.Result{}) {
		t.Fatalf("Copy = %+v, %v", res, err)
	}
}

func TestVerifyErrorNamesNoKey(t *testing.T) {
	dst := &memStore{rows: map[[2]string]offload.UsageRow{}, lossy: true}
	_, err := usagecopy.Copy(context.Background(), newMem(offload.UsageRow{InstallID: "install-secret", Feature: "feature-secret", Count: 1}), dst, usagecopy.Options{})
	var ve *usagecopy.VerifyError
	if !errors.As(err, &ve) || ve.Bad != 1 || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Copy: %v", err)
	}
}
