package client

import (
	"context"
	"errors"
	"path/filepath"
)

// ServerOutcome says what Forget did about the server's copy of the counts.
type ServerOutcome string

const (
	ServerErased      ServerOutcome = "erased"        // the server deleted them (Forgotten.Erasure)
	ServerConsentOff  ServerOutcome = "consent_off"   // not asked: cloud AI is off (or unreadable)
	ServerLocalOnly   ServerOutcome = "local_only"    // not asked: the caller said so
	ServerNoInstallID ServerOutcome = "no_install_id" // not asked: no install id is stored, so none to erase
	ServerNoClient    ServerOutcome = "no_server"     // not asked: no Client
	ServerUnreachable ServerOutcome = "unreachable"   // asked, no answer (Forgotten.ServerErr)
)

// Forgotten is what Forget did.
type Forgotten struct {
	Server    ServerOutcome `json:"server"`
	Erasure   *Erasure      `json:"erasure,omitempty"`
	ServerErr error         `json:"-"` // why the server was not reached, or refused
	// Removed names the state files removed, in order; files that were not
	// there are not named.
	Removed  []string  `json:"removed"`
	Warnings []Warning `json:"-"`
}

// Forget erases what this install left behind, for a user who asks for it.
//
// First the server: when c is non-nil, localOnly is false, an install id is
// stored and cloud consent is on, it asks the server to erase the install's
// counts (Client.EraseUsage); otherwise the server is not contacted at all.
// Then the device: the session, the usage counts and the install id (and
// any temp file a crash left beside them) are removed. The consent setting
// is the user's choice and stays.
//
// When the server answers but refuses (rate limited, an error status, an
// invalid answer), nothing is removed and the error is returned: the
// install id is the only key to the server's copy, and removing it would
// leave that copy out of the user's reach. When the server cannot be
// reached, the local state is removed anyway, as when consent is off, and
// Server says the server's copy (if any) was not touched. A ctx that ends
// first removes nothing.
//
// c must be built with st.InstallID and st.Tokens. Neither st nor c is of
// use afterwards: OpenState makes a new install.
func (st *State) Forget(ctx context.Context, c *Client, localOnly bool) (Forgotten, error) {
	var out Forgotten
	on, err := st.Consent.CloudEnabled()
	if err != nil {
		out.Warnings = append(out.Warnings, Warning{Err: err, Effect: EffectConsentOff})
		on = false
	}
	switch {
	case localOnly:
		out.Server = ServerLocalOnly
	case st.InstallID == "" || st.Temporary:
		out.Server = ServerNoInstallID
	case !on:
		out.Server = ServerConsentOff
	case c == nil:
		out.Server = ServerNoClient
	default:
		ctx, sink := withWarningSink(ctx)
		e, err := c.EraseUsage(ctx)
		out.Warnings = append(out.Warnings, sink.warnings()...)
		var te *TransportError
		switch {
		case err == nil:
			out.Server, out.Erasure = ServerErased, &e
		case ctx.Err() != nil:
			return out, ctx.Err()
		case errors.As(err, &te):
			out.Server, out.ServerErr = ServerUnreachable, err
		default:
			out.ServerErr = err
			return out, err
		}
	}
	if err := ctx.Err(); err != nil {
		return out, err
	}
	return out, st.removeLocal(c, &out)
}

func (st *State) removeLocal(c *Client, out *Forgotten) error {
	steps := []struct {
		name   string
		remove func() (bool, error)
	}{
		{SessionFile, st.Tokens.remove},
		{UsageFile, st.Usage.remove},
		{InstallIDFile, func() (bool, error) { return removeStateFile(filepath.Join(st.Dir, InstallIDFile)) }},
	}
	var errs []error
	for _, s := range steps {
		existed, err := s.remove()
		if existed {
			out.Removed = append(out.Removed, s.name)
		}
		errs = append(errs, err)
	}
	if c != nil {
		errs = append(errs, c.ClearSession()) // the copy in memory, if any
	}
	// A crash between writing a temp file and renaming it leaves the temp
	// file behind; it may hold a token.
	for _, name := range []string{SessionFile, UsageFile, InstallIDFile} {
		stray, _ := filepath.Glob(filepath.Join(st.Dir, "."+name+".tmp-*"))
		for _, p := range stray {
			_, err := removeStateFile(p)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *FileTokenStore) remove() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return removeStateFile(s.path)
}

func (s *FileUsageCounter) remove() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return removeStateFile(s.path)
}
