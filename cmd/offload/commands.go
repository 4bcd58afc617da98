package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/client"
)

func (c *cli) health(args []string) error {
	fs := c.flagSet("health")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := c.noArgs(pos); err != nil {
		return err
	}
	cl, err := c.newClient(nil) // health needs no state
	if err != nil {
		return err
	}
	h, err := cl.Health(c.ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(h)
	}
	fmt.Fprintf(c.stdout, "%s: %s %s (%s) at %s\n", h.Status, h.Service, h.Version, h.Environment, cl.BaseURL())
	return nil
}

type sessionOutput struct {
	Status    string    `json:"status"` // "issued" or "valid"
	ExpiresAt time.Time `json:"expires_at"`
}

func (c *cli) session(args []string) error {
	fs := c.flagSet("session")
	renew := fs.Bool("renew", false, "issue a new session even if the current one is valid")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := c.noArgs(pos); err != nil {
		return err
	}
	st, err := c.openState()
	if err != nil {
		return err
	}
	cl, err := c.newClient(st)
	if err != nil {
		return err
	}
	// A file that cannot be read is no session; the client says so when it
	// replaces it.
	before, had, _ := st.Tokens.Load()
	var s client.Session
	if *renew {
		s, err = cl.CreateSession(c.ctx)
	} else {
		s, err = cl.EnsureSession(c.ctx)
	}
	if err != nil {
		return err
	}
	out := sessionOutput{Status: "issued", ExpiresAt: s.ExpiresAt.UTC()}
	if had && !*renew && before.Token == s.Token {
		out.Status = "valid"
	}
	if c.json {
		return c.printJSON(out)
	}
	fmt.Fprintf(c.stdout, "session %s; expires %s (in %s)\n", out.Status,
		out.ExpiresAt.Format(time.RFC3339), time.Until(out.ExpiresAt).Round(time.Second))
	return nil
}

type consentOutput struct {
	CloudAIEnabled bool `json:"cloud_ai_enabled"`
}

func (c *cli) consent(args []string) error {
	fs := c.flagSet("consent")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "on" && pos[0] != "off" && pos[0] != "status") {
		return c.usagef("consent takes one of on, off, status")
	}
	st, err := c.openState()
	if err != nil {
		return err
	}
	if pos[0] != "status" {
		if err := st.Consent.SetCloudEnabled(pos[0] == "on"); err != nil {
			return err
		}
	}
	on, err := st.Consent.CloudEnabled()
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(consentOutput{CloudAIEnabled: on})
	}
	if on {
		fmt.Fprintln(c.stdout, "cloud AI: on (breakdown text, hints and template ids are sent to the server; usage counts are synced)")
	} else {
		fmt.Fprintln(c.stdout, "cloud AI: off (breakdowns stay on this device; nothing is sent)")
	}
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// breakdownOutput is a Result with its warnings as text.
type breakdownOutput struct {
	client.Result
	Warnings []string `json:"warnings,omitempty"`
}

