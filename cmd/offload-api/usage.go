package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/offload-app/offload/internal/usagecopy"
	"github.com/offload-app/offload/postgres"
	"github.com/offload-app/offload/sqlite"
	"golang.org/x/term"
)

const usageCommandText = `Usage: offload-api usage copy --from STORE --to STORE [--batch N]

Copies every usage count from one store to another, to move a deployment
from its SQLite file to PostgreSQL (or back). The copy is a max-merge: each
destination count becomes the larger of the two, so running it again, or
copying into a store that is serving traffic, loses and double-counts
nothing. Then it reads the source again and checks that the destination
holds every row with at least the source's count.

STORE is one of:
  sqlite:PATH      a SQLite usage file (as OFFLOAD_USAGE_DB_PATH); a source
                   file must exist
  postgres://...   a PostgreSQL database (postgresql:// too)
  postgres         the database of OFFLOAD_DATABASE_URL, which keeps the
                   password off the command line

Flags:
`

// runUsage runs `offload-api usage SUBCOMMAND`. args follow "usage".
func runUsage(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{"usage needs a subcommand: copy (see offload-api usage --help)"}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		copyFlags(stdout).fs.Usage()
		return nil
	case "copy":
		return runUsageCopy(ctx, args[1:], getenv, stdout, stderr)
	default:
		return &usageError{fmt.Sprintf("unknown usage subcommand %q (known: copy)", args[0])}
	}
}

type copyFlagSet struct {
	fs       *flag.FlagSet
	from, to *string
	batch    *int
}

func copyFlags(out io.Writer) copyFlagSet {
	fs := flag.NewFlagSet("offload-api usage copy", flag.ContinueOnError)
	fs.SetOutput(out)
	f := copyFlagSet{
		fs:    fs,
		from:  fs.String("from", "", "the store to copy from (sqlite:PATH, postgres://..., postgres)"),
		to:    fs.String("to", "", "the store to copy into (sqlite:PATH, postgres://..., postgres)"),
		batch: fs.Int("batch", usagecopy.DefaultBatch, "rows per transaction in the destination"),
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageCommandText)
		fs.PrintDefaults()
	}
	return f
}

func runUsageCopy(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := copyFlags(io.Discard) // errors are returned, not printed twice
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.fs.SetOutput(stdout)
			f.fs.Usage()
			return nil
		}
		return &usageError{"usage copy: " + err.Error()}
	}
	switch {
	case f.fs.NArg() > 0:
		return &usageError{fmt.Sprintf("usage copy: unexpected arguments: %q", f.fs.Args())}
	case *f.from == "" || *f.to == "":
		return &usageError{"usage copy needs --from and --to"}
	case *f.batch < 1 || *f.batch > 100_000:
		return &usageError{"usage copy: --batch must be between 1 and 100000"}
	}
	from, err := parseStoreSpec(*f.from, getenv)
	if err != nil {
		return &usageError{"usage copy: --from: " + err.Error()}
	}
	to, err := parseStoreSpec(*f.to, getenv)
	if err != nil {
		return &usageError{"usage copy: --to: " + err.Error()}
	}
	if from.same(to) {
		return &usageError{"usage copy: --from and --to are the same store"}
	}
	return copyStores(ctx, from, to, *f.batch, stdout, stderr, isTerminal(stderr))
}

// storeSpec is a parsed STORE argument.
type storeSpec struct {
	kind string // "sqlite" or "postgres"
	path string // sqlite: absolute path
	url  string // postgres: connection string (may hold a password)
}

// String names the store without its password.
func (s storeSpec) String() string {
	if s.kind == "sqlite" {
		return "sqlite:" + s.path
	}
	return postgres.Redact(s.url)
}

func (s storeSpec) same(o storeSpec) bool {
	return s.kind == o.kind && s.path == o.path && s.url == o.url
}

