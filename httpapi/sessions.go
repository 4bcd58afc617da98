package httpapi

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/token"
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
func handleCreateSession(tokens *token.Codec, clock offload.Clock, clientIP func(*http.Request) netip.Addr, limits Limits, maxBody int64) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var req createSessionRequest
		if err := decodeBody(w, r, maxBody, &req); err != nil {
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
		if err := allow(limits, clientIP(r), installID, offload.CodeSessionRateLimited); err != nil {
			return err
		}
		tok, exp, err := tokens.Issue(installID, clock.Now())
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
func allow(l Limits, ip netip.Addr, installID, code string) error {
	if ok, retry := l.PerIP.Allow(ip.String()); !ok {
		return &offload.Error{Code: code, RetryAfter: retry}
	}
	if ok, retry := l.PerInstall.Allow(installID); !ok {
		return &offload.Error{Code: code, RetryAfter: retry}
	}
	return nil
}

// timestamp formats t as the contract wants: RFC 3339, UTC, whole seconds, Z.
func timestamp(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}
