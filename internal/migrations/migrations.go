// Package migrations reads the embedded, versioned schema files both usage
// stores apply (a "migrations" folder of NNN_name.sql files). Each store
// applies them its own way, in one transaction; the file scheme is shared.
package migrations

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
)

// Migration is one schema version.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

var fileName = regexp.MustCompile(`^([0-9]{3})_[a-z0-9_]+\.sql$`)

// Load reads the migrations of fsys and checks that they are numbered 1, 2,
// 3… without gaps, so a missing or misnamed file fails every Open instead of
// skipping a step.
func Load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries { // ReadDir sorts by name, so by version
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			return nil, fmt.Errorf("migration file %q is not named NNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v != len(ms)+1 {
			return nil, fmt.Errorf("migration %q has version %d, want %d", e.Name(), v, len(ms)+1)
		}
		b, err := fs.ReadFile(fsys, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations")
	}
	return ms, nil
}

// TooNewError says the database was migrated by a newer binary. Running on
// it could misread or damage data this binary does not know about.
type TooNewError struct{ Have, Known int }

func (e *TooNewError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than the %d this binary knows; run a newer binary", e.Have, e.Known)
}
