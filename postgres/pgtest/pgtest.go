// Package pgtest gives tests a PostgreSQL database of their own on the
// machine's server, and skips (or, with CI=true, fails) when there is none.
//
// The server is OFFLOAD_TEST_POSTGRES_URL, by default
// postgres://postgres@127.0.0.1:5432/test (trust auth, as on the
// developers' machines and in CI, where .ci/run starts it).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server the tests use unless OFFLOAD_TEST_POSTGRES_URL
// names another.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// AdminURL is the URL of the database the helpers connect to for creating
// and dropping test databases.
func AdminURL() string {
	if u := os.Getenv("OFFLOAD_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultURL
}

const howToRun = "start PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres and a database test " +
	"(`service postgresql start`; .ci/run does it), or point OFFLOAD_TEST_POSTGRES_URL at a server " +
	"where the user may create databases; with CI=true this is a failure, not a skip"

// connect opens an admin connection, or skips/fails t when the server is
// not there.
func connect(tb testing.TB, rawURL string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("PostgreSQL is not reachable (%v); %s", err, howToRun)
		}
		tb.Skipf("PostgreSQL is not reachable (%v); to run this test, %s", err, howToRun)
	}
	return c
}

// Database creates a new, empty database for tb and returns its URL. It is
// dropped when tb ends, after its remaining connections are terminated.
func Database(tb testing.TB) string {
	tb.Helper()
	admin := AdminURL()
	c := connect(tb, admin)
	defer c.Close(context.Background())
	name := "offload_test_" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() { drop(tb, admin, name) })
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("pgtest: OFFLOAD_TEST_POSTGRES_URL must be a postgres:// URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func drop(tb testing.TB, admin, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Errorf("pgtest: drop database %s: %v", name, err)
		return
	}
	defer c.Close(context.Background())
	// FORCE terminates the connections still open on it (a store a test
	// abandoned), then drops.
	if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		tb.Errorf("pgtest: drop database %s: %v", name, err)
	}
}

// Schema creates a new schema in the database at dbURL and returns a URL
// whose connections use it (search_path), so a test gets an empty store in
// milliseconds where a database takes most of a second. It goes with the
// database.
func Schema(tb testing.TB, dbURL string) string {
	tb.Helper()
	c := connect(tb, dbURL)
	defer c.Close(context.Background())
	name := "s_" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		tb.Fatalf("pgtest: create schema: %v", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
