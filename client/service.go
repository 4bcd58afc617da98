package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/local"
)

// Source says where a breakdown was made.
type Source string

const (
	SourceCloud    Source = "cloud"
	SourceOnDevice Source = "on-device"
)

// Fallback reasons that are not a server error code. A 5xx answer's reason
// is its code (provider_timeout, provider_request_failed, …), or
// FallbackServerError when the body had none.
const (
	FallbackUnreachable     = "unreachable"      // no HTTP answer
	FallbackTimeout         = "timeout"          // no HTTP answer in time
	FallbackInvalidResponse = "invalid_response" // a 2xx the contract does not allow
	FallbackServerError     = "server_error"     // a 5xx without a contract code
)

// Result is one breakdown.
type Result struct {
	Source Source         `json:"source"`
	Steps  []offload.Step `json:"steps"`
	// Provider and Usage are set for cloud results.
	Provider string              `json:"provider,omitempty"`
	Usage    *offload.TokenUsage `json:"usage,omitempty"`
	// FallbackReason says why a cloud attempt ended on-device.
	FallbackReason string `json:"fallback_reason,omitempty"`
	// RequestID is the server's id of the cloud request, when there was one.
	RequestID string `json:"request_id,omitempty"`
}

// OnDeviceGenerator makes a breakdown without the network. It must never
// return an empty plan.
type OnDeviceGenerator func(offload.BreakdownRequest) []offload.Step

// Service is the breakdown service: on-device first, cloud only with the
// user's consent, falling back to on-device when the cloud fails.
type Service struct {
	client   *Client
	consent  ConsentStore
	usage    UsageCounter
	onDevice OnDeviceGenerator
}

// ServiceOption configures a Service.
type ServiceOption func(*Service)

// WithOnDeviceGenerator replaces local.Generate as the on-device generator.
func WithOnDeviceGenerator(g OnDeviceGenerator) ServiceOption {
	return func(s *Service) { s.onDevice = g }
}

// NewService returns a Service. c may be nil for an app with no backend;
// then every breakdown is on-device.
func NewService(c *Client, consent ConsentStore, usage UsageCounter, opts ...ServiceOption) *Service {
	s := &Service{client: c, consent: consent, usage: usage, onDevice: local.Generate}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Generate breaks req down. With consent off it runs on-device only and
// touches no network. With consent on it asks the cloud and falls back to
// on-device when the cloud fails (no answer, an invalid answer, a 5xx). It
// does not fall back when the server refuses (401 after the one refresh,
// 403 consent_required or install_id_mismatch, any 429, quota_exceeded, or
// another 4xx): the typed error is returned so the UI can say why.
//
// Every breakdown made, from either source, adds one to the local
// "breakdown" count. If that count cannot be saved, Generate returns the
// result together with the store's error.
func (s *Service) Generate(ctx context.Context, req offload.BreakdownRequest) (Result, error) {
	on, err := s.consent.CloudEnabled()
	if err != nil {
		return Result{}, err
	}
	var res Result
	if !on || s.client == nil {
		res = s.generateOnDevice(req, "")
	} else {
		cb, err := s.client.GenerateBreakdown(ctx, req, true)
		switch reason, fallback := fallbackReason(err); {
		case err == nil:
			usage := cb.Usage
			res = Result{Source: SourceCloud, Steps: cb.Steps, Provider: cb.Provider, Usage: &usage, RequestID: cb.RequestID}
		case ctx.Err() != nil:
			// The caller gave up; an on-device plan would go unread.
			return Result{}, err
		case fallback:
			res = s.generateOnDevice(req, reason)
			res.RequestID = requestIDOf(err)
		default:
			return Result{}, err
		}
	}
	if _, err := s.usage.Increment(offload.FeatureBreakdown); err != nil {
		return res, fmt.Errorf("offload client: count breakdown: %w", err)
	}
	return res, nil
}

func (s *Service) generateOnDevice(req offload.BreakdownRequest, reason string) Result {
	return Result{Source: SourceOnDevice, Steps: s.onDevice(req), FallbackReason: reason}
}

// fallbackReason says whether err, from a cloud breakdown, is a failure of
// the cloud (fall back, with a reason) or a refusal (do not).
func fallbackReason(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	var te *TransportError
	if errors.As(err, &te) {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return FallbackTimeout, true
		}
		return FallbackUnreachable, true
	}
	var ie *InvalidResponseError
	if errors.As(err, &ie) {
		return FallbackInvalidResponse, true
	}
	var ae *APIError
	if errors.As(err, &ae) && ae.Status >= 500 && ae.Status <= 599 && ae.Code != offload.CodeQuotaExceeded {
		if ae.Code != "" {
			return ae.Code, true
		}
		return FallbackServerError, true
	}
	return "", false
}

// requestIDOf returns the id of a request the server answered. A request
// that got no answer has none worth showing: the server may never have seen it.
func requestIDOf(err error) string {
	var ae *APIError
	var ie *InvalidResponseError
	switch {
	case errors.As(err, &ae):
		return ae.RequestID
	case errors.As(err, &ie):
		return ie.RequestID
	}
	return ""
}

// FeatureSync is the outcome of reconciling one feature.
type FeatureSync struct {
	FeatureUsage
	Sent               int64  `json:"sent_count"`
	ServerCount        int64  `json:"server_count"`
	EffectiveRemaining int64  `json:"effective_remaining"`
	RequestID          string `json:"request_id,omitempty"`
}

// SyncUsage reconciles every counted feature (and "breakdown", always) with
// the server: it sends max(local, mirror) and raises the mirror to the
// server's count. Counts are usage data about the user, so like content
// they leave the device only with cloud consent: with consent off SyncUsage
// returns ErrConsentRequired and sends nothing. Local counts made offline
// stay in the store and go with the next sync that reaches the server.
func (s *Service) SyncUsage(ctx context.Context) ([]FeatureSync, error) {
	on, err := s.consent.CloudEnabled()
	if err != nil {
		return nil, err
	}
	if !on || s.client == nil {
		return nil, ErrConsentRequired
	}
	all, err := s.usage.All()
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(all, func(u FeatureUsage) bool { return u.Feature == offload.FeatureBreakdown }) {
		u, err := s.usage.Get(offload.FeatureBreakdown)
		if err != nil {
			return nil, err
		}
		all = append([]FeatureUsage{u}, all...)
	}
	out := make([]FeatureSync, 0, len(all))
	for _, u := range all {
		sent := u.Displayed()
		rec, err := s.client.ReconcileUsage(ctx, u.Feature, sent)
		if err != nil {
			return out, err
		}
		nu, err := s.usage.RaiseMirror(u.Feature, rec.ServerCount)
		if err != nil {
			return out, err
		}
		out = append(out, FeatureSync{
			FeatureUsage:       nu,
			Sent:               sent,
			ServerCount:        rec.ServerCount,
			EffectiveRemaining: rec.EffectiveRemaining,
			RequestID:          rec.RequestID,
		})
	}
	return out, nil
}

// Usage returns the local view of every counted feature, "breakdown" first.
func (s *Service) Usage() ([]FeatureUsage, error) {
	all, err := s.usage.All()
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(all, func(u FeatureUsage) bool { return u.Feature == offload.FeatureBreakdown }) {
		all = append([]FeatureUsage{{Feature: offload.FeatureBreakdown}}, all...)
	}
	return all, nil
}
