package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/offload-app/offload/internal/migrations"
)

// migrationFiles holds the schema history, one file per version, applied in
// order. Files are never edited once released: a change is a new file.
//
// This is the same small scheme as package sqlite (internal/migrations) rather than a migration
// library (golang-migrate and the like): the schema is one table, the whole
// mechanism is one transaction under one advisory lock, and a library would
// bring a second connection path, its own lock table and a dependency tree
// for no behaviour we need.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// loadMigrations reads this store's embedded migrations (package
// migrations checks their numbering).
func loadMigrations(fsys fs.FS) ([]migrations.Migration, error) {
	ms, err := migrations.Load(fsys)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return ms, nil
}

// Advisory lock classes (the first key of the two-key form), so our locks
// never meet another application's on a shared database.
const (
	lockClassMigrate = 0x6f666c01 // "ofl" 1: schema migrations
	lockClassInstall = 0x6f666c02 // "ofl" 2: creating rows of one install
)

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`

// migrate brings the database to the newest version in one transaction
// under an advisory lock: the version check, every pending migration and
// their schema_migrations rows commit together or not at all (PostgreSQL's
// DDL is transactional), and an instance starting at the same moment waits
// for the lock and then finds nothing left to do.
func migrate(ctx context.Context, pool *pgxpool.Pool, ms []migrations.Migration) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 0)", lockClassMigrate); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, createMigrationsTable); err != nil {
			return err
		}
		var have int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&have); err != nil {
			return err
		}
		if have > len(ms) {
			return &migrations.TooNewError{Have: have, Known: len(ms)}
		}
		for _, m := range ms[have:] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return &migrationError{name: m.Name, err: err}
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return err
			}
		}
		return nil
	})
}

// migrationError names the migration that failed; its cause stays out of
// the message like every driver error.
type migrationError struct {
	name string
	err  error
}

func (e *migrationError) Error() string { return "migration " + e.name + " failed" }
func (e *migrationError) Unwrap() error { return e.err }
