package postgres_test

import (
	"net/url"
	"testing"

	"github.com/offload-app/offload/postgres"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://alice:s3cret@db.internal:6432/offload?sslmode=require", "postgres://db.internal:6432/offload"},
		{"postgresql://alice:s3cret@db.internal/offload", "postgres://db.internal:5432/offload"},
		{"postgres://db.internal/offload?password=s3cret&user=alice", "postgres://db.internal:5432/offload"},
		{"postgres://alice:s3cret@h1:5432,h2:5433/offload", "postgres://h1:5432,h2:5433/offload"},
		{"host=db.internal port=5433 user=alice password=s3cret dbname=offload", "postgres://db.internal:5433/offload"},
		{"postgres://alice:s3cret@[::1]:5432/offload", "postgres://[::1]:5432/offload"},
		{"postgres://alice:s3cret@/offload?host=/var/run/postgresql", "postgres://(socket /var/run/postgresql)/offload"},
		{"postgres://alice:s3cret@db.internal:99999999/offload", "postgres://(invalid)"},
		{"::not a url s3cret", "postgres://(invalid)"},
	} {
		if got := postgres.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzRedact: the description does not depend on the password at all (a
// password pgconn refuses makes the whole string invalid, which tells
// nothing either).
func FuzzRedact(f *testing.F) {
	f.Add("db.internal:5432/offload?sslmode=disable", "s3cret-pw")
	f.Add("h1,h2/db", "p@ss:word")
	f.Add("/!000", "1000")
	f.Fuzz(func(t *testing.T, rest, pw string) {
		with := postgres.Redact("postgres://alice:" + url.QueryEscape(pw) + "@" + rest)
		other := postgres.Redact("postgres://alice:other@" + rest)
		if with != other && with != "postgres://(invalid)" { // invalid tells nothing

			t.Fatalf("Redact depends on the password: %q vs %q", with, other)
		}
	})
}
