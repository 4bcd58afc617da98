package sqlite

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/offload-app/offload/internal/migrations"
)

// migrationFiles holds the schema history, one file per version, applied in
// order. Files are never edited once released: a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// loadMigrations reads this store's embedded migrations (package
// migrations checks their numbering).
func loadMigrations(fsys fs.FS) ([]migrations.Migration, error) {
	ms, err := migrations.Load(fsys)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return ms, nil
}

// migrate brings the database to the newest version in one IMMEDIATE
// transaction: the version check, every pending migration and the new
// user_version commit together or not at all, and a second process opening
// the same file at the same time waits for the lock and then finds nothing
// left to do.
func (s *Store) migrate(ctx context.Context, ms []migrations.Migration) (err error) {
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
		return &migrations.TooNewError{Have: have, Known: len(ms)}
	}
	if have == len(ms) {
		_, err := s.wconn.ExecContext(ctx, "COMMIT")
		return err
	}
	for _, m := range ms[have:] {
		if _, err := s.wconn.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	// PRAGMA takes no parameters; the value is our own integer.
	if _, err := s.wconn.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(len(ms))); err != nil {
		return err
	}
	_, err = s.wconn.ExecContext(ctx, "COMMIT")
	return err
}
