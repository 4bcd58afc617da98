package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/sqlite"
	"github.com/offload-app/offload/usagetest"
)

// MustOpenDB opens a store on a new file in a temporary folder and closes it
// when the test ends.
func MustOpenDB(tb testing.TB, opts ...sqlite.Option) *sqlite.Store {
	tb.Helper()
	return MustOpenPath(tb, filepath.Join(tb.TempDir(), "usage.db"), opts...)
}

// MustOpenPath opens a store on path and closes it when the test ends.
func MustOpenPath(tb testing.TB, path string, opts ...sqlite.Option) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), path, opts...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	usagetest.Run(t, func(t *testing.T) func() offload.UsageStore {
		path := filepath.Join(t.TempDir(), "usage.db")
		return func() offload.UsageStore {
			s, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		}
	})
}