func parseStoreSpec(v string, getenv func(string) string) (storeSpec, error) {
	switch {
	case strings.HasPrefix(v, "sqlite:"):
		p := strings.TrimPrefix(v, "sqlite:")
		if p == "" {
			return storeSpec{}, errors.New("sqlite: needs a file path (sqlite:PATH)")
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return storeSpec{}, err
		}
		return storeSpec{kind: "sqlite", path: abs}, nil
	case v == "postgres" || v == "postgresql":
		u := strings.TrimSpace(getenv("OFFLOAD_DATABASE_URL"))
		if u == "" {
			return storeSpec{}, errors.New("postgres: OFFLOAD_DATABASE_URL is not set")
		}
		return storeSpec{kind: "postgres", url: u}, nil
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		return storeSpec{kind: "postgres", url: v}, nil
	}
	// Never echo v: it may be a URL with a password in it.
	return storeSpec{}, errors.New("not a store: use sqlite:PATH, postgres://... or postgres")
}

// openStore opens one side. A SQLite source must exist: opening creates the
// file, and an empty new one would make a mistyped path a successful copy
// of nothing.
func openStore(ctx context.Context, s storeSpec, source bool) (usagecopy.Store, io.Closer, error) {
	switch s.kind {
	case "sqlite":
		if source {
			if _, err := os.Stat(s.path); errors.Is(err, fs.ErrNotExist) {
				return nil, nil, fmt.Errorf("%s does not exist", s)
			}
		}
		st, err := sqlite.Open(ctx, s.path)
		if err != nil {
			return nil, nil, err
		}
		c, ok := any(st).(usagecopy.Store)
		if !ok {
			st.Close()
			return nil, nil, errors.New("this build's SQLite store cannot list and merge rows")
		}
		return c, st, nil
	default:
		st, err := postgres.Open(ctx, s.url)
		if err != nil {
			return nil, nil, err
		}
		return st, st, nil
	}
}

// copyStores runs the copy and prints its outcome on stdout; progress goes
// to stderr when it is a terminal.
func copyStores(ctx context.Context, from, to storeSpec, batch int, stdout, stderr io.Writer, progress bool) (err error) {
	src, srcCloser, err := openStore(ctx, from, true)
	if err != nil {
		return fmt.Errorf("open the source: %w", err)
	}
	defer func() { err = errors.Join(err, closeStore("source", srcCloser)) }()
	dst, dstCloser, err := openStore(ctx, to, false)
	if err != nil {
		return fmt.Errorf("open the destination: %w", err)
	}
	defer func() { err = errors.Join(err, closeStore("destination", dstCloser)) }()

	o := usagecopy.Options{Batch: batch}
	var p *progressLine
	if progress {
		p = &progressLine{w: stderr, start: time.Now()}
		o.Progress = p.report
	}
	res, err := usagecopy.Copy(ctx, src, dst, o)
	if p != nil {
		p.end()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %d rows from %s to %s\n", res.Copied, from, to)
	fmt.Fprintf(stdout, "verified %d rows: each is in the destination with at least the source's count\n", res.Verified)
	return nil
}

func closeStore(side string, c io.Closer) error {
	if err := c.Close(); err != nil {
		return fmt.Errorf("close the %s: %w", side, err)
	}
	return nil
}

// progressLine redraws one status line on a terminal, at most ten times a
// second.
type progressLine struct {
	w     io.Writer
	start time.Time // of the current phase
	phase usagecopy.Phase
	last  time.Time
	drawn bool
}

func (p *progressLine) report(pr usagecopy.Progress) {
	now := time.Now()
	if pr.Phase != p.phase {
		p.phase, p.start = pr.Phase, now
	}
	if p.drawn && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last, p.drawn = now, true
	verb := "copied"
	if pr.Phase == usagecopy.Verifying {
		verb = "verified"
	}
	rate := float64(pr.Rows) / max(now.Sub(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.w, "\r\x1b[K%s %d rows (%.0f rows/s)", verb, pr.Rows, rate)
}

func (p *progressLine) end() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
