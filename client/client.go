// Package client is the app side of Offload: a backend client that manages
// the anonymous session token, a breakdown service that works on-device
// first and uses the cloud only with explicit consent, and the small stores
// (session token, consent, provisional usage counter) they need, each with an
// in-memory and a file-backed implementation.
//
// The client speaks the wire contract of the Offload backend API. It never
// puts user content (breakdown text, hints, template ids, steps) or tokens in
// an error message, and it sends content only when called with consent.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/offload-app/offload"
)

// Contract paths.
const (
	pathHealth    = "/v1/health"
	pathSessions  = "/v1/sessions/anonymous"
	pathBreakdown = "/v1/ai/breakdown/generate"
	pathReconcile = "/v1/usage/reconcile"
	pathUsage     = "/v1/usage" // DELETE: erase the install's counts
)

const (
	// RefreshMargin is how close to expiry a session may get before the
	// client replaces it ahead of a protected call.
	RefreshMargin = 30 * time.Second

	// MaxResponseBytes bounds every response body the client reads.
	MaxResponseBytes = 1 << 20

	// DefaultTimeout bounds every call but a cloud breakdown: health,
	// session issue, reconcile and erase answer in milliseconds when the
	// server is well.
	DefaultTimeout = 30 * time.Second

	// DefaultCloudTimeout bounds a whole cloud breakdown (session, request,
	// the one refresh-and-retry). It is shorter than the server's worst case
	// (3 provider attempts of 20 s plus backoff) on purpose: after it the
	// Service makes the plan on the device rather than keep the user waiting.
	DefaultCloudTimeout = 20 * time.Second

	headerOptIn     = "X-Offload-Cloud-Opt-In"
	headerRequestID = "X-Request-ID"
)

// Client calls the Offload backend API. It is safe for concurrent use.
type Client struct {
	base       *url.URL
	hc         *http.Client
	installID  string
	appVersion string
	platform   string
	userAgent  string
	tokens     TokenStore
	clock      offload.Clock
	cloudTO    time.Duration
	onWarning  func(Warning)

	// mu serializes session issue so concurrent calls share one new session
	// instead of each asking for its own (the server rate limits issue).
	mu sync.Mutex
	// mem is the session when the token store could not save it: it is used
	// for the rest of this Client's life instead of the store.
	mem *Session
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: a plain one; the client
// bounds each call itself, see DefaultTimeout and WithCloudTimeout).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithInstallID sets the install id sent when issuing sessions and
// reconciling usage (8–128 characters). Use a persisted id (see OpenState);
// the default is a random id that lives only as long as the Client.
func WithInstallID(id string) Option { return func(c *Client) { c.installID = id } }

// WithAppVersion sets the app version sent when issuing sessions (1–32 characters).
func WithAppVersion(v string) Option { return func(c *Client) { c.appVersion = v } }

// WithPlatform sets the platform sent when issuing sessions (1–32 characters).
func WithPlatform(p string) Option { return func(c *Client) { c.platform = p } }

// WithTokenStore sets where the session token is kept (default: in memory).
func WithTokenStore(s TokenStore) Option { return func(c *Client) { c.tokens = s } }

// WithClock sets the clock used to judge session expiry.
func WithClock(clk offload.Clock) Option { return func(c *Client) { c.clock = clk } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithCloudTimeout sets how long a cloud breakdown may take in all
// (default DefaultCloudTimeout; it must be positive). When it is up the call
// fails with a *TransportError whose Err is a *CloudTimeoutError, and the
// Service falls back to the device.
func WithCloudTimeout(d time.Duration) Option { return func(c *Client) { c.cloudTO = d } }

// WithWarningFunc sets where the client reports a Warning (a token store it
// could not read or write, and worked around) when the call is not made by
// a Service, which puts them in its Result instead. Default: dropped.
func WithWarningFunc(f func(Warning)) Option { return func(c *Client) { c.onWarning = f } }

// New returns a Client for the API at baseURL (for example
// "https://api.example.com"; a path prefix is kept).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("base URL must be an absolute http or https URL")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("base URL must not have a query or fragment")
	}
	c := &Client{
		base:       u,
		hc:         &http.Client{},
		installID:  uuid.NewString(),
		appVersion: "dev",
		platform:   "go",
		userAgent:  "offload-go-client",
		tokens:     &MemoryTokenStore{},
		clock:      offload.SystemClock{},
		cloudTO:    DefaultCloudTimeout,
	}
	for _, o := range opts {
		o(c)
	}
	switch {
	case c.hc == nil || c.tokens == nil || c.clock == nil:
		return nil, errors.New("nil option value")
	case !runesBetween(c.installID, 8, 128):
		return nil, errors.New("install id must be 8–128 characters")
	case !runesBetween(c.appVersion, 1, 32):
		return nil, errors.New("app version must be 1–32 characters")
	case !runesBetween(c.platform, 1, 32):
		return nil, errors.New("platform must be 1–32 characters")
	case c.cloudTO <= 0:
		return nil, errors.New("cloud timeout must be positive")
	}
	return c, nil
}

