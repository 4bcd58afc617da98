package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/offload-app/offload"
)

// Causes that are not PostgreSQL errors.
var (
	errClosed       = errors.New("store closed")
	errNotDurable   = errors.New("synchronous_commit or fsync is off")
	errReadOnly     = errors.New("server is read-only")
	errBadURL       = errors.New("invalid connection string")
	errCloseTimeout = errors.New("close timed out")
	errUnexpected   = errors.New("unexpected result")
)

// ErrCountRange is returned for a negative count and for an increment past
// math.MaxInt64. It is a caller error, not a storage failure.
var ErrCountRange = errors.New("postgres: usage count out of range")

// ErrKey is the answer to an install id or feature that PostgreSQL text
// cannot hold (a NUL character or invalid UTF-8). It is checked before the
// write joins a batch, so one such request never fails the others.
var ErrKey = &offload.Error{Code: offload.CodeValidation, Message: "Install id and feature must be UTF-8 text without NUL characters"}

// storageErr wraps err, a failure of op, as an offload.StorageError whose
// reason comes from the failure's kind, never its text.
func storageErr(op string, err error) error {
	return &offload.StorageError{Op: op, Reason: reason(err), Cause: err}
}

// callErr is the error of a call made with the caller's ctx: the caller's
// own cancellation comes back as is (errors.Is(err, ctx.Err())), anything
// else as a storage failure.
func callErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return storageErr(op, err)
}

// reason says in a few fixed words what kind of failure err is.
func reason(err error) string {
	switch {
	case errors.Is(err, errClosed):
		return "store closed"
	case errors.Is(err, errNotDurable):
		return "the server does not make commits durable: synchronous_commit and fsync must be on"
	case errors.Is(err, errReadOnly):
		return "the server is read-only (a standby, or default_transaction_read_only)"
	case errors.Is(err, errBadURL):
		return "the database URL is not a valid PostgreSQL connection string"
	case errors.Is(err, errCloseTimeout):
		return "connections still busy when the close timeout passed; abandoned"
	case errors.Is(err, errUnexpected):
		return "unexpected result from the database"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), pgconn.Timeout(err):
		return "operation cancelled or timed out"
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pgReason(pe.Code)
	}
	var dnsErr *net.DNSError
	var tlsErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	var netErr net.Error
	switch {
	case errors.As(err, &dnsErr):
		return "cannot resolve the database host name"
	case errors.As(err, &tlsErr), errors.As(err, &recErr):
		return "TLS handshake with the database failed"
	case errors.As(err, &netErr):
		return "cannot reach the database server"
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return "cannot connect to the database"
	}
	return "unexpected failure"
}

// pgReason names a SQLSTATE (a five-character code, never a value) by its
// class, with the code itself for the operator to look up.
func pgReason(code string) string {
	words := "server error"
	switch {
	case code == "53100":
		words = "disk full on the database server"
	case code == "25006":
		words = "the server is read-only"
	case code == "28P01" || strings.HasPrefix(code, "28"):
		words = "authentication failed"
	case code == "3D000":
		words = "the database does not exist"
	case code == "57P01" || code == "57P02" || code == "57P03":
		words = "the server is shutting down or starting up"
	case code == "57014":
		words = "statement cancelled or timed out"
	case code == "40P01":
		words = "deadlock detected"
	case strings.HasPrefix(code, "08"):
		words = "connection failure"
	case strings.HasPrefix(code, "53"):
		words = "the server is out of resources"
	case strings.HasPrefix(code, "23"):
		words = "constraint violated"
	case strings.HasPrefix(code, "22"):
		words = "invalid data"
	case strings.HasPrefix(code, "42"):
		words = "schema or permission problem"
	case strings.HasPrefix(code, "58"), strings.HasPrefix(code, "XX"):
		words = "internal or I/O error on the server"
	}
	if !validSQLState(code) {
		return words
	}
	return words + " (SQLSTATE " + code + ")"
}

// validSQLState keeps anything but five digits or capitals out of messages.
func validSQLState(code string) bool {
	if len(code) != 5 {
		return false
	}
	for i := range len(code) {
		c := code[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// retryable reports whether a batch of idempotent writes that failed with
// err may be sent again on another connection: the connection broke or the
// server went away, not a refusal of the statement itself.
func retryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "40P01" || pe.Code == "40001"
	}
	return true // transport failure
}
