package sqlite

import (
	"context"
	"errors"

	"github.com/offload-app/offload"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Causes that are not SQLite errors.
var (
	errClosed     = errors.New("store closed") // a call made after Close
	errCorrupt    = errors.New("integrity check failed")
	errNotDurable = errors.New("WAL journal mode with synchronous=FULL is not available")
	// An upsert returned a row for no member of its chunk, or too few rows.
	errUnexpectedRow = errors.New("upsert returned an unexpected row")
	errReplaced      = errors.New("database file deleted or replaced")
	errCloseTimeout  = errors.New("close timed out")
	errBadTimestamp  = errors.New("unreadable timestamp")
)

// storageErr wraps err, a failure of op, as an offload.StorageError whose
// reason comes from the failure's kind, never its text.
func storageErr(op string, err error) error {
	return &offload.StorageError{Op: op, Reason: reason(err), Cause: err}
}

// reason says in a few fixed words what kind of failure err is.
func reason(err error) string {
	switch {
	case errors.Is(err, errClosed):
		return "store closed"
	case errors.Is(err, errCorrupt):
		return "database file is corrupt (integrity check failed)"
	case errors.Is(err, errNotDurable):
		return "cannot run the database in WAL mode with synchronous=FULL"
	case errors.Is(err, errUnexpectedRow):
		return "unexpected result from the database"
	case errors.Is(err, errReplaced):
		return "the database file was deleted or replaced after the store opened it; restart to open the file now at the path"
	case errors.Is(err, errBadTimestamp):
		return "a row has an unreadable timestamp"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "operation cancelled or timed out"
	}
	switch sqliteCode(err) {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return "database stayed locked by another writer for too long"
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return "database file is corrupt or is not a SQLite database"
	case sqlite3.SQLITE_FULL:
		return "disk or database is full"
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
		return "database is read-only"
	case sqlite3.SQLITE_CANTOPEN:
		return "cannot open database file"
	case sqlite3.SQLITE_IOERR:
		return "disk I/O error"
	case sqlite3.SQLITE_NOMEM:
		return "out of memory"
	case sqlite3.SQLITE_CONSTRAINT:
		return "constraint violated"
	case -1:
		return "unexpected failure"
	default:
		return "SQLite error"
	}
}

// sqliteCode is the primary SQLite result code of err, or -1 when err is not
// a SQLite error. The driver reports extended codes; the low byte is the
// primary one.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return -1
}

// isBusy reports whether err is a lock conflict that a later retry can clear.
func isBusy(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
}
