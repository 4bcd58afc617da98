package main

import (
	"errors"
	"fmt"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/client"
)

// doctorProbe is the fixed, made-up task doctor sends for its breakdown
// check: never user content.
const doctorProbe = "Doctor check: water the plants"

type check struct {
	Name      string `json:"name"`
	OK        bool   `json:"ok"`
	Skipped   bool   `json:"skipped,omitempty"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id,omitempty"`
}

type doctorOutput struct {
	Server string  `json:"server"`
	OK     bool    `json:"ok"`
	Checks []check `json:"checks"`
}

// doctor checks a deployment end to end, one line per check. A check whose
// prerequisite failed is shown as skipped; any failure makes the exit non-zero.
func (c *cli) doctor(args []string) error {
	fs := c.flagSet("doctor")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs("doctor", pos); err != nil {
		return err
	}
	out := doctorOutput{Server: c.serverURL(), OK: true}
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

	c.runChecks(add, fail, skip)

	if c.json {
		if err := c.printJSON(out); err != nil {
			return err
		}
	} else {
		for _, ck := range out.Checks {
			mark := "✓"
			switch {
			case ck.Skipped:
				mark = "-"
			case !ck.OK:
				mark = "✗"
			}
			fmt.Fprintf(c.stdout, "%s %-12s %s\n", mark, ck.Name, ck.Detail)
		}
	}
	if !out.OK {
		return errReported
	}
	return nil
}

func (c *cli) runChecks(add func(check), fail func(string, error), skip func(name, why string)) {
	names := []string{"state", "reachability", "health", "session", "reconcile", "breakdown"}
	skipRest := func(from int, why string) {
		for _, n := range names[from:] {
			skip(n, why)
		}
	}

	st, err := c.openState()
	if err != nil {
		fail("state", err)
		skipRest(1, "no client state")
		return
	}
	consent, err := st.Consent.CloudEnabled()
	if err != nil {
		fail("state", err)
		skipRest(1, "no client state")
		return
	}
	onOff := map[bool]string{true: "on", false: "off"}[consent]
	add(check{Name: "state", OK: true, Detail: fmt.Sprintf("%s (cloud AI %s)", st.Dir, onOff)})

	cl, err := c.newClient(st)
	if err != nil {
		fail("reachability", err)
		skipRest(2, "bad server URL")
		return
	}

	// Reachability is any HTTP answer; health is the right answer.
	h, err := cl.Health(c.ctx)
	var te *client.TransportError
	if errors.As(err, &te) {
		fail("reachability", err)
		skipRest(2, "server unreachable")
		return
	}
	add(check{Name: "reachability", OK: true, Detail: cl.BaseURL()})
	switch {
	case err != nil:
		fail("health", err)
	case h.Status != "ok":
		add(check{Name: "health", Detail: fmt.Sprintf("status %q, want \"ok\"", cleanLine(h.Status)), RequestID: h.RequestID})
	default:
		add(check{Name: "health", OK: true, Detail: fmt.Sprintf("%s %s (%s)", h.Service, h.Version, h.Environment)})
	}

	s, err := cl.CreateSession(c.ctx)
	if err != nil {
		fail("session", err)
		skipRest(4, "no session")
		return
	}
	add(check{Name: "session", OK: true, Detail: "issued, expires " + s.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z")})

	// A count of 0 never changes the server's count and says nothing about
	// the user, so this round trip runs with consent off too.
	rec, err := cl.ReconcileUsage(c.ctx, offload.FeatureBreakdown, 0)
	if err != nil {
		fail("reconcile", err)
	} else {
		add(check{Name: "reconcile", OK: true, RequestID: rec.RequestID,
			Detail: fmt.Sprintf("server count %d, %d remaining", rec.ServerCount, rec.EffectiveRemaining)})
	}

	if !consent {
		skip("breakdown", `cloud AI is off (run "offload consent on" to check it)`)
		return
	}
	b, err := cl.GenerateBreakdown(c.ctx, offload.BreakdownRequest{InputText: doctorProbe, Granularity: 1}, true)
	if err != nil {
		fail("breakdown", err)
		return
	}
	add(check{Name: "breakdown", OK: true, RequestID: b.RequestID,
		Detail: fmt.Sprintf("cloud (%s), %d steps in %s", cleanLine(b.Provider), len(b.Steps), b.Latency)})
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