// InstallID returns the install id the client identifies as.
func (c *Client) InstallID() string { return c.installID }

// BaseURL returns the API base URL.
func (c *Client) BaseURL() string { return c.base.String() }

// CloudTimeout returns the bound on a cloud breakdown.
func (c *Client) CloudTimeout() time.Duration { return c.cloudTO }

// Health is the answer of GET /v1/health.
type Health struct {
	Status      string `json:"status"`
	Service     string `json:"service"`
	Version     string `json:"version"`
	Environment string `json:"environment"`
	RequestID   string `json:"request_id,omitempty"`
}

// Health asks the server whether it is up. It needs no session.
func (c *Client) Health(ctx context.Context) (Health, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	r, err := c.send(ctx, http.MethodGet, pathHealth, nil, "", false)
	if err != nil {
		return Health{}, err
	}
	h, err := decodeHealth(r.body)
	if err != nil {
		return Health{}, r.invalid(err)
	}
	h.RequestID = r.requestID
	return h, nil
}

// CreateSession issues a new anonymous session, saves it in the token store
// and returns it, whatever the store held before. A session the store
// cannot save is kept in memory for this Client and reported as a Warning.
func (c *Client) CreateSession(ctx context.Context) (Session, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.issueLocked(ctx)
}

// EnsureSession returns the stored session when it belongs to this install
// and expires more than RefreshMargin from now, and otherwise issues and
// stores a new one. Protected calls do this themselves. A stored session
// that cannot be read (a corrupt file) is a cache miss: it is discarded, a
// new one is issued and a Warning says so.
func (c *Client) EnsureSession(ctx context.Context) (Session, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	return c.session(ctx, "")
}

// ClearSession forgets the session, in the store and in memory.
func (c *Client) ClearSession() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mem = nil
	return c.tokens.Clear()
}

// session is EnsureSession that also replaces the session holding stale (a
// token the server just refused), unless another call already replaced it.
func (c *Client) session(ctx context.Context, stale Token) (Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.loadLocked(ctx)
	if ok && s.Token != "" && s.Token != stale && s.InstallID == c.installID &&
		s.ExpiresAt.Sub(c.clock.Now()) > RefreshMargin {
		return s, nil
	}
	return c.issueLocked(ctx)
}

// loadLocked returns the current session, if any. A store that cannot be
// read costs only a new session: the session is a cache of the server's
// answer, never the only copy of anything.
func (c *Client) loadLocked(ctx context.Context) (Session, bool) {
	if c.mem != nil {
		return *c.mem, true
	}
	s, ok, err := c.tokens.Load()
	if err == nil {
		return s, ok
	}
	var ce *CorruptStateError
	if errors.As(err, &ce) {
		// Discarded now, so the warning is not repeated on every run
		// should the new session fail to arrive.
		_ = c.tokens.Clear()
	}
	c.warn(ctx, Warning{Err: err, Effect: EffectSessionReplaced})
	return Session{}, false
}

