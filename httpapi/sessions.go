package httpapi

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"time"

	"github.com/offload-app/offload"
)

type createSessionRequest struct {
	InstallID  json.RawMessage `json:"install_id"`
	AppVersion json.RawMessage `json:"app_version"`
	Platform   json.RawMessage `json:"platform"`
}

type createSessionResponse struct {
	SessionToken string `json:"session_token"`
	ExpiresAt    string `json:"expires_at"`
}

// handleCreateSession issues an anonymous session token. Validation comes
// before the rate limits, so malformed requests don't use up a client's quota.
func handleCreateSession(d Deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var req createSessionRequest
		if err := decodeBody(w, r, d.MaxBodyBytes, &req); err != nil {
			return err
		}
		installID, err := textField(req.InstallID, 8, 128)
		if err != nil {
			return err
		}
		if _, err := textField(req.AppVersion, 1, 32); err != nil {
			return err
		}
		if _, err := textField(req.Platform, 1, 32); err != nil {
			return err
		}
		if err := d.allow(d.SessionLimits, r, installID, offload.CodeSessionRateLimited); err != nil {
			return err
		}
		tok, exp, err := d.Tokens.Issue(installID, d.Clock.Now())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, createSessionResponse{SessionToken: tok, ExpiresAt: timestamp(exp)})
		return nil
	})
}

// allow counts one event against both the per-IP and per-install limiter.
// The IP is checked first so a flood from one address can't burn the
// per-install budget of ids it doesn't own.
func (d Deps) allow(l Limits, r *http.Request, installID, code string) error {
	if ok, retry := l.PerIP.Allow(ipKey(d.ClientIP(r))); !ok {
		d.Metrics.RateLimited(l.Name + "_ip")
		return &offload.Error{Code: code, RetryAfter: retry}
	}
	if ok, retry := l.PerInstall.Allow(installID); !ok {
		d.Metrics.RateLimited(l.Name + "_install")
		return &offload.Error{Code: code, RetryAfter: retry}
	}
	return nil
}

// ipKey is the per-IP limiter key of a client address: an IPv4 address (or
// an IPv4-mapped IPv6 one) as itself, an IPv6 address by its /64, because
// one home connection or cloud VM is handed a whole /64 and could otherwise
// spread its requests over 2^64 keys.
func ipKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, err := a.WithZone("").Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return a.String()
}

// timestamp formats t as the contract wants: RFC 3339, UTC, whole seconds, Z.
func timestamp(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}
