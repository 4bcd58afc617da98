package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/offload-app/offload/client"
	"github.com/offload-app/offload/internal/buildinfo"
)

// Exit codes.
const (
	exitOK          = 0
	exitFail        = 1   // the command ran and failed
	exitUsage       = 2   // the command line is wrong
	exitInterrupted = 130 // 128 + SIGINT, as shells report it
)

const (
	envAPIURL   = "OFFLOAD_API_URL"
	envStateDir = "OFFLOAD_CLIENT_STATE_DIR"
	envNoColor  = "NO_COLOR"
	defaultURL  = "http://127.0.0.1:8080"
)

const usageText = `offload: the Offload app in a terminal. Breakdowns are made on this device;
the cloud is used only after "offload consent on", and a breakdown always ends
in steps: when the cloud is not used, they are made here and stderr says why.

Usage: offload [flags] COMMAND [ARGS]

Commands:
  health                   check that the server is up
  session [--renew]        show the session, issuing one if none is valid
  consent on|off|status    turn cloud AI on or off, or show it (off by default)
  breakdown TEXT [flags]   break a task down into steps
  usage [status|sync]      show usage counts, or reconcile them with the server now
  forget [--local]         erase this install's usage data on the server and here
  doctor                   check a deployment end to end
  help [COMMAND]           show this help, or a command's

Flags, before or after the command:
  --server URL   API base URL, without /v1 (default $OFFLOAD_API_URL, else http://127.0.0.1:8080)
  --json         machine-readable output
  --version      print the version and exit
  -h, --help     show help; "offload COMMAND --help" shows a command's

Environment:
  OFFLOAD_API_URL            API base URL
  OFFLOAD_CLIENT_STATE_DIR   state directory (default: user config dir + /offload)
  NO_COLOR                   plain output: no colour, no spinner (also when not a terminal)

Exit status: 0 done, 1 failed, 2 wrong command line, 130 interrupted.
`

// commandHelp is a command's --help; ok is false for an unknown command.
func commandHelp(name string) (text string, ok bool) {
	switch name {
	case "health":
		return `Usage: offload health

Ask the server whether it is up (GET /v1/health). Needs no session and sends nothing else.
`, true
	case "session":
		return `Usage: offload session [--renew]

Show the anonymous session, issuing one if none is valid. The token itself is never printed.

  --renew   issue a new session even if the current one is valid
`, true
	case "consent":
		return `Usage: offload consent on|off|status

Turn cloud AI on or off, or show it. It is off until you turn it on. With it on,
breakdown text, hints and template ids go to the server, and usage counts are
reconciled with it.
`, true
	case "breakdown":
		return `Usage: offload breakdown [flags] TEXT

Break a task down into steps. With cloud AI off they are made on this device and
nothing is sent. With it on the server is asked; whenever it is not used (no
answer in time, a refusal, a failure) the steps are made on this device, exit
status 0, and stderr says why. After the first cloud breakdown of a run, pending
usage counts are reconciled in the background (bounded to a few seconds).

  -g, --granularity N   1 (main steps only) … 5 (tiny steps); default 3
  --hint H              context hint; repeatable
  --template ID         template id; repeatable
  --cloud-timeout D     give up on the cloud after D (e.g. 20s, 1m); default 20s
  --                    end of flags, for text that starts with "-"
`, true
	case "usage":
		return `Usage: offload usage [status|sync]

  status   show the usage counts kept here, and the effective remaining count
           as of the last reconcile (the default)
  sync     reconcile every count with the server now (needs cloud AI on)
`, true
	case "forget":
		return `Usage: offload forget [--local]

Erase this install's usage data. With cloud AI on and the server reachable, the
server's counts are erased first (DELETE /v1/usage); then the session, the
usage counts and the install id are removed here. The consent setting is kept.
With cloud AI off or the server unreachable, only this device's state is
removed and the server's copy (if any) is not touched. If the server answers
with a refusal, nothing is removed, so you can try again.

  --local   remove this device's state only; do not contact the server
`, true
	case "doctor":
		return `Usage: offload doctor [--cloud-timeout D]

Check a deployment end to end, one line per check: the state files, reachability,
health, and with cloud AI on a session (the current one if valid), a reconcile
and a breakdown. With cloud AI off only the health check runs. Exit status 1 if
any check failed.

  --cloud-timeout D   bound on the breakdown check; default 20s
`, true
	case "help":
		return `Usage: offload help [COMMAND]

Show the overview, or a command's help.
`, true
	}
	return "", false
}

