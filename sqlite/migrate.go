package sqlite

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
)

// migrationFiles holds the schema history, one file per version, applied in
// order. Files are never edited once released: a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema version.
type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{3})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the migrations of fsys (a "migrations" folder of
// NNN_name.sql files) and checks that they are numbered 1, 2, 3… without gaps,
// so a missing or misnamed file fails every Open instead of skipping a step.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqlite: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries { // ReadDir sorts by name, so by version
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			return nil, fmt.Errorf("sqlite: migration file %q is not named NNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v != len(ms)+1 {
			return nil, fmt.Errorf("sqlite: migration %q has version %d, want %d", e.Name(), v, len(ms)+1)
		}
		b, err := fs.ReadFile(fsys, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("sqlite: read migration %q: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("sqlite: no migrations")
	}
	return ms, nil
}

// schemaTooNewError says the database was migrated by a newer binary. Running
// on it could misread or damage data this binary does not know about.
type schemaTooNewError struct{ have, known int }

func (e *schemaTooNewError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than the %d this binary knows; run a newer binary", e.have, e.known)
}

// migrate brings the database to the newest version in one IMMEDIATE
// transaction: the version check, every pending migration and the new
// user_version commit together or not at all, and a second process opening
// the same file at the same time waits for the lock and then finds nothing
// left to do.
func (s *Store) migrate(ctx context.Context, ms []migration) (err error) {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.rollback()
		}
	}()
	var have int
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&have); err != nil {
		return err
	}
	if have > len(ms) {
		return &schemaTooNewError{have: have, known: len(ms)}
	}
	if have == len(ms) {
		_, err := s.wconn.ExecContext(ctx, "COMMIT")
		return err
	}
	for _, m := range ms[have:] {
		if _, err := s.wconn.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	// PRAGMA takes no parameters; the value is our own integer.
	if _, err := s.wconn.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(len(ms))); err != nil {
		return err
	}
	_, err = s.wconn.ExecContext(ctx, "COMMIT")
	return err
}
