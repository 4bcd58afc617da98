package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/internal/usagecopy"
	"github.com/offload-app/offload/postgres"
	"github.com/offload-app/offload/postgres/pgtest"
	"github.com/offload-app/offload/sqlite"
)

// runCmd runs `offload-api ARGS…` through run() and returns its outputs.
func runCmd(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = run(ctx, append([]string{"offload-api"}, args...), getenvFrom(env), &out, &errb)
	return out.String(), errb.String(), err
}

func TestUsageHelp(t *testing.T) {
	for _, args := range [][]string{
		{"usage", "--help"}, {"usage", "-h"}, {"usage", "help"},
		{"usage", "copy", "--help"}, {"usage", "copy", "-h"},
	} {
		out, errOut, err := runCmd(t, nil, args...)
		if err != nil || !strings.Contains(out, "Usage: offload-api usage copy --from STORE --to STORE") ||
			!strings.Contains(out, "-batch") || errOut != "" {
			t.Errorf("%q: err %v, stdout %q, stderr %q", args, err, out, errOut)
		}
	}
}

func TestUsageCommandLineMistakes(t *testing.T) {
	const secret = "hunter2"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"usage"}, "needs a subcommand"},
		{[]string{"usage", "move"}, "unknown usage subcommand"},
		{[]string{"usage", "copy"}, "needs --from and --to"},
		{[]string{"usage", "copy", "--from", "sqlite:a.db"}, "needs --from and --to"},
		{[]string{"usage", "copy", "--from", "sqlite:a.db", "--to", "sqlite:b.db", "extra"}, "unexpected arguments"},
		{[]string{"usage", "copy", "--nope"}, "flag provided but not defined"},
		{[]string{"usage", "copy", "--from", "sqlite:", "--to", "sqlite:b.db"}, "needs a file path"},
		{[]string{"usage", "copy", "--from", "mysql://u:" + secret + "@h/db", "--to", "sqlite:b.db"}, "not a store"},
		{[]string{"usage", "copy", "--from", "postgres", "--to", "sqlite:b.db"}, "OFFLOAD_DATABASE_URL is not set"},
		{[]string{"usage", "copy", "--from", "sqlite:a.db", "--to", "sqlite:./a.db"}, "same store"},
		{[]string{"usage", "copy", "--from", "sqlite:a.db", "--to", "sqlite:b.db", "--batch", "0"}, "--batch"},
	} {
		out, _, err := runCmd(t, nil, tc.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a usage error containing %q", tc.args, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), secret) || out != "" {
			t.Errorf("%q: error %q / stdout %q", tc.args, err, out)
		}
	}
}

func TestUsageCopyRefusesAMissingSQLiteSource(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "missing.db")
	_, _, err := runCmd(t, nil, "usage", "copy", "--from", "sqlite:"+src, "--to", "sqlite:"+filepath.Join(dir, "dst.db"))
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("copy from a missing file: %v", err)
	}
	if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
		t.Error("the missing source file was created")
	}
}

// withPassword puts a password into a postgres:// URL (trust auth ignores
// it), to check that it is never printed.
func withPassword(t *testing.T, raw, pw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String()
}