func (c *cli) breakdown(args []string) error {
	fs := c.flagSet("breakdown")
	var hints, templates stringList
	granularity := 3
	cloudTimeout := durationFlag(client.DefaultCloudTimeout)
	fs.IntVar(&granularity, "g", granularity, "granularity 1–5")
	fs.IntVar(&granularity, "granularity", granularity, "granularity 1–5")
	fs.Var(&hints, "hint", "context hint (repeatable)")
	fs.Var(&templates, "template", "template id (repeatable)")
	fs.Var(&cloudTimeout, "cloud-timeout", "give up on the cloud after this long")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	text := strings.TrimSpace(strings.Join(pos, " "))
	if text == "" {
		return c.usagef("breakdown needs the task text")
	}
	if granularity < 1 || granularity > 5 {
		return c.usagef("breakdown: granularity must be 1–5 (got %d)", granularity)
	}
	svc, cloud, err := c.breakdownService(time.Duration(cloudTimeout))
	if err != nil {
		return err
	}
	if cloud {
		c.startSpinner("asking the cloud")
	}
	res, err := svc.Generate(c.ctx, offload.BreakdownRequest{
		InputText:    text,
		Granularity:  granularity,
		ContextHints: hints,
		TemplateIDs:  templates,
	})
	c.stopSpin()
	if err != nil {
		return err // only an ended context: main says "interrupted"
	}
	for _, w := range res.Warnings {
		c.warnState(w)
	}
	if fb := res.Fallback; fb != nil {
		c.fallbackNote(fb)
	}
	if c.json {
		out := breakdownOutput{Result: res}
		for _, w := range res.Warnings {
			out.Warnings = append(out.Warnings, describeWarning(w))
		}
		if err := c.printJSON(out); err != nil {
			return err
		}
	} else {
		printTree(c.stdout, res.Steps, "")
		fmt.Fprintln(c.stdout, sourceLine(res))
	}
	// The plan is out; a background reconcile may still be finishing. It
	// bounds itself, and its outcome shows in "offload usage".
	_ = svc.Wait(c.ctx)
	return nil
}

// breakdownService opens what a breakdown needs and never fails for want
// of local state: an unusable state directory is a warning and a temporary
// install for this run. cloud reports whether the cloud will be asked.
func (c *cli) breakdownService(cloudTimeout time.Duration) (svc *client.Service, cloud bool, err error) {
	var st *client.State
	dir, err := c.stateDir()
	if err == nil {
		st, err = client.OpenState(dir)
		if err != nil {
			c.warnf("%s; %s", describe(err), client.EffectTemporaryID)
			st = client.TemporaryState(dir)
		}
	} else {
		c.warnf("%s; %s", err, client.EffectTemporaryID)
	}
	var (
		consent client.ConsentStore = &client.MemoryConsentStore{}
		tokens  client.TokenStore   = &client.MemoryTokenStore{}
		usage   client.UsageCounter = &client.MemoryUsageCounter{}
		syncTO                      = c.syncTimeout
	)
	if st != nil {
		consent = st.Consent
		if !st.Temporary {
			tokens, usage = st.Tokens, st.Usage
		} else {
			syncTO = 0 // counts under a throwaway id are not worth sending
		}
	}
	cl, err := c.newClient(nil, client.WithCloudTimeout(cloudTimeout), client.WithTokenStore(tokens), withInstall(st))
	if err != nil {
		return nil, false, err
	}
	cloud, _ = consent.CloudEnabled()
	return client.NewService(cl, consent, usage, client.WithAutoSync(syncTO)), cloud, nil
}

func withInstall(st *client.State) client.Option {
	if st == nil {
		return func(*client.Client) {}
	}
	return client.WithInstallID(st.InstallID)
}

// fallbackNote says on stderr why the cloud was not used.
func (c *cli) fallbackNote(fb *client.Fallback) {
	if fb.Reason == client.ReasonConsentUnreadable {
		c.warnState(client.Warning{Err: fb.Err, Effect: client.EffectConsentOff})
		return
	}
	why := string(fb.Reason)
	if fb.Err != nil {
		why = describe(fb.Err)
	}
	c.stopSpin()
	fmt.Fprintf(c.stderr, "offload: cloud not used: %s; the steps were made on this device\n", why)
}

// sourceLine says where a plan came from.
func sourceLine(r client.Result) string {
	var b strings.Builder
	b.WriteString("source: ")
	switch r.Source {
	case client.SourceCloud:
		fmt.Fprintf(&b, "cloud (%s)", cleanLine(r.Provider))
		if r.Usage != nil {
			fmt.Fprintf(&b, ", %d input + %d output tokens", r.Usage.InputTokens, r.Usage.OutputTokens)
		}
	default:
		b.WriteString("on-device")
		if fb := r.Fallback; fb != nil {
			why := fb.Code
			if why == "" {
				why = string(fb.Reason)
			}
			fmt.Fprintf(&b, " (cloud not used: %s)", why)
		}
	}
	return b.String()
}

