package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/offload-app/offload"
)

// OptInHeader carries the user's explicit consent to cloud processing.
const OptInHeader = "X-Offload-Cloud-Opt-In"

type breakdownRequest struct {
	InputText    json.RawMessage `json:"input_text"`
	Granularity  json.RawMessage `json:"granularity"`
	ContextHints json.RawMessage `json:"context_hints"`
	TemplateIDs  json.RawMessage `json:"template_ids"`
}

type breakdownResponse struct {
	Steps     []offload.Step     `json:"steps"`
	Provider  string             `json:"provider"`
	LatencyMS int64              `json:"latency_ms"`
	Usage     offload.TokenUsage `json:"usage"`
}

var (
	errConsentRequired = &offload.Error{Code: offload.CodeConsentRequired}
	// errBusy is the admission bound: the app falls back on the device at
	// once instead of queueing behind thousands of slow upstream calls.
	errBusy = &offload.Error{Code: offload.CodeProviderUnavailable, RetryAfter: time.Second}
)

// handleGenerateBreakdown runs the checks in the contract's order (the token
// was checked by the auth gate): consent → validation → content size →
// inference rate limit → admission → quota → provider. Nothing reaches the
// provider unless every check passed.
func handleGenerateBreakdown(d Deps) http.Handler {
	var inFlight atomic.Int64
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if !strings.EqualFold(strings.TrimSpace(r.Header.Get(OptInHeader)), "true") {
			return errConsentRequired
		}
		req, err := decodeBreakdown(w, r, d.MaxBodyBytes)
		if err != nil {
			return err
		}
		if contentChars(req) > d.MaxInputChars {
			return offload.Errorf(offload.CodeRequestTooLarge, "Request content exceeds max size of %d characters", d.MaxInputChars)
		}
		claims, _ := offload.ClaimsFrom(r.Context())
		if err := d.allow(d.AILimits, r, claims.InstallID, offload.CodeInferenceRateLimited); err != nil {
			return err
		}
		if n := inFlight.Add(1); d.MaxInFlight > 0 && n > int64(d.MaxInFlight) {
			inFlight.Add(-1)
			d.Metrics.AdmissionRejected()
			return errBusy
		}
		defer inFlight.Add(-1)

		// With the quota enforced, the count is reserved before the call
		// (atomically in the store, so N concurrent requests at quota-1 let
		// exactly one through) and given back if the call fails. It gates
		// on the breakdown feature's own count, the number reconcile
		// reports as effective_remaining.
		reserved := false
		if d.EnforceQuota {
			if _, err := storeWrite(r, d.UsageWriteTimeout, func(ctx context.Context) (int64, error) {
				return d.Store.Reserve(ctx, claims.InstallID, offload.FeatureBreakdown, d.FeatureQuota)
			}); err != nil {
				return err
			}
			reserved = true
		}

		// The provider call ends when the client goes away (r.Context) or
		// when the whole retry budget is spent.
		ctx, cancel := context.WithTimeout(r.Context(), d.ProviderDeadline)
		defer cancel()
		start := time.Now()
		out, err := d.Provider.Generate(ctx, req)
		latency := time.Since(start)
		if err != nil {
			if reserved {
				d.releaseReservation(r, claims.InstallID)
			}
			return providerFailure(r, err)
		}
		name := out.Provider
		if name == "" {
			name = d.Provider.Name()
		}
		writeJSON(w, http.StatusOK, breakdownResponse{
			Steps:     out.Steps,
			Provider:  name,
			LatencyMS: latency.Milliseconds(),
			Usage:     out.Usage,
		})
		if !reserved {
			// The answer goes out first: the user has their plan while the
			// count commits (graceful shutdown waits for it; only a crash in
			// those milliseconds loses it).
			_ = http.NewResponseController(w).Flush()
			d.countBreakdown(r, claims.InstallID)
		}
		return nil
	})
}

// providerFailure maps a failed provider call to what the log and the
// client see: the client leaving, our shutdown, the budget running out, or
// the provider's own typed error.
func providerFailure(r *http.Request, err error) error {
	var pe *offload.ProviderError
	switch {
	case errors.As(err, &pe):
		return err
	case errors.Is(context.Cause(r.Context()), offload.ErrShuttingDown):
		return &offload.ProviderError{Failure: offload.ProviderUnavailable, Class: "shutdown"}
	case r.Context().Err() != nil:
		return offload.ErrClientClosed // nobody reads this answer
	case errors.Is(err, context.DeadlineExceeded):
		return &offload.ProviderError{Failure: offload.ProviderTimeout, Class: "deadline"}
	}
	return err
}

// countBreakdown adds the server's own count of a served breakdown. It
// never fails the request: the user has their plan, and losing one count is
// better than failing a request whose tokens are already spent. A lost count
// is logged (never the install id) and counted.
func (d Deps) countBreakdown(r *http.Request, installID string) {
	if _, err := storeWrite(r, d.UsageWriteTimeout, func(ctx context.Context) (int64, error) {
		return d.Store.Increment(ctx, installID, offload.FeatureBreakdown)
	}); err != nil {
		d.Metrics.UsageIncrementLost()
		d.Logger.LogAttrs(r.Context(), slog.LevelWarn, "usage_increment_lost",
			slog.String("request_id", requestID(r.Context())),
			slog.String("error", err.Error()))
	}
}

// releaseReservation gives back the count reserved for a breakdown that
// failed. If that fails too, the install is charged one breakdown it did
// not get; that is logged and counted, never retried forever.
func (d Deps) releaseReservation(r *http.Request, installID string) {
	if _, err := storeWrite(r, d.UsageWriteTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, d.Store.Release(ctx, installID, offload.FeatureBreakdown)
	}); err != nil {
		d.Logger.LogAttrs(r.Context(), slog.LevelWarn, "usage_release_failed",
			slog.String("request_id", requestID(r.Context())),
			slog.String("error", err.Error()))
	}
}

func decodeBreakdown(w http.ResponseWriter, r *http.Request, maxBody int64) (offload.BreakdownRequest, error) {
	var raw breakdownRequest
	if err := decodeBody(w, r, maxBody, &raw); err != nil {
		return offload.BreakdownRequest{}, err
	}
	return parseBreakdown(raw)
}

func parseBreakdown(raw breakdownRequest) (offload.BreakdownRequest, error) {
	var req offload.BreakdownRequest
	var err error
	if req.InputText, err = textField(raw.InputText, 1, int(^uint(0)>>1)); err != nil {
		return req, err
	}
	g, err := intField(raw.Granularity, 1, 5)
	if err != nil {
		return req, err
	}
	req.Granularity = int(g)
	if req.ContextHints, err = listField(raw.ContextHints, 32, 1, 280); err != nil {
		return req, err
	}
	if req.TemplateIDs, err = listField(raw.TemplateIDs, 32, 1, 128); err != nil {
		return req, err
	}
	return req, nil
}

// contentChars is the size the contract limits: code points of the input
// text, every hint and every template id.
func contentChars(req offload.BreakdownRequest) int {
	n := utf8.RuneCountInString(req.InputText)
	for _, s := range req.ContextHints {
		n += utf8.RuneCountInString(s)
	}
	for _, s := range req.TemplateIDs {
		n += utf8.RuneCountInString(s)
	}
	return n
}
