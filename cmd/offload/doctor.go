package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/client"
)

// doctorProbe is the fixed, made-up task doctor sends for its breakdown
// check: never user content.
const doctorProbe = "Doctor check: water the plants"

type check struct {
	Name      string      `json:"name"`
	OK        bool        `json:"ok"`
	Skipped   bool        `json:"skipped,omitempty"`
	Detail    string      `json:"detail"`
	RequestID string      `json:"request_id,omitempty"`
	Files     []fileCheck `json:"files,omitempty"`
}

// fileCheck is one state file as doctor found it.
type fileCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Status string `json:"status"` // "absent", "on", "valid until …", "corrupt: …", …
}

type doctorOutput struct {
	Server string  `json:"server"`
	OK     bool    `json:"ok"`
	Checks []check `json:"checks"`
	// Note says what was not checked and how to check it.
	Note string `json:"note,omitempty"`
}

const fullCheckNote = `cloud AI is off, so only the health check ran and nothing else was sent; ` +
	`for the full check (session, reconcile, breakdown) run "offload consent on", then "offload doctor"`

// doctor checks a deployment end to end, one line per check. A check whose
// prerequisite failed is shown as skipped; any failure makes the exit non-zero.
func (c *cli) doctor(args []string) error {
	fs := c.flagSet("doctor")
	cloudTimeout := durationFlag(client.DefaultCloudTimeout)
	fs.Var(&cloudTimeout, "cloud-timeout", "bound on the breakdown check")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := c.noArgs(pos); err != nil {
		return err
	}
	server, _ := c.serverURL()
	out := doctorOutput{Server: server, OK: true}
	add := func(ck check) {
		out.Checks = append(out.Checks, ck)
		if !ck.OK && !ck.Skipped {
			out.OK = false
		}
	}
	fail := func(name string, err error) {
		add(check{Name: name, Detail: describe(err), RequestID: requestID(err)})
	}
	skip := func(name, why string) { add(check{Name: name, Skipped: true, Detail: "skipped: " + why}) }
	out.Note = c.runChecks(time.Duration(cloudTimeout), add, fail, skip)
	if c.json {
		if err := c.printJSON(out); err != nil {
			return err
		}
	} else {
		for _, ck := range out.Checks {
			fmt.Fprintf(c.stdout, "%s %-12s %s\n", c.mark(ck), ck.Name, ck.Detail)
		}
		if out.Note != "" {
			fmt.Fprintf(c.stdout, "note: %s\n", out.Note)
		}
	}
	if !out.OK {
		return errReported
	}
	return nil
}

func (c *cli) mark(ck check) string {
	mark, color := "✓", "32" // green
	switch {
	case ck.Skipped:
		mark, color = "-", "2" // dim
	case !ck.OK:
		mark, color = "✗", "31" // red
	}
	if !c.colorOut {
		return mark
	}
	return "\033[" + color + "m" + mark + "\033[0m"
}

// runChecks runs the checks in order and returns the note to print after
// them. With consent off it sends nothing but the health check.
func (c *cli) runChecks(cloudTimeout time.Duration, add func(check), fail func(string, error), skip func(name, why string)) (note string) {
	names := []string{"state", "reachability", "health", "session", "reconcile", "breakdown"}
	skipFrom := func(from int, why string) {
		for _, n := range names[from:] {
			skip(n, why)
		}
	}
	st, consent, stateOK := c.checkState(add, fail)

	var warnings []string
	opts := []client.Option{
		client.WithCloudTimeout(cloudTimeout),
		// The state and session lines report these; stderr stays quiet.
		client.WithWarningFunc(func(w client.Warning) { warnings = append(warnings, describeWarning(w)) }),
	}
	if consent && stateOK {
		opts = append(opts, client.WithInstallID(st.InstallID), client.WithTokenStore(st.Tokens))
	}
	cl, err := c.newClient(nil, opts...)
	if err != nil {
		fail("reachability", err)
		skipFrom(2, "bad server URL")
		return ""
	}
	// Reachability is any HTTP answer; health is the right answer.
	h, err := cl.Health(c.ctx)
	var te *client.TransportError
	if errors.As(err, &te) {
		fail("reachability", err)
		skipFrom(2, "server unreachable")
		return ""
	}
	add(check{Name: "reachability", OK: true, Detail: cl.BaseURL()})
	switch {
	case err != nil:
		fail("health", err)
	case h.Status != "ok":
		add(check{Name: "health", Detail: fmt.Sprintf("status %q, want \"ok\"", cleanLine(h.Status)), RequestID: h.RequestID})
	default:
		add(check{Name: "health", OK: true, RequestID: h.RequestID, Detail: fmt.Sprintf("%s %s (%s)", h.Service, h.Version, h.Environment)})
	}
	if !consent {
		skipFrom(3, "cloud AI is off")
		return fullCheckNote
	}
	if !stateOK {
		skipFrom(3, "no usable client state")
		return ""
	}

	before, had, _ := st.Tokens.Load()
	s, err := cl.EnsureSession(c.ctx)
	if err != nil {
		fail("session", err)
		skipFrom(4, "no session")
		return ""
	}
	how := "issued"
	if had && before.Token == s.Token {
		how = "reused"
	}
	detail := how + ", expires " + s.ExpiresAt.UTC().Format(time.RFC3339)
	if len(warnings) > 0 {
		detail += " (" + strings.Join(warnings, "; ") + ")"
	}
	add(check{Name: "session", OK: true, Detail: detail})

	// A count of 0 never changes the server's count.
	rec, err := cl.ReconcileUsage(c.ctx, offload.FeatureBreakdown, 0)
	if err != nil {
		fail("reconcile", err)
	} else {
		add(check{Name: "reconcile", OK: true, RequestID: rec.RequestID,
			Detail: fmt.Sprintf("server count %d, %d remaining", rec.ServerCount, rec.EffectiveRemaining)})
	}
	b, err := cl.GenerateBreakdown(c.ctx, offload.BreakdownRequest{InputText: doctorProbe, Granularity: 1}, true)
	if err != nil {
		fail("breakdown", err)
		return ""
	}
	add(check{Name: "breakdown", OK: true, RequestID: b.RequestID,
		Detail: fmt.Sprintf("cloud (%s), %d steps in %s", cleanLine(b.Provider), len(b.Steps), b.Latency)})
	return ""
}

