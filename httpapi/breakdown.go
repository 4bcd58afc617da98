package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
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

var errConsentRequired = &offload.Error{Code: offload.CodeConsentRequired}

// handleGenerateBreakdown runs the checks in the contract's order (the token
// was checked by the auth gate): consent → validation → content size →
// inference rate limit → quota → provider. Nothing reaches the provider
// unless every check passed.
func handleGenerateBreakdown(d Deps) http.Handler {
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
		if err := allow(d.AILimits, d.ClientIP(r), claims.InstallID, offload.CodeInferenceRateLimited); err != nil {
			return err
		}
		if d.EnforceQuota {
			total, err := d.Store.Count(r.Context(), claims.InstallID, offload.FeatureBreakdown)
			if err != nil {
				return err
			}
			if total >= d.FeatureQuota {
				// The quota has no window to wait out; a long Retry-After
				// tells the app not to retry soon.
				return &offload.Error{Code: offload.CodeQuotaExceeded, RetryAfter: time.Hour}
			}
		}

		// The provider call ends when the client goes away (r.Context) or
		// when the whole retry budget is spent.
		ctx, cancel := context.WithTimeout(r.Context(), d.ProviderDeadline)
		defer cancel()
		start := time.Now()
		out, err := d.Provider.Generate(ctx, req)
		latency := time.Since(start)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
				return &offload.ProviderError{Failure: offload.ProviderTimeout, Class: "deadline"}
			}
			var pe *offload.ProviderError
			if !errors.As(err, &pe) && r.Context().Err() != nil {
				// The client is gone; nobody reads this answer.
				return &offload.ProviderError{Failure: offload.ProviderRequestFailed, Class: "client_gone"}
			}
			return err
		}
		if _, err := d.Store.Increment(context.WithoutCancel(r.Context()), claims.InstallID, offload.FeatureBreakdown); err != nil {
			// The user has their plan; losing one count is better than
			// failing a request whose tokens are already spent.
			d.Logger.LogAttrs(r.Context(), slog.LevelWarn, "usage_increment_failed",
				slog.String("request_id", requestID(r.Context())),
				slog.String("error", err.Error()))
		}
		writeJSON(w, http.StatusOK, breakdownResponse{
			Steps:     out.Steps,
			Provider:  d.Provider.Name(),
			LatencyMS: latency.Milliseconds(),
			Usage:     out.Usage,
		})
		return nil
	})
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
