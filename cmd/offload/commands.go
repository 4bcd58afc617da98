package main

import (
	"errors"
	"fmt"
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
	if err := noArgs("health", pos); err != nil {
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
	if err := noArgs("session", pos); err != nil {
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
	before, had, err := st.Tokens.Load()
	if err != nil {
		return err
	}
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
		return usagef("consent takes one of on, off, status")
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

func (c *cli) breakdown(args []string) error {
	fs := c.flagSet("breakdown")
	var hints, templates stringList
	granularity := 3
	fs.IntVar(&granularity, "g", granularity, "granularity 1–5")
	fs.IntVar(&granularity, "granularity", granularity, "granularity 1–5")
	fs.Var(&hints, "hint", "context hint (repeatable)")
	fs.Var(&templates, "template", "template id (repeatable)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	text := strings.TrimSpace(strings.Join(pos, " "))
	if text == "" {
		return usagef("breakdown needs the task text")
	}
	if granularity < 1 || granularity > 5 {
		return usagef("breakdown: granularity must be 1–5 (got %d)", granularity)
	}
	st, svc, err := c.openService()
	if err != nil {
		return err
	}
	on, err := st.Consent.CloudEnabled()
	if err != nil {
		return err
	}
	stop := func() {}
	if on && isTerminal(c.stderr) {
		stop = startSpinner(c.stderr, "asking the cloud", spinnerInterval)
	}
	res, err := svc.Generate(c.ctx, offload.BreakdownRequest{
		InputText:    text,
		Granularity:  granularity,
		ContextHints: hints,
		TemplateIDs:  templates,
	})
	stop()
	if res.Steps == nil {
		return err
	}
	if c.json {
		if perr := c.printJSON(res); perr != nil {
			return perr
		}
	} else {
		printTree(c.stdout, res.Steps, "")
		fmt.Fprintln(c.stdout, sourceLine(res))
	}
	return err // a plan was made but could not be counted
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
		if r.FallbackReason != "" {
			fmt.Fprintf(&b, " (cloud failed: %s", r.FallbackReason)
			if r.RequestID != "" {
				fmt.Fprintf(&b, ", request id %s", r.RequestID)
			}
			b.WriteString(")")
		}
	}
	return b.String()
}

type usageOutput struct {
	Features []usageRow `json:"features"`
}

type usageRow struct {
	client.FeatureUsage
	Displayed          int64  `json:"displayed"`
	Sent               *int64 `json:"sent_count,omitempty"`
	ServerCount        *int64 `json:"server_count,omitempty"`
	EffectiveRemaining *int64 `json:"effective_remaining,omitempty"`
	RequestID          string `json:"request_id,omitempty"`
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
		return usagef("usage takes status or sync")
	}
	_, svc, err := c.openService()
	if err != nil {
		return err
	}
	var out usageOutput
	if action == "status" {
		all, err := svc.Usage()
		if err != nil {
			return err
		}
		for _, u := range all {
			out.Features = append(out.Features, usageRow{FeatureUsage: u, Displayed: u.Displayed()})
		}
	} else {
		synced, err := svc.SyncUsage(c.ctx)
		if err != nil {
			return err
		}
		for _, s := range synced {
			out.Features = append(out.Features, usageRow{
				FeatureUsage: s.FeatureUsage, Displayed: s.Displayed(),
				Sent: &s.Sent, ServerCount: &s.ServerCount, EffectiveRemaining: &s.EffectiveRemaining,
				RequestID: s.RequestID,
			})
		}
	}
	if c.json {
		return c.printJSON(out)
	}
	for _, r := range out.Features {
		if r.ServerCount != nil {
			fmt.Fprintf(c.stdout, "%s: %d (sent %d, server %d, %d remaining)\n",
				r.Feature, r.Displayed, *r.Sent, *r.ServerCount, *r.EffectiveRemaining)
		} else {
			fmt.Fprintf(c.stdout, "%s: %d (local %d, server %d)\n", r.Feature, r.Displayed, r.Local, r.Mirror)
		}
	}
	return nil
}

// describe turns an error into the one line the user sees.
func describe(err error) string {
	var (
		ae *client.APIError
		te *client.TransportError
		ie *client.InvalidResponseError
	)
	switch {
	case errors.Is(err, client.ErrConsentRequired) && !errors.As(err, &ae):
		return `cloud AI is off; run "offload consent on" first`
	case errors.As(err, &ae):
		s := fmt.Sprintf("server answered %d", ae.Status)
		if ae.Code != "" {
			s += " " + ae.Code
		}
		if ae.Message != "" {
			s += ": " + ae.Message
		}
		if ae.RetryAfter > 0 {
			s += fmt.Sprintf("; retry in %s", ae.RetryAfter)
		}
		if ae.RequestID != "" {
			s += " (request id " + ae.RequestID + ")"
		}
		return s
	case errors.As(err, &te):
		return fmt.Sprintf("cannot reach the server (%s): %v", te.Op, te.Err)
	case errors.As(err, &ie):
		s := fmt.Sprintf("invalid response from the server (%s): %s", ie.Op, ie.Reason)
		if ie.RequestID != "" {
			s += " (request id " + ie.RequestID + ")"
		}
		return s
	}
	return err.Error()
}
