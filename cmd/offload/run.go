package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/offload-app/offload/client"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed
	exitUsage = 2 // the command line is wrong
)

const (
	envAPIURL   = "OFFLOAD_API_URL"
	envStateDir = "OFFLOAD_CLIENT_STATE_DIR"
	defaultURL  = "http://127.0.0.1:8080"
)

const usageText = `offload: the Offload app in a terminal. Breakdowns are made on this device;
the cloud is used only after "offload consent on".

Usage:
  offload [--server URL] [--json] <command> [arguments]

Commands:
  health                   check that the server is up
  session [--renew]        show the session, issuing one if none is valid
  consent on|off|status    turn cloud AI on or off, or show it (off by default)
  breakdown TEXT [flags]   break a task down into steps
      -g, --granularity N  1 (main steps only) … 5 (tiny steps); default 3
      --hint H             context hint; repeatable
      --template ID        template id; repeatable
  usage [status|sync]      show usage counts, or reconcile them with the server
  doctor                   check a deployment end to end
  help                     show this help

Flags, before or after the command:
  --server URL   API base URL (default $OFFLOAD_API_URL, else http://127.0.0.1:8080)
  --json         machine-readable output
  -h, --help     show this help

Environment:
  OFFLOAD_API_URL            API base URL
  OFFLOAD_CLIENT_STATE_DIR   state directory (default: user config dir + /offload)
`

// cli is one invocation: its environment and the common flags.
type cli struct {
	ctx            context.Context
	getenv         func(string) string
	stdout, stderr io.Writer

	server  string
	json    bool
	command string
}

// usageError is a wrong command line: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// run is main without the process: tests call it with buffers.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{ctx: ctx, getenv: getenv, stdout: stdout, stderr: stderr}
	err := c.dispatch(args)
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usageText)
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "offload: %s (see offload --help)\n", ue.msg)
		return exitUsage
	case errors.Is(err, errReported):
		return exitFail
	default:
		fmt.Fprintf(stderr, "offload: %s\n", describe(err))
		return exitFail
	}
}

// errReported is a failure the command has already printed (doctor's ✗ lines).
const errReported = constError("failure already reported")

type constError string

func (e constError) Error() string { return string(e) }

func (c *cli) dispatch(args []string) error {
	fs := c.flagSet("offload")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usagef("no command given")
	}
	c.command, rest = rest[0], rest[1:]
	switch c.command {
	case "health":
		return c.health(rest)
	case "session":
		return c.session(rest)
	case "consent":
		return c.consent(rest)
	case "breakdown":
		return c.breakdown(rest)
	case "usage":
		return c.usage(rest)
	case "doctor":
		return c.doctor(rest)
	case "help":
		return flag.ErrHelp
	}
	return usagef("unknown command %q", c.command)
}

// flagSet returns a flag set with the common flags. Errors are returned,
// not printed, so each failure is one line.
func (c *cli) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("server", "API base URL", func(v string) error { c.server = v; return nil })
	fs.BoolVar(&c.json, "json", c.json, "machine-readable output")
	return fs
}

// parse parses a command's flags wherever they are among its arguments and
// returns the positional arguments. "--" ends the flags.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", c.command, err)
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (c *cli) serverURL() string {
	if c.server != "" {
		return c.server
	}
	if u := c.getenv(envAPIURL); u != "" {
		return u
	}
	return defaultURL
}

func (c *cli) stateDir() (string, error) {
	if d := c.getenv(envStateDir); d != "" {
		return d, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no state directory: set %s (%v)", envStateDir, err)
	}
	return filepath.Join(base, "offload"), nil
}

func (c *cli) openState() (*client.State, error) {
	dir, err := c.stateDir()
	if err != nil {
		return nil, err
	}
	return client.OpenState(dir)
}

// openService opens the state directory and the breakdown service on it.
func (c *cli) openService() (*client.State, *client.Service, error) {
	st, err := c.openState()
	if err != nil {
		return nil, nil, err
	}
	cl, err := c.newClient(st)
	if err != nil {
		return nil, nil, err
	}
	return st, client.NewService(cl, st.Consent, st.Usage), nil
}

// newClient returns a client for the server; with st it identifies as the
// persisted install and keeps its session in the state directory.
func (c *cli) newClient(st *client.State) (*client.Client, error) {
	v := version()
	opts := []client.Option{
		client.WithPlatform("cli"),
		client.WithAppVersion(v),
		client.WithUserAgent("offload-cli/" + v),
	}
	if st != nil {
		opts = append(opts, client.WithInstallID(st.InstallID), client.WithTokenStore(st.Tokens))
	}
	cl, err := client.New(c.serverURL(), opts...)
	if err != nil {
		return nil, usagef("--server %q: %v", c.serverURL(), err)
	}
	return cl, nil
}

// version is the module version the binary was built from, else "dev".
func version() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := info.Main.Version; v != "" && v != "(devel)" && len(v) <= 32 {
			return v
		}
	}
	return "dev"
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func noArgs(command string, pos []string) error {
	if len(pos) > 0 {
		return usagef("%s takes no arguments (got %q)", command, strings.Join(pos, " "))
	}
	return nil
}
