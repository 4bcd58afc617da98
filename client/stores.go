package client

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Token is a session bearer token. It formats as "[REDACTED]" with fmt, slog
// and encoding/json so that printing a Session never leaks it; use
// string(t) where the raw value is needed.
type Token string

func (Token) String() string               { return "[REDACTED]" }
func (Token) GoString() string             { return "[REDACTED]" }
func (Token) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }

// Session is an anonymous session.
type Session struct {
	Token     Token     `json:"-"`
	ExpiresAt time.Time `json:"expires_at"`
	InstallID string    `json:"-"` // the install the token was issued for
}

// TokenStore keeps the session token, like the Keychain on iOS.
type TokenStore interface {
	// Load returns the saved session; ok is false when none is saved.
	Load() (s Session, ok bool, err error)
	Save(Session) error
	Clear() error
}

// ConsentStore keeps the user's cloud AI opt-in. It is off until set.
type ConsentStore interface {
	CloudEnabled() (bool, error)
	SetCloudEnabled(bool) error
}

// FeatureUsage is the usage count of one feature as the app knows it.
type FeatureUsage struct {
	Feature string `json:"feature"`
	// Local is the provisional count: every generation on this install.
	Local int64 `json:"local_count"`
	// Mirror is the highest count the server has confirmed. It never falls.
	Mirror int64 `json:"server_mirror"`
	// ServerRemaining is the server's effective_remaining at the last
	// reconcile, SyncedAt that reconcile's time (zero: never reconciled).
	ServerRemaining int64     `json:"server_remaining"`
	SyncedAt        time.Time `json:"synced_at,omitzero"`
}

// Displayed is the count to show: max(Local, Mirror), so neither an offline
// stretch nor a stale server answer makes the count go down.
func (u FeatureUsage) Displayed() int64 { return max(u.Local, u.Mirror) }

// EffectiveRemaining is what the server would answer now as far as this
// install knows: its last effective_remaining less the generations counted
// here since and not yet reconciled. ok is false before the first reconcile.
func (u FeatureUsage) EffectiveRemaining() (n int64, ok bool) {
	if u.SyncedAt.IsZero() {
		return 0, false
	}
	return max(0, u.ServerRemaining-max(0, u.Local-u.Mirror)), true
}

// Pending reports local generations the server has not been told about.
func (u FeatureUsage) Pending() bool { return u.Local > u.Mirror }

// UsageCounter keeps per-feature provisional usage counts.
type UsageCounter interface {
	// Increment adds one to the local count of feature.
	Increment(feature string) (FeatureUsage, error)
	// Get returns the counts of feature (zero when never counted).
	Get(feature string) (FeatureUsage, error)
	// RaiseMirror records a reconcile's answer: the mirror becomes
	// max(mirror, rec.ServerCount), and the remaining count and its time
	// are kept unless a later answer is already recorded.
	RaiseMirror(feature string, rec Reconciliation) (FeatureUsage, error)
	// All returns every counted feature, sorted by name.
	All() ([]FeatureUsage, error)
	// Clear forgets every count.
	Clear() error
}

var (
	_ TokenStore   = (*MemoryTokenStore)(nil)
	_ ConsentStore = (*MemoryConsentStore)(nil)
	_ UsageCounter = (*MemoryUsageCounter)(nil)
)

// MemoryTokenStore is a TokenStore in memory. The zero value is empty.
type MemoryTokenStore struct {
	mu sync.Mutex
	s  *Session
}

func (m *MemoryTokenStore) Load() (Session, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.s == nil {
		return Session{}, false, nil
	}
	return *m.s, true, nil
}

func (m *MemoryTokenStore) Save(s Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = &s
	return nil
}

func (m *MemoryTokenStore) Clear() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = nil
	return nil
}

// MemoryConsentStore is a ConsentStore in memory. The zero value is off.
type MemoryConsentStore struct {
	mu sync.Mutex
	on bool
}

func (m *MemoryConsentStore) CloudEnabled() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

func (m *MemoryConsentStore) SetCloudEnabled(on bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.on = on
	return nil
}

// MemoryUsageCounter is a UsageCounter in memory. The zero value is empty.
type MemoryUsageCounter struct {
	mu sync.Mutex
	m  usageMap
}

func (m *MemoryUsageCounter) Increment(feature string) (FeatureUsage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m.increment(feature), nil
}

func (m *MemoryUsageCounter) Get(feature string) (FeatureUsage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m.get(feature), nil
}

func (m *MemoryUsageCounter) RaiseMirror(feature string, rec Reconciliation) (FeatureUsage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m.raise(feature, rec), nil
}

func (m *MemoryUsageCounter) Clear() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m = nil
	return nil
}

func (m *MemoryUsageCounter) All() ([]FeatureUsage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m.all(), nil
}

// counts is one feature's entry in a usage map and in usage.json. The
// remaining fields are optional, so files written before them still load.
type counts struct {
	Local     int64     `json:"local"`
	Mirror    int64     `json:"mirror"`
	Remaining int64     `json:"remaining,omitempty"`
	SyncedAt  time.Time `json:"synced_at,omitzero"`
}

func (c counts) usage(feature string) FeatureUsage {
	return FeatureUsage{Feature: feature, Local: c.Local, Mirror: c.Mirror, ServerRemaining: c.Remaining, SyncedAt: c.SyncedAt}
}

// usageMap holds the counting rules shared by the memory and file counters.
type usageMap map[string]counts

func (u *usageMap) increment(feature string) FeatureUsage {
	if *u == nil {
		*u = usageMap{}
	}
	c := (*u)[feature]
	c.Local++
	(*u)[feature] = c
	return c.usage(feature)
}

func (u *usageMap) raise(feature string, rec Reconciliation) FeatureUsage {
	if *u == nil {
		*u = usageMap{}
	}
	c := (*u)[feature]
	c.Mirror = max(c.Mirror, rec.ServerCount)
	if at := rec.ReconciledAt.UTC(); !at.IsZero() && !at.Before(c.SyncedAt) {
		c.Remaining, c.SyncedAt = max(0, rec.EffectiveRemaining), at
	}
	(*u)[feature] = c
	return c.usage(feature)
}

func (u usageMap) get(feature string) FeatureUsage {
	return u[feature].usage(feature)
}

func (u usageMap) all() []FeatureUsage {
	out := make([]FeatureUsage, 0, len(u))
	for f, c := range u {
		out = append(out, c.usage(f))
	}
	slices.SortFunc(out, func(a, b FeatureUsage) int { return strings.Compare(a.Feature, b.Feature) })
	return out
}
