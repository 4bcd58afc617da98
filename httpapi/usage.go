package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

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

type eraseResponse struct {
	Deleted  int64  `json:"deleted"`
	ErasedAt string `json:"erased_at"`
}

var errInstallIDMismatch = &offload.Error{Code: offload.CodeInstallIDMismatch}

// errWriteTimeout is a usage write that was not durable within
// Deps.UsageWriteTimeout (a stalled disk or database).
var errWriteTimeout = fmt.Errorf("%w: write not durable within the usage write timeout", offload.ErrStorage)

// storeWrite runs one usage-store write for a request. The write does not
// end when the client goes away (a reconcile whose client half-closed after
// sending still commits, and answers if the connection can take it), but it
// is bounded by the write timeout, past which it fails as storage
// unavailable: the caller learns that in seconds, not when the disk wakes.
func storeWrite[T any](r *http.Request, timeout time.Duration, write func(context.Context) (T, error)) (T, error) {
	ctx := context.WithoutCancel(r.Context())
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	v, err := write(ctx)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
		return v, errWriteTimeout
	}
	return v, err
}

// handleReconcileUsage merges the app's provisional count with the server's:
// the store keeps max(stored, local_count), durably, before the reply.
func handleReconcileUsage(d Deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var raw reconcileRequest
		if err := decodeBody(w, r, d.MaxBodyBytes, &raw); err != nil {
			return err
		}
		installID, feature, local, err := parseReconcile(raw)
		if err != nil {
			return err
		}
		if claims, _ := offload.ClaimsFrom(r.Context()); claims.InstallID != installID {
			return errInstallIDMismatch
		}
		if err := d.allow(d.UsageLimits, r, installID, offload.CodeUsageRateLimited); err != nil {
			return err
		}
		count, err := storeWrite(r, d.UsageWriteTimeout, func(ctx context.Context) (int64, error) {
			return d.Store.Reconcile(ctx, installID, feature, local)
		})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, reconcileResponse{
			ServerCount:        count,
			EffectiveRemaining: max(0, d.FeatureQuota-count),
			ReconciledAt:       timestamp(d.Clock.Now()),
		})
		return nil
	})
}

// handleEraseUsage deletes every count stored for the token's install id
// (never one named in the request), durably, before the reply. Erasing
// twice is not an error: the second deletes 0 rows.
func handleEraseUsage(d Deps) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		claims, _ := offload.ClaimsFrom(r.Context())
		if err := d.allow(d.UsageLimits, r, claims.InstallID, offload.CodeUsageRateLimited); err != nil {
			return err
		}
		n, err := storeWrite(r, d.UsageWriteTimeout, func(ctx context.Context) (int64, error) {
			return d.Store.Erase(ctx, claims.InstallID)
		})
		if err != nil {
			return err
		}
		d.Metrics.UsageErased()
		writeJSON(w, http.StatusOK, eraseResponse{Deleted: n, ErasedAt: timestamp(d.Clock.Now())})
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
