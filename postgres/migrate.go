package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationFiles holds the schema history, one file per version, applied in
// order. Files are never edited once released: a change is a new file.
//
// This is the same small scheme as package sqlite rather than a migration
// library (golang-migrate and the like): the schema is one table, the whole
// mechanism is one transaction under one advisory lock, and a library would
// bring a second connection path, its own lock table and a dependency tree
// for no behaviour we need.
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
		return nil, fmt.Errorf("postgres: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries { // ReadDir sorts by name, so by version
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			return nil, fmt.Errorf("postgres: migration file %q is not named NNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v != len(ms)+1 {
			return nil, fmt.Errorf("postgres: migration %q has version %d, want %d", e.Name(), v, len(ms)+1)
		}
		b, err := fs.ReadFile(fsys, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("postgres: read migration %q: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("postgres: no migrations")
	}
	return ms, nil
}

// schemaTooNewError says the database was migrated by a newer binary. Running
// on it could misread or damage data this binary does not know about.
type schemaTooNewError struct{ have, known int }

func (e *schemaTooNewError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than the %d this binary knows; run a newer binary", e.have, e.known)
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
func migrate(ctx context.Context, pool *pgxpool.Pool, ms []migration) error {
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
			return &schemaTooNewError{have: have, known: len(ms)}
		}
		for _, m := range ms[have:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return &migrationError{name: m.name, err: err}
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
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