// checkState adds the state check: each file as found, without creating
// anything unless the full check needs an install id. consent is false
// when consent.json is off, absent or unreadable; ok says whether st has
// an install id the network checks can use.
func (c *cli) checkState(add func(check), fail func(string, error)) (st *client.State, consent, ok bool) {
	dir, err := c.stateDir()
	if err != nil {
		fail("state", err)
		return nil, false, false
	}
	ck := check{Name: "state", OK: true}
	file := func(name string, good bool, status string) {
		ck.Files = append(ck.Files, fileCheck{Name: name, OK: good, Status: status})
		if !good {
			ck.OK = false
		}
	}
	st, err = client.ReadState(dir)
	switch {
	case err != nil:
		file(client.InstallIDFile, false, stateStatus(err))
		st = client.TemporaryState(dir)
	case st.InstallID == "":
		file(client.InstallIDFile, true, "absent")
	default:
		file(client.InstallIDFile, true, "ok")
	}
	installOK := err == nil

	consent, err = st.Consent.CloudEnabled()
	switch {
	case err != nil:
		file(client.ConsentFile, false, stateStatus(err)+", so cloud AI is treated as off")
	case !exists(filepath.Join(dir, client.ConsentFile)):
		file(client.ConsentFile, true, "absent (cloud AI off)")
	default:
		file(client.ConsentFile, true, map[bool]string{true: "cloud AI on", false: "cloud AI off"}[consent])
	}

	switch s, found, err := st.Tokens.Load(); {
	case err != nil:
		// A cache: the next cloud call replaces it.
		file(client.SessionFile, true, stateStatus(err)+" (replaced on the next cloud call)")
	case !found:
		file(client.SessionFile, true, "absent")
	case time.Until(s.ExpiresAt) <= client.RefreshMargin:
		file(client.SessionFile, true, "expired")
	default:
		file(client.SessionFile, true, "valid until "+s.ExpiresAt.UTC().Format(time.RFC3339))
	}

	switch all, err := st.Usage.All(); {
	case err != nil:
		file(client.UsageFile, false, stateStatus(err))
	case !exists(filepath.Join(dir, client.UsageFile)):
		file(client.UsageFile, true, "absent")
	default:
		file(client.UsageFile, true, fmt.Sprintf("%d %s", len(all), plural(int64(len(all)), "feature", "features")))
	}

	if consent && installOK && st.InstallID == "" {
		// The full check needs an install; this is what "consent on" makes too.
		if st, err = client.OpenState(dir); err != nil {
			file(client.InstallIDFile, false, stateStatus(err))
			installOK = false
		} else {
			ck.Files[0].Status = "created"
		}
	}
	var parts []string
	for _, f := range ck.Files {
		parts = append(parts, f.Name+" "+f.Status)
	}
	ck.Detail = dir + ": " + strings.Join(parts, ", ")
	add(ck)
	return st, consent, installOK
}

// stateStatus is a state error as a file's status.
func stateStatus(err error) string {
	var ce *client.CorruptStateError
	if errors.As(err, &ce) {
		return "corrupt: " + ce.Reason
	}
	return "unreadable: " + err.Error()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func requestID(err error) string {
	var (
		ae *client.APIError
		ie *client.InvalidResponseError
	)
	switch {
	case errors.As(err, &ae):
		return ae.RequestID
	case errors.As(err, &ie):
		return ie.RequestID
	}
	return ""
}