type usageOutput struct {
	Features []usageRow `json:"features"`
}

type usageRow struct {
	Feature   string `json:"feature"`
	Local     int64  `json:"local_count"`
	Mirror    int64  `json:"server_mirror"`
	Displayed int64  `json:"displayed"`
	// EffectiveRemaining is the server's, as of the last reconcile, less
	// the counts made here since; null before the first reconcile.
	EffectiveRemaining *int64     `json:"effective_remaining"`
	SyncedAt           *time.Time `json:"synced_at,omitempty"`
	Sent               *int64     `json:"sent_count,omitempty"`
	ServerCount        *int64     `json:"server_count,omitempty"`
	RequestID          string     `json:"request_id,omitempty"`
}

func newUsageRow(u client.FeatureUsage) usageRow {
	r := usageRow{Feature: u.Feature, Local: u.Local, Mirror: u.Mirror, Displayed: u.Displayed()}
	if n, ok := u.EffectiveRemaining(); ok {
		at := u.SyncedAt.UTC()
		r.EffectiveRemaining, r.SyncedAt = &n, &at
	}
	return r
}

func (c *cli) usage(args []string) error {
	fs := c.flagSet("usage")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	action := "status"
	if len(pos) > 0 {
		action = pos[0]
	}
	if len(pos) > 1 || (action != "status" && action != "sync") {
		return c.usagef("usage takes status or sync")
	}
	st, err := c.openState()
	if err != nil {
		return err
	}
	cl, err := c.newClient(st)
	if err != nil {
		return err
	}
	svc := client.NewService(cl, st.Consent, st.Usage)
	var out usageOutput
	if action == "status" {
		all, err := svc.Usage()
		if err != nil {
			return err
		}
		for _, u := range all {
			out.Features = append(out.Features, newUsageRow(u))
		}
	} else {
		synced, err := svc.SyncUsage(c.ctx)
		if err != nil {
			return err
		}
		for _, s := range synced {
			r := newUsageRow(s.FeatureUsage)
			r.Sent, r.ServerCount, r.RequestID = &s.Sent, &s.ServerCount, s.RequestID
			r.EffectiveRemaining = &s.EffectiveRemaining
			out.Features = append(out.Features, r)
		}
	}
	if c.json {
		return c.printJSON(out)
	}
	for _, r := range out.Features {
		remaining := "remaining unknown until a sync"
		if r.EffectiveRemaining != nil {
			remaining = fmt.Sprintf("%d remaining", *r.EffectiveRemaining)
		}
		if r.ServerCount != nil {
			fmt.Fprintf(c.stdout, "%s: %d (sent %d, server %d, %s)\n", r.Feature, r.Displayed, *r.Sent, *r.ServerCount, remaining)
		} else {
			fmt.Fprintf(c.stdout, "%s: %d (local %d, server %d, %s)\n", r.Feature, r.Displayed, r.Local, r.Mirror, remaining)
		}
	}
	return nil
}

type forgetOutput struct {
	Server  client.ServerOutcome `json:"server"`
	Erasure *client.Erasure      `json:"erasure,omitempty"`
	// Detail says why the server's copy was not touched.
	Detail  string   `json:"detail,omitempty"`
	Removed []string `json:"removed"`
	Kept    []string `json:"kept"`
}

