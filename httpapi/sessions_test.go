package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sessionBody(installID, appVersion, platform string) string {
	b, _ := json.Marshal(map[string]string{"install_id": installID, "app_version": appVersion, "platform": platform})
	return string(b)
}

func TestCreateSession(t *testing.T) {
	e := newEnv(t)
	w := e.do(req{method: "POST", path: "/v1/sessions/anonymous", body: `{"install_id":"install-123","app_version":"1.0","platform":"ios","extra":1}`})
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	got := decode[createSessionResponse](t, w)
	if got.ExpiresAt != "2026-02-16T13:00:00Z" {
		t.Errorf("expires_at = %q", got.ExpiresAt)
	}
	claims, err := e.tokens.Verify(got.SessionToken, t0)
	if err != nil {
		t.Fatal(err)
	}
	if claims.InstallID != "install-123" || !claims.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("claims = %+v", claims)
	}
	// Whole seconds, even when the clock is not.
	e.clock.Advance(1500 * time.Millisecond)
	got = decode[createSessionResponse](t, e.do(req{method: "POST", path: "/v1/sessions/anonymous", body: sessionBody("install-456", "1", "ios")}))
	if got.ExpiresAt != "2026-02-16T13:00:01Z" {
		t.Errorf("expires_at = %q", got.ExpiresAt)
	}
	// The token expires with its session.
	e.clock.Advance(time.Hour)
	if _, err := e.tokens.Verify(got.SessionToken, e.clock.Now()); err == nil {
		t.Error("token still valid after its expiry")
	}
}

func TestCreateSessionValidation(t *testing.T) {
	tests := []struct {
		name string
		body string
		want int
	}{
		{"install_id 7", sessionBody(strings.Repeat("a", 7), "1", "ios"), 422},
		{"install_id 8", sessionBody(strings.Repeat("a", 8), "1", "ios"), 200},
		{"install_id 128", sessionBody(strings.Repeat("a", 128), "1", "ios"), 200},
		{"install_id 129", sessionBody(strings.Repeat("a", 129), "1", "ios"), 422},
		{"install_id 8 multibyte", sessionBody(strings.Repeat("é", 8), "1", "ios"), 200},
		{"install_id 7 multibyte (14 bytes)", sessionBody(strings.Repeat("é", 7), "1", "ios"), 422},
		{"install_id 128 emoji", sessionBody(strings.Repeat("😀", 128), "1", "ios"), 200},
		{"app_version 0", sessionBody("install-1", "", "ios"), 422},
		{"app_version 1", sessionBody("install-1", "1", "ios"), 200},
		{"app_version 32", sessionBody("install-1", strings.Repeat("9", 32), "ios"), 200},
		{"app_version 33", sessionBody("install-1", strings.Repeat("9", 33), "ios"), 422},
		{"app_version 32 multibyte", sessionBody("install-1", strings.Repeat("ü", 32), "ios"), 200},
		{"platform 0", sessionBody("install-1", "1", ""), 422},
		{"platform 1", sessionBody("install-1", "1", "i"), 200},
		{"platform 32", sessionBody("install-1", "1", strings.Repeat("p", 32)), 200},
		{"platform 33", sessionBody("install-1", "1", strings.Repeat("p", 33)), 422},
		{"missing install_id", `{"app_version":"1","platform":"ios"}`, 422},
		{"missing platform", `{"install_id":"install-1","app_version":"1"}`, 422},
		{"install_id number", `{"install_id":12345678,"app_version":"1","platform":"ios"}`, 422},
		{"install_id null", `{"install_id":null,"app_version":"1","platform":"ios"}`, 422},
		{"platform object", `{"install_id":"install-1","app_version":"1","platform":{}}`, 422},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.do(req{method: "POST", path: "/v1/sessions/anonymous", body: tt.body, remote: fmt.Sprintf("192.0.2.%d:1", i+1)})
			if tt.want == 422 {
				wantError(t, w, 422, "validation_error")
			} else if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
		})
	}
}

func TestSessionRateLimits(t *testing.T) {
	tests := []struct {
		name     string
		remote   func(i int) string
		install  func(i int) string
		allowed  int // requests allowed in one window
		limitFor string
	}{
		{"per install (4)", func(i int) string { return fmt.Sprintf("192.0.2.%d:1", i+1) }, func(int) string { return "install-same" }, 4, "install"},
		{"per IP (8)", func(int) string { return "192.0.2.1:1" }, func(i int) string { return "install-" + strconv.Itoa(i) + "xxxx" }, 8, "ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			send := func(i int) *testResponse {
				w := e.do(req{method: "POST", path: "/v1/sessions/anonymous", remote: tt.remote(i), body: sessionBody(tt.install(i), "1", "ios")})
				return &testResponse{w.Code, w.Header().Get("Retry-After"), w}
			}
			for i := range tt.allowed {
				if r := send(i); r.code != 200 {
					t.Fatalf("request %d: %d", i, r.code)
				}
			}
			e.clock.Advance(20 * time.Second)
			r := send(tt.allowed)
			wantError(t, r.w, 429, "session_rate_limited")
			if r.retryAfter != "40" {
				t.Errorf("Retry-After = %q, want 40", r.retryAfter)
			}
			// Still limited just before the window ends, free after it.
			e.clock.Advance(39 * time.Second)
			if r := send(tt.allowed + 1); r.code != 429 {
				t.Fatalf("before reset: %d", r.code)
			}
			e.clock.Advance(time.Second)
			if r := send(tt.allowed + 2); r.code != 200 {
				t.Fatalf("after reset: %d %s", r.code, r.w.Body)
			}
		})
	}
}

type testResponse struct {
	code       int
	retryAfter string
	w          *httptest.ResponseRecorder
}