// cli is one invocation: its environment and the common flags.
type cli struct {
	ctx            context.Context
	getenv         func(string) string
	stdout, stderr io.Writer

	server  string
	json    bool
	version bool
	command string

	// Derived from the environment once: a terminal, and no NO_COLOR.
	spin     bool // a spinner on stderr
	colorOut bool
	colorErr bool

	// syncTimeout bounds the background reconcile after a cloud breakdown.
	syncTimeout time.Duration
	// stopSpin erases a spinner that is showing, before any other output.
	stopSpin func()
	// said keeps warnings already printed, so none is printed twice.
	said map[string]bool
	// v1Hinted is set once the /v1 hint has been printed.
	v1Hinted bool
}

func newCLI(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) *cli {
	plain := getenv(envNoColor) != "" || getenv("TERM") == "dumb"
	return &cli{
		ctx: ctx, getenv: getenv, stdout: stdout, stderr: stderr,
		spin:        !plain && isTerminal(stderr),
		colorOut:    !plain && isTerminal(stdout),
		colorErr:    !plain && isTerminal(stderr),
		syncTimeout: client.DefaultAutoSyncTimeout,
		stopSpin:    func() {},
		said:        map[string]bool{},
	}
}

// run is main without the process: tests call it with buffers.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return newCLI(ctx, getenv, stdout, stderr).main(args)
}

func (c *cli) main(args []string) int {
	err := c.dispatch(args)
	c.stopSpin()
	var (
		ue *usageError
		he *helpRequest
	)
	switch {
	case c.ctx.Err() != nil:
		// Whatever the command was doing, the user asked it to stop.
		fmt.Fprintln(c.stderr, "offload: interrupted")
		return interruptedCode(c.ctx)
	case err == nil:
		return exitOK
	case errors.As(err, &he):
		fmt.Fprint(c.stdout, he.text)
		return exitOK
	case errors.As(err, &ue):
		see := "offload --help"
		if ue.command != "" {
			see = "offload " + ue.command + " --help"
		}
		fmt.Fprintf(c.stderr, "offload: %s (see %s)\n", ue.msg, see)
		return exitUsage
	case errors.Is(err, errReported):
		return exitFail
	case errors.Is(err, errDone):
		return exitOK
	default:
		fmt.Fprintf(c.stderr, "offload: %s\n", describe(err))
		return exitFail
	}
}

// interrupted is the cause main gives the context when a signal arrives.
type interrupted struct{ sig os.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

// interruptedCode is 128 + the signal's number, as a shell reports a
// process a signal ended: 130 for Ctrl-C.
func interruptedCode(ctx context.Context) int {
	var i interrupted
	if errors.As(context.Cause(ctx), &i) {
		if s, ok := i.sig.(syscall.Signal); ok && s > 0 && s < 64 {
			return 128 + int(s)
		}
	}
	return exitInterrupted
}

// usageError is a wrong command line: exit 2.
type usageError struct {
	command string // whose help to point at; "" for the overview
	msg     string
}

func (e *usageError) Error() string { return e.msg }

func (c *cli) usagef(format string, args ...any) error {
	return &usageError{command: c.command, msg: fmt.Sprintf(format, args...)}
}

// helpRequest is -h, --help or help: text goes to stdout, exit 0.
type helpRequest struct{ text string }

func (e *helpRequest) Error() string { return "help requested" }

func (c *cli) help() error {
	if t, ok := commandHelp(c.command); ok {
		return &helpRequest{t + "\nCommon flags: --server URL, --json, --version (see offload --help).\n"}
	}
	return &helpRequest{usageText}
}

// errReported is a failure the command has already printed (doctor's ✗ lines).
const errReported = constError("failure already reported")

// errDone ends a command that has already done all it had to (--version).
const errDone = constError("done")

type constError string

func (e constError) Error() string { return string(e) }

func (c *cli) dispatch(args []string) error {
	fs := c.flagSet("offload")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c.help()
		}
		return c.usagef("%v", err)
	}
	rest := fs.Args()
	if c.version {
		fmt.Fprintln(c.stdout, buildinfo.Line("offload"))
		return nil
	}
	if len(rest) == 0 {
		return c.usagef("no command given")
	}
	name, rest := rest[0], rest[1:]
	commands := map[string]func([]string) error{
		"health":    c.health,
		"session":   c.session,
		"consent":   c.consent,
		"breakdown": c.breakdown,
		"usage":     c.usage,
		"forget":    c.forget,
		"doctor":    c.doctor,
		"help":      c.helpCommand,
	}
	cmd, ok := commands[name]
	if !ok {
		return c.usagef("unknown command %q", name)
	}
	c.command = name
	return cmd(rest)
}