func (c *cli) forget(args []string) error {
	fs := c.flagSet("forget")
	localOnly := fs.Bool("local", false, "remove this device's state only")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := c.noArgs(pos); err != nil {
		return err
	}
	dir, err := c.stateDir()
	if err != nil {
		return err
	}
	st, err := client.ReadState(dir)
	var ce *client.CorruptStateError
	switch {
	case errors.As(err, &ce):
		// Its files can still go; the server's copy cannot be named without the id.
		c.warnf("%s; the server's copy cannot be found without it", describe(err))
		st = client.TemporaryState(dir)
	case err != nil:
		return err
	}
	var cl *client.Client
	if st.InstallID != "" && !st.Temporary && !*localOnly {
		if cl, err = c.newClient(st); err != nil {
			return err
		}
	}
	got, err := st.Forget(c.ctx, cl, *localOnly)
	for _, w := range got.Warnings {
		c.warnState(w)
	}
	if err != nil {
		if got.ServerErr != nil && errors.Is(err, got.ServerErr) {
			return fmt.Errorf(`%w; nothing was removed: run "offload forget" again later, or "offload forget --local" to remove only this device's state`, err)
		}
		return err
	}
	out := forgetOutput{Server: got.Server, Erasure: got.Erasure, Removed: got.Removed, Kept: []string{client.ConsentFile}}
	if out.Removed == nil {
		out.Removed = []string{}
	}
	switch got.Server {
	case client.ServerConsentOff:
		out.Detail = "cloud AI is off"
	case client.ServerLocalOnly:
		out.Detail = "--local"
	case client.ServerNoInstallID:
		out.Detail = "no install id is stored here"
		if st.Temporary {
			out.Detail = "the install id could not be read"
		}
	case client.ServerUnreachable:
		out.Detail = describe(got.ServerErr)
	}
	if c.json {
		return c.printJSON(out)
	}
	if e := out.Erasure; e != nil {
		fmt.Fprintf(c.stdout, "server: erased this install's usage counts (%d %s, at %s, request id %s)\n",
			e.Deleted, plural(e.Deleted, "row", "rows"), e.ErasedAt.UTC().Format(time.RFC3339), e.RequestID)
	} else {
		fmt.Fprintf(c.stdout, "server: its copy (if any) was not touched: %s\n", out.Detail)
	}
	if len(out.Removed) == 0 {
		fmt.Fprintf(c.stdout, "removed here: nothing (no session, usage counts or install id in %s)\n", dir)
	} else {
		fmt.Fprintf(c.stdout, "removed here: %s (in %s)\n", strings.Join(describeFiles(out.Removed), ", "), dir)
	}
	fmt.Fprintf(c.stdout, "kept: your cloud AI setting (%s)\n", filepath.Join(dir, client.ConsentFile))
	return nil
}

func describeFiles(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		what := map[string]string{client.SessionFile: "session", client.UsageFile: "usage counts", client.InstallIDFile: "install id"}[n]
		out[i] = what + " (" + n + ")"
	}
	return out
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// describe turns an error into the one line the user sees. The client's
// errors say what happened; this adds the hint for the user's next step,
// once.
func describe(err error) string {
	var (
		ae *client.APIError
		ce *client.CorruptStateError
	)
	switch {
	case errors.Is(err, client.ErrConsentRequired) && !errors.As(err, &ae):
		return `cloud AI is off; run "offload consent on" first`
	case errors.As(err, &ce):
		return err.Error() + " (" + corruptHint(ce) + ")"
	}
	return err.Error()
}

func corruptHint(ce *client.CorruptStateError) string {
	switch filepath.Base(ce.Path) {
	case client.ConsentFile:
		return `run "offload consent on" or "offload consent off" to rewrite it`
	case client.InstallIDFile:
		return `fix it, or run "offload forget --local" to start as a new install`
	}
	return "fix or remove the file"
}

// describeWarning is a client.Warning as one line, with a hint where the
// user has something to do.
func describeWarning(w client.Warning) string {
	var ce *client.CorruptStateError
	if errors.As(w.Err, &ce) && w.Effect != client.EffectSessionReplaced {
		return w.Err.Error() + "; " + w.Effect + " (" + corruptHint(ce) + ")"
	}
	return w.Error()
}
