package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/local"
)

// Source says where a breakdown was made.
type Source string

const (
	SourceCloud    Source = "cloud"
	SourceOnDevice Source = "on-device"
)

// Reason says why a breakdown the user wanted from the cloud was made on
// the device. Switch on it; Fallback has the details.
type Reason string

const (
	ReasonConsentUnreadable Reason = "consent_unreadable" // the consent store failed: treated as off, nothing sent
	ReasonNoServer          Reason = "no_server"          // the Service has no Client
	ReasonUnreachable       Reason = "unreachable"        // no HTTP answer
	ReasonTimeout           Reason = "timeout"            // no answer within the cloud timeout
	ReasonInvalidResponse   Reason = "invalid_response"   // a 2xx the contract does not allow
	ReasonRateLimited       Reason = "rate_limited"       // 429 other than quota_exceeded (inference, session issue)
	ReasonQuotaExceeded     Reason = "quota_exceeded"     // 429 quota_exceeded
	ReasonTooLarge          Reason = "too_large"          // 413 request_too_large
	ReasonUnauthorized      Reason = "unauthorized"       // 401 after the one refresh
	ReasonRejected          Reason = "rejected"           // another 4xx: 422 validation_error, 403, 404, …
	ReasonServerError       Reason = "server_error"       // 5xx: provider_*, storage_unavailable, internal_error, a proxy's page
)

// Fallback explains an on-device result when consent was on (or could not
// be read). It is content-free.
type Fallback struct {
	Reason     Reason
	Status     int           // HTTP status, when the server answered
	Code       string        // the contract's error code, when the body had one
	RequestID  string        // the server's request id, when it answered
	RetryAfter time.Duration // from Retry-After, when there was one
	Err        error         // the cloud's error, for errors.As
}

// MarshalJSON writes the fields a script needs, and the message.
func (f *Fallback) MarshalJSON() ([]byte, error) {
	out := struct {
		Reason            Reason `json:"reason"`
		Status            int    `json:"status,omitempty"`
		Code              string `json:"code,omitempty"`
		RequestID         string `json:"request_id,omitempty"`
		RetryAfterSeconds int64  `json:"retry_after_seconds,omitempty"`
		Message           string `json:"message,omitempty"`
	}{f.Reason, f.Status, f.Code, f.RequestID, int64((f.RetryAfter + time.Second - 1) / time.Second), ""}
	if f.Err != nil {
		out.Message = f.Err.Error()
	}
	return json.Marshal(out)
}

// Result is one breakdown.
type Result struct {
	Source Source         `json:"source"`
	Steps  []offload.Step `json:"steps"`
	// Provider and Usage are set for cloud results.
	Provider string              `json:"provider,omitempty"`
	Usage    *offload.TokenUsage `json:"usage,omitempty"`
	// RequestID is the server's id of the cloud request, when it answered.
	RequestID string `json:"request_id,omitempty"`
	// Fallback says why the cloud was not used, when consent was on (or
	// unreadable). It is nil for cloud results and with consent off.
	Fallback *Fallback `json:"fallback,omitempty"`
	// Warnings are local state problems the breakdown went on without.
	Warnings []Warning `json:"-"`
}

// OnDeviceGenerator makes a breakdown without the network. It must never
// return an empty plan.
type OnDeviceGenerator func(offload.BreakdownRequest) []offload.Step

// DefaultAutoSyncTimeout bounds the usage reconcile that follows the first
// successful cloud breakdown of a Service.
const DefaultAutoSyncTimeout = 2 * time.Second

// Service is the breakdown service: on-device first, cloud only with the
// user's consent, falling back to on-device whenever the cloud is not used.
type Service struct {
	client   *Client
	consent  ConsentStore
	usage    UsageCounter
	onDevice OnDeviceGenerator
	syncTO   time.Duration

	mu       sync.Mutex
	syncDone chan struct{} // closed when the background reconcile ends; nil before it starts
	syncErr  error
}

// ServiceOption configures a Service.
type ServiceOption func(*Service)

// WithOnDeviceGenerator replaces local.Generate as the on-device generator.
func WithOnDeviceGenerator(g OnDeviceGenerator) ServiceOption {
	return func(s *Service) { s.onDevice = g }
}

// WithAutoSync sets the bound on the background reconcile (default
// DefaultAutoSyncTimeout); 0 or less turns it off.
func WithAutoSync(timeout time.Duration) ServiceOption {
	return func(s *Service) { s.syncTO = timeout }
}

