package httpapi

import (
	"encoding/json"
	"math"
	"net/http"

	"github.com/offload-app/offload"
)

type reconcileRequest struct {
	InstallID  json.RawMessage `json:"install_id"`
	Feature    json.RawMessage `json:"feature"`
	LocalCount json.RawMessage `json:"local_count"`
	Since      json.RawMessage `json:"since"`
}

type reconcileResponse struct {
	ServerCount        int64  `json:"server_count"`
	EffectiveRemaining int64  `json:"effective_remaining"`
	ReconciledAt       string `json:"reconciled_at"`
}

var errInstallIDMismatch = &offload.Error{Code: offload.CodeInstallIDMismatch}

// handleReconcileUsage merges the app's provisional count with the server's:
// the store keeps max(stored, local_count), durably, before the reply.
func handleReconcileUsage(store offload.UsageStore, clock offload.Clock, quota, maxBody int64) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var raw reconcileRequest
		if err := decodeBody(w, r, maxBody, &raw); err != nil {
			return err
		}
		installID, feature, local, err := parseReconcile(raw)
		if err != nil {
			return err
		}
		if claims, _ := offload.ClaimsFrom(r.Context()); claims.InstallID != installID {
			return errInstallIDMismatch
		}
		count, err := store.Reconcile(r.Context(), installID, feature, local)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, reconcileResponse{
			ServerCount:        count,
			EffectiveRemaining: max(0, quota-count),
			ReconciledAt:       timestamp(clock.Now()),
		})
		return nil
	})
}

func parseReconcile(raw reconcileRequest) (installID, feature string, local int64, err error) {
	if installID, err = textField(raw.InstallID, 8, 128); err != nil {
		return
	}
	if feature, err = textField(raw.Feature, 1, 64); err != nil {
		return
	}
	if local, err = intField(raw.LocalCount, 0, math.MaxInt64); err != nil {
		return
	}
	// since is accepted and ignored.
	err = ignoredTimeField(raw.Since)
	return
}