func seedPostgres(t *testing.T, url string, rows []offload.UsageRow) {
	t.Helper()
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.MergeRows(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
}

func countsOf(t *testing.T, s usagecopy.Store) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	err := s.EachRow(context.Background(), func(r offload.UsageRow) error {
		m[r.InstallID+"/"+r.Feature] = r.Count
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testRows(n int) []offload.UsageRow {
	t0 := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	var rows []offload.UsageRow
	for i := range n {
		rows = append(rows, offload.UsageRow{
			InstallID: fmt.Sprintf("install-%05d", i/4), Feature: fmt.Sprintf("feature-%d", i%4),
			Count: int64(i * 3), UpdatedAt: t0.Add(time.Duration(i) * time.Second),
		})
	}
	return rows
}

func TestUsageCopyPostgresToPostgres(t *testing.T) {
	const secret = "hunter2-secret"
	db := pgtest.Database(t)
	srcURL := withPassword(t, pgtest.Schema(t, db), secret)
	dstURL := withPassword(t, pgtest.Schema(t, db), secret)
	rows := testRows(1203)
	seedPostgres(t, srcURL, rows)
	// The destination is live: it has a higher count of its own, and a row
	// the source lacks.
	seedPostgres(t, dstURL, []offload.UsageRow{
		{InstallID: "install-00000", Feature: "feature-1", Count: 1 << 30},
		{InstallID: "install-only-dst", Feature: "f", Count: 7},
	})

	for range 2 { // idempotent
		out, errOut, err := runCmd(t, map[string]string{"OFFLOAD_DATABASE_URL": dstURL},
			"usage", "copy", "--from", srcURL, "--to", "postgres", "--batch", "500")
		if err != nil {
			t.Fatalf("copy: %v\n%s", err, errOut)
		}
		if !strings.Contains(out, "copied 1203 rows from postgres://127.0.0.1:5432/") ||
			!strings.Contains(out, "verified 1203 rows") {
			t.Errorf("stdout %q", out)
		}
		if strings.Contains(out+errOut, secret) {
			t.Errorf("the password was printed: %q %q", out, errOut)
		}
		if errOut != "" {
			t.Errorf("progress written to a stderr that is not a terminal: %q", errOut)
		}
	}
	dst, err := postgres.Open(context.Background(), dstURL)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got := countsOf(t, dst)
	if len(got) != 1204 {
		t.Errorf("destination has %d rows, want 1204", len(got))
	}
	for _, r := range rows {
		want := r.Count
		if r.InstallID == "install-00000" && r.Feature == "feature-1" {
			want = 1 << 30
		}
		if got[r.InstallID+"/"+r.Feature] != want {
			t.Fatalf("%s/%s = %d, want %d", r.InstallID, r.Feature, got[r.InstallID+"/"+r.Feature], want)
		}
	}
}

// sqliteCopier opens a SQLite store as a copy side, or skips while package
// sqlite of this snapshot does not list and merge rows yet.
func sqliteCopier(t *testing.T, path string) (usagecopy.Store, func()) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	var c usagecopy.Store = s
	return c, func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestUsageCopySQLiteToPostgresAndBack(t *testing.T) {
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "usage.db")
	src, closeSrc := sqliteCopier(t, srcPath)
	rows := testRows(777)
	if err := src.MergeRows(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	closeSrc()

	pgURL := pgtest.Schema(t, pgtest.Database(t))
	out, errOut, err := runCmd(t, nil, "usage", "copy", "--from", "sqlite:"+srcPath, "--to", pgURL)
	if err != nil || !strings.Contains(out, "copied 777 rows from sqlite:"+srcPath) || !strings.Contains(out, "verified 777 rows") {
		t.Fatalf("sqlite → postgres: %v\n%s%s", err, out, errOut)
	}
	backPath := filepath.Join(dir, "back.db")
	out, errOut, err = runCmd(t, nil, "usage", "copy", "--from", pgURL, "--to", "sqlite:"+backPath)
	if err != nil || !strings.Contains(out, "verified 777 rows") {
		t.Fatalf("postgres → sqlite: %v\n%s%s", err, out, errOut)
	}
	back, closeBack := sqliteCopier(t, backPath)
	defer closeBack()
	got := countsOf(t, back)
	if len(got) != len(rows) {
		t.Fatalf("round trip has %d rows, want %d", len(got), len(rows))
	}
	for _, r := range rows {
		if got[r.InstallID+"/"+r.Feature] != r.Count {
			t.Fatalf("%s/%s = %d after the round trip, want %d", r.InstallID, r.Feature, got[r.InstallID+"/"+r.Feature], r.Count)
		}
	}
}

func TestUsageCopyShowsProgressOnATerminal(t *testing.T) {
	db := pgtest.Database(t)
	srcURL, dstURL := pgtest.Schema(t, db), pgtest.Schema(t, db)
	seedPostgres(t, srcURL, testRows(50))
	from, _ := parseStoreSpec(withPassword(t, srcURL, "pw-secret"), nil)
	to, _ := parseStoreSpec(dstURL, nil)
	var out, errb bytes.Buffer
	if err := copyStores(context.Background(), from, to, 10, &out, &errb, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errb.String(), "\r\x1b[Kcopied ") || !strings.HasSuffix(errb.String(), "\r\x1b[K") {
		t.Errorf("progress %q", errb.String())
	}
	if strings.Contains(out.String()+errb.String(), "pw-secret") {
		t.Error("the password was printed")
	}
}

func TestUsageCopyFailsCleanlyOnAnUnreachableDestination(t *testing.T) {
	srcURL := pgtest.Schema(t, pgtest.Database(t))
	seedPostgres(t, srcURL, testRows(3))
	_, _, err := runCmd(t, nil, "usage", "copy", "--from", srcURL,
		"--to", "postgres://u:pw-secret@127.0.0.1:1/db?connect_timeout=2")
	if err == nil || errors.Is(err, errUsage) || !errors.Is(err, offload.ErrStorage) {
		t.Fatalf("copy to an unreachable server: %v", err)
	}
	if strings.Contains(err.Error(), "pw-secret") {
		t.Errorf("error %q has the password", err)
	}
}