// NewService returns a Service. c may be nil for an app with no backend;
// then every breakdown is on-device.
func NewService(c *Client, consent ConsentStore, usage UsageCounter, opts ...ServiceOption) *Service {
	s := &Service{client: c, consent: consent, usage: usage, onDevice: local.Generate, syncTO: DefaultAutoSyncTimeout}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Generate breaks req down. It always returns a plan, and an error only
// when ctx has ended (then no plan, and nothing is counted).
//
// With consent off it runs on-device and touches no network. With consent
// on it asks the cloud, and whenever the cloud is not used (no answer in the
// cloud timeout, any refusal, any failure) it makes the plan on the device
// and says why in Result.Fallback. A consent store that cannot be read is
// consent off, with Fallback.Reason ReasonConsentUnreadable.
//
// Every breakdown made, from either source, adds one to the local
// "breakdown" count; a count that cannot be saved is a Warning. The first
// cloud success of the Service starts a reconcile of pending local counts
// in the background (see Wait).
func (s *Service) Generate(ctx context.Context, req offload.BreakdownRequest) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	var (
		res Result
		fb  *Fallback
	)
	ctx, sink := withWarningSink(ctx)
	on, err := s.consent.CloudEnabled()
	switch {
	case err != nil:
		fb = &Fallback{Reason: ReasonConsentUnreadable, Err: err}
	case on && s.client == nil:
		fb = &Fallback{Reason: ReasonNoServer}
	case on:
		cb, err := s.client.GenerateBreakdown(ctx, req, true)
		if err == nil {
			usage := cb.Usage
			res = Result{Source: SourceCloud, Steps: cb.Steps, Provider: cb.Provider, Usage: &usage, RequestID: cb.RequestID}
			break
		}
		if ctx.Err() != nil {
			// The caller gave up; an on-device plan would go unread.
			return Result{}, ctx.Err()
		}
		fb = fallbackFor(err)
	}
	if res.Source == "" {
		res = Result{Source: SourceOnDevice, Steps: s.onDevice(req), Fallback: fb}
		if fb != nil {
			res.RequestID = fb.RequestID
		}
	}
	if _, err := s.usage.Increment(offload.FeatureBreakdown); err != nil {
		sink.add(Warning{Err: err, Effect: EffectNotCounted})
	}
	res.Warnings = sink.warnings()
	if res.Source == SourceCloud {
		s.startSync(ctx)
	}
	return res, nil
}

// fallbackFor classifies a cloud breakdown's error.
func fallbackFor(err error) *Fallback {
	fb := &Fallback{Reason: ReasonServerError, Err: err}
	var (
		te *TransportError
		ie *InvalidResponseError
		ae *APIError
		ne net.Error
	)
	switch {
	case errors.As(err, &te):
		fb.Reason = ReasonUnreachable
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			fb.Reason = ReasonTimeout
		}
	case errors.As(err, &ie):
		fb.Reason, fb.Status, fb.RequestID = ReasonInvalidResponse, ie.Status, ie.RequestID
	case errors.As(err, &ae):
		fb.Status, fb.Code, fb.RequestID, fb.RetryAfter = ae.Status, ae.Code, ae.RequestID, ae.RetryAfter
		switch {
		case ae.Code == offload.CodeQuotaExceeded:
			fb.Reason = ReasonQuotaExceeded
		case ae.Status == 429:
			fb.Reason = ReasonRateLimited
		case ae.Status == 413:
			fb.Reason = ReasonTooLarge
		case ae.Status == 401:
			fb.Reason = ReasonUnauthorized
		case ae.Status >= 400 && ae.Status <= 499:
			fb.Reason = ReasonRejected
		}
	}
	return fb
}

// startSync reconciles pending local counts in the background, once per
// Service, bounded by the auto-sync timeout. It runs only after a cloud
// success: consent is on and the server answers.
func (s *Service) startSync(ctx context.Context) {
	if s.syncTO <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.syncDone != nil {
		return
	}
	all, err := s.usage.All()
	if err != nil || !slices.ContainsFunc(all, FeatureUsage.Pending) {
		return
	}
	done := make(chan struct{})
	s.syncDone = done
	// Not the caller's ctx: it may end as soon as Generate returns. The
	// background call's warnings go to a sink nobody reads: it is silent.
	bg, _ := withWarningSink(context.WithoutCancel(ctx))
	go func() {
		defer close(done)
		bg, cancel := context.WithTimeout(bg, s.syncTO)
		defer cancel()
		_, err := s.SyncUsage(bg)
		s.mu.Lock()
		s.syncErr = err
		s.mu.Unlock()
	}()
}

// Wait waits for the background reconcile, if one was started, to end
// (it is bounded by the auto-sync timeout) or for ctx to end. It returns
// the reconcile's error, or ctx's.
func (s *Service) Wait(ctx context.Context) error {
	s.mu.Lock()
	done := s.syncDone
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncErr
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
// the server: it sends max(local, mirror), raises the mirror to the
// server's count and keeps its effective_remaining. Counts are usage data
// about the user, so like content they leave the device only with cloud
// consent: with consent off SyncUsage returns ErrConsentRequired and sends
// nothing. Local counts made offline stay in the store and go with the
// next sync that reaches the server.
func (s *Service) SyncUsage(ctx context.Context) ([]FeatureSync, error) {
	on, err := s.consent.CloudEnabled()
	if err != nil {
		return nil, err
	}
	if !on || s.client == nil {
		return nil, ErrConsentRequired
	}
	all, err := s.Usage()
	if err != nil {
		return nil, err
	}
	out := make([]FeatureSync, 0, len(all))
	for _, u := range all {
		sent := u.Displayed()
		rec, err := s.client.ReconcileUsage(ctx, u.Feature, sent)
		if err != nil {
			return out, err
		}
		nu, err := s.usage.RaiseMirror(u.Feature, rec)
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