func known(command string) bool {
	_, ok := commandHelp(command)
	return ok
}

func (c *cli) helpCommand(args []string) error {
	fs := c.flagSet("help")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		c.command = ""
	case len(pos) == 1 && known(pos[0]):
		c.command = pos[0]
	default:
		return c.usagef("help takes one command name (got %q)", strings.Join(pos, " "))
	}
	return c.help()
}

// flagSet returns a flag set with the common flags. Errors are returned,
// not printed, so each failure is one line.
func (c *cli) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("server", "API base URL", func(v string) error { c.server = v; return nil })
	fs.BoolVar(&c.json, "json", c.json, "machine-readable output")
	fs.BoolVar(&c.version, "version", c.version, "print the version")
	return fs
}

// parse parses a command's flags wherever they are among its arguments and
// returns the positional arguments. "--" ends the flags. -h and --help
// give the command's help; --version the version.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, c.help()
			}
			return nil, c.usagef("%s: %v", c.command, err)
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if c.version {
		fmt.Fprintln(c.stdout, buildinfo.Line("offload"))
		return nil, errDone
	}
	return pos, nil
}

// durationFlag is a positive duration, as "20s", "1m30s" or plain seconds.
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(v string) error {
	t, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseFloat(v, 64)
		if nerr != nil {
			return errors.New("want a duration such as 20s or 1m")
		}
		t = time.Duration(n * float64(time.Second))
	}
	if t <= 0 {
		return errors.New("must be positive")
	}
	*d = durationFlag(t)
	return nil
}

func (c *cli) serverURL() (u, source string) {
	if c.server != "" {
		return c.server, "--server"
	}
	if u := c.getenv(envAPIURL); u != "" {
		return u, envAPIURL
	}
	return defaultURL, "the default URL"
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

// newClient returns a client for the server; with st it identifies as the
// persisted install and keeps its session in the state directory.
func (c *cli) newClient(st *client.State, opts ...client.Option) (*client.Client, error) {
	base, source := c.serverURL()
	c.hintV1(base, source)
	v := buildinfo.Version()
	opts = append([]client.Option{
		client.WithPlatform("cli"),
		client.WithAppVersion(v),
		client.WithUserAgent("offload-cli/" + v),
		client.WithWarningFunc(c.warnState),
	}, opts...)
	if st != nil {
		opts = append(opts, client.WithInstallID(st.InstallID), client.WithTokenStore(st.Tokens))
	}
	cl, err := client.New(base, opts...)
	if err != nil {
		return nil, c.usagef("%s %q: %v", source, base, err)
	}
	return cl, nil
}

// hintV1 warns, once, about a base URL that ends in /v1: the client adds
// /v1/… itself, so every call would go to /v1/v1/… and answer 404.
func (c *cli) hintV1(base, source string) {
	u, err := url.Parse(base)
	if err != nil || c.v1Hinted {
		return
	}
	p := strings.TrimRight(u.Path, "/")
	i := strings.LastIndex(p+"/", "/v1/")
	if i < 0 {
		return
	}
	c.v1Hinted = true
	u.Path = p[:i]
	c.warnf("%s %q: the base URL has no /v1 (use %q)", source, base, u.String())
}

// warnf prints a warning line on stderr, once per text.
func (c *cli) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if c.said[msg] {
		return
	}
	c.said[msg] = true
	c.stopSpin()
	label := "warning:"
	if c.colorErr {
		label = "\033[33mwarning:\033[0m"
	}
	fmt.Fprintf(c.stderr, "offload: %s %s\n", label, msg)
}

// warnState prints a client.Warning with the hint its file needs.
func (c *cli) warnState(w client.Warning) {
	c.warnf("%s", describeWarning(w))
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) noArgs(pos []string) error {
	if len(pos) > 0 {
		return c.usagef("%s takes no arguments (got %q)", c.command, strings.Join(pos, " "))
	}
	return nil
}