func (c *Client) issueLocked(ctx context.Context) (Session, error) {
	body := struct {
		InstallID  string `json:"install_id"`
		AppVersion string `json:"app_version"`
		Platform   string `json:"platform"`
	}{c.installID, c.appVersion, c.platform}
	r, err := c.send(ctx, http.MethodPost, pathSessions, body, "", false)
	if err != nil {
		return Session{}, err
	}
	s, err := decodeSession(r.body)
	if err != nil {
		return Session{}, r.invalid(err)
	}
	s.InstallID = c.installID
	if err := c.tokens.Save(s); err != nil {
		c.mem = &s
		c.warn(ctx, Warning{Err: fmt.Errorf("save session: %w", err), Effect: EffectSessionInMemory})
		return s, nil
	}
	c.mem = nil
	return s, nil
}

// warn reports w to the Service call that carries a warning sink in ctx,
// else to the WithWarningFunc hook.
func (c *Client) warn(ctx context.Context, w Warning) {
	if sink, ok := ctx.Value(warningSinkKey{}).(*warningSink); ok {
		sink.add(w)
		return
	}
	if c.onWarning != nil {
		c.onWarning(w)
	}
}

type warningSinkKey struct{}

// warningSink collects the warnings of one Service call.
type warningSink struct {
	mu   sync.Mutex
	list []Warning
}

func withWarningSink(ctx context.Context) (context.Context, *warningSink) {
	s := &warningSink{}
	return context.WithValue(ctx, warningSinkKey{}, s), s
}

func (s *warningSink) add(w Warning) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, w)
}

func (s *warningSink) warnings() []Warning {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Warning(nil), s.list...)
}

// CloudBreakdown is the server's breakdown.
type CloudBreakdown struct {
	Steps     []offload.Step
	Provider  string
	Latency   time.Duration // the server's provider latency
	Usage     offload.TokenUsage
	RequestID string
}

// GenerateBreakdown asks the server to break req down. Without consent it
// returns ErrConsentRequired and sends nothing at all; with consent it sends
// the opt-in header. The whole call is bounded by the cloud timeout.
func (c *Client) GenerateBreakdown(ctx context.Context, req offload.BreakdownRequest, consent bool) (CloudBreakdown, error) {
	if !consent {
		return CloudBreakdown{}, ErrConsentRequired
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.cloudTO, &CloudTimeoutError{After: c.cloudTO})
	defer cancel()
	body := struct {
		InputText    string   `json:"input_text"`
		Granularity  int      `json:"granularity"`
		ContextHints []string `json:"context_hints"`
		TemplateIDs  []string `json:"template_ids"`
	}{req.InputText, req.Granularity, nonNil(req.ContextHints), nonNil(req.TemplateIDs)}
	r, err := c.authed(ctx, http.MethodPost, pathBreakdown, body, true)
	if err != nil {
		return CloudBreakdown{}, err
	}
	b, err := decodeBreakdown(r.body)
	if err != nil {
		return CloudBreakdown{}, r.invalid(err)
	}
	b.RequestID = r.requestID
	return b, nil
}

// Reconciliation is the server's answer to a usage reconcile.
type Reconciliation struct {
	ServerCount        int64     `json:"server_count"`
	EffectiveRemaining int64     `json:"effective_remaining"`
	ReconciledAt       time.Time `json:"reconciled_at"`
	RequestID          string    `json:"request_id,omitempty"`
}

// ReconcileUsage sends localCount for feature; the server keeps
// max(stored, localCount) and answers with the stored count. It sends only
// the install id and the count, no content, so it does not ask for consent;
// Service.SyncUsage does.
func (c *Client) ReconcileUsage(ctx context.Context, feature string, localCount int64) (Reconciliation, error) {
	if !runesBetween(feature, 1, 64) {
		return Reconciliation{}, errors.New("feature must be 1–64 characters")
	}
	if localCount < 0 {
		return Reconciliation{}, errors.New("local count must not be negative")
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	body := struct {
		InstallID  string `json:"install_id"`
		Feature    string `json:"feature"`
		LocalCount int64  `json:"local_count"`
	}{c.installID, feature, localCount}
	r, err := c.authed(ctx, http.MethodPost, pathReconcile, body, false)
	if err != nil {
		return Reconciliation{}, err
	}
	rec, err := decodeReconciliation(r.body)
	if err != nil {
		return Reconciliation{}, r.invalid(err)
	}
	rec.RequestID = r.requestID
	return rec, nil
}

// Erasure is the server's answer to an erase of this install's counts.
type Erasure struct {
	Deleted   int64     `json:"deleted"` // usage rows removed; 0 when there were none
	ErasedAt  time.Time `json:"erased_at"`
	RequestID string    `json:"request_id,omitempty"`
}

// EraseUsage asks the server to delete every usage count it keeps for this
// install (DELETE /v1/usage). The install is the session token's: nothing
// else is sent. It is idempotent. Like ReconcileUsage it does not ask for
// consent; State.Forget does.
func (c *Client) EraseUsage(ctx context.Context) (Erasure, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	r, err := c.authed(ctx, http.MethodDelete, pathUsage, nil, false)
	if err != nil {
		return Erasure{}, err
	}
	e, err := decodeErasure(r.body)
	if err != nil {
		return Erasure{}, r.invalid(err)
	}
	e.RequestID = r.requestID
	return e, nil
}

// authed sends a protected call: with a fresh session, and after a 401 with
// one new session and one retry. A second 401 is returned as it is.
func (c *Client) authed(ctx context.Context, method, path string, in any, optIn bool) (reply, error) {
	s, err := c.session(ctx, "")
	if err != nil {
		return reply{}, err
	}
	r, err := c.send(ctx, method, path, in, s.Token, optIn)
	var ae *APIError
	if !errors.As(err, &ae) || !ae.Unauthorized() {
		return r, err
	}
	if s, err = c.session(ctx, s.Token); err != nil {
		return reply{}, err
	}
	return c.send(ctx, method, path, in, s.Token, optIn)
}

// reply is a 2xx answer with its body read.
type reply struct {
	op        string
	status    int
	body      []byte
	requestID string
}

func (r reply) invalid(err error) error {
	return &InvalidResponseError{Op: r.op, Status: r.status, RequestID: r.requestID, Reason: err.Error()}
}

// send makes one request. Answers other than 2xx come back as *APIError, no
// answer as *TransportError, a 2xx body over MaxResponseBytes as
// *InvalidResponseError.
func (c *Client) send(ctx context.Context, method, path string, in any, token Token, optIn bool) (reply, error) {
	op := method + " " + path
	sentID := uuid.NewString()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return reply{}, fmt.Errorf("encode %s request: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.JoinPath(path).String(), body)
	if err != nil {
		return reply{}, &TransportError{Op: op, RequestID: sentID, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set(headerRequestID, sentID)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+string(token))
	}
	if optIn {
		req.Header.Set(headerOptIn, "true")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		err = redactURL(err)
		var cte *CloudTimeoutError
		if errors.As(context.Cause(ctx), &cte) {
			err = cte // "no answer within 20s" says more than "context deadline exceeded"
		}
		return reply{}, &TransportError{Op: op, RequestID: sentID, Err: err}
	}
	defer resp.Body.Close()
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	r := reply{op: op, status: resp.StatusCode, body: data, requestID: sentID}
	hdrID := resp.Header.Get(headerRequestID)
	if validRequestID(hdrID) {
		r.requestID = hdrID
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The header's id wins, then the body's, then the one sent.
		ae := decodeAPIError(resp.StatusCode, data)
		if validRequestID(hdrID) || ae.RequestID == "" {
			ae.RequestID = r.requestID
		}
		ae.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), c.clock.Now())
		return r, ae
	}
	if readErr != nil {
		return reply{}, &TransportError{Op: op, RequestID: r.requestID, Err: readErr}
	}
	if len(data) > MaxResponseBytes {
		return reply{}, r.invalid(constError("body larger than " + strconv.Itoa(MaxResponseBytes) + " bytes"))
	}
	return r, nil
}

// redactURL drops the URL from a *url.Error: it holds no content, but a base
// URL may carry credentials (user:pass@host) that must not reach a message.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func runesBetween(s string, lo, hi int) bool {
	n := utf8.RuneCountInString(s)
	return n >= lo && n <= hi
}
