package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func reconcileBody(installID, feature string, count any) string {
	b, _ := json.Marshal(map[string]any{"install_id": installID, "feature": feature, "local_count": count})
	return string(b)
}

func (e *env) reconcile(tokenFor, body string) *testResponseRecorder {
	return e.do(req{method: "POST", path: "/v1/usage/reconcile", body: body,
		header: map[string]string{"Authorization": "Bearer " + e.token(tokenFor)}})
}

func TestReconcile(t *testing.T) {
	e := newEnv(t)
	steps := []struct {
		local, server, remaining int64
	}{
		{3, 3, 97},
		{1, 3, 97}, // a stale count never lowers the server's
		{10, 10, 90},
		{100, 100, 0},
		{250, 250, 0}, // never negative
	}
	for _, s := range steps {
		w := e.reconcile("install-123", reconcileBody("install-123", "breakdown", s.local))
		if w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		got := decode[reconcileResponse](t, w)
		if got.ServerCount != s.server || got.EffectiveRemaining != s.remaining || got.ReconciledAt != "2026-02-16T12:00:00Z" {
			t.Errorf("local %d: got %+v", s.local, got)
		}
	}
	// since is accepted and ignored.
	w := e.reconcile("install-123", `{"install_id":"install-123","feature":"other","local_count":2,"since":"2026-02-16T11:00:00Z"}`)
	if got := decode[reconcileResponse](t, w); got.ServerCount != 2 {
		t.Errorf("features not independent: %+v", got)
	}
}

func TestReconcileValidation(t *testing.T) {
	tests := []struct {
		name string
		body string
		want int
	}{
		{"install_id 7", reconcileBody(strings.Repeat("a", 7), "f", 1), 422},
		{"install_id 8", reconcileBody(strings.Repeat("a", 8), "f", 1), 200},
		{"install_id 128", reconcileBody(strings.Repeat("a", 128), "f", 1), 200},
		{"install_id 129", reconcileBody(strings.Repeat("a", 129), "f", 1), 422},
		{"feature 0", reconcileBody("install-1", "", 1), 422},
		{"feature 1", reconcileBody("install-1", "f", 1), 200},
		{"feature 64", reconcileBody("install-1", strings.Repeat("f", 64), 1), 200},
		{"feature 65", reconcileBody("install-1", strings.Repeat("f", 65), 1), 422},
		{"local_count -1", reconcileBody("install-1", "f", -1), 422},
		{"local_count 0", reconcileBody("install-1", "f", 0), 200},
		{"local_count max int64", `{"install_id":"install-1","feature":"f","local_count":9223372036854775807}`, 200},
		{"local_count huge", `{"install_id":"install-1","feature":"f","local_count":100000000000000000000000}`, 422},
		{"local_count 1.5", `{"install_id":"install-1","feature":"f","local_count":1.5}`, 422},
		{"local_count string", `{"install_id":"install-1","feature":"f","local_count":"3"}`, 422},
		{"local_count null", `{"install_id":"install-1","feature":"f","local_count":null}`, 422},
		{"local_count missing", `{"install_id":"install-1","feature":"f"}`, 422},
		{"since without offset", `{"install_id":"install-1","feature":"f","local_count":1,"since":"2026-02-16T12:00:00"}`, 200},
		{"since unix seconds", `{"install_id":"install-1","feature":"f","local_count":1,"since":1771243200}`, 200},
		{"since object", `{"install_id":"install-1","feature":"f","local_count":1,"since":{}}`, 422},
		{"since bool", `{"install_id":"install-1","feature":"f","local_count":1,"since":true}`, 422},
		{"since null", `{"install_id":"install-1","feature":"f","local_count":1,"since":null}`, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var probe struct {
				InstallID string `json:"install_id"`
			}
			json.Unmarshal([]byte(tt.body), &probe)
			w := e.reconcile(probe.InstallID+"-token", tt.body)
			if tt.want == 422 {
				// Validation comes before the install_id check.
				wantError(t, w, 422, "validation_error")
				return
			}
			w = e.reconcile(probe.InstallID, tt.body)
			if w.Code != tt.want {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
		})
	}
}

func TestReconcileInstallIDMismatch(t *testing.T) {
	e := newEnv(t)
	wantError(t, e.reconcile("install-aaa", reconcileBody("install-bbb", "breakdown", 5)), 403, "install_id_mismatch")
	if got := decode[reconcileResponse](t, e.reconcile("install-bbb", reconcileBody("install-bbb", "breakdown", 0))); got.ServerCount != 0 {
		t.Errorf("mismatched request was stored: %+v", got)
	}
}

func TestReconcileStorageFailure(t *testing.T) {
	e := newEnv(t)
	e.store.setFail(true)
	w := e.reconcile("install-123", reconcileBody("install-123", "breakdown", 5))
	wantError(t, w, 503, "storage_unavailable")
	if !strings.Contains(w.Body.String(), "Usage storage unavailable") {
		t.Errorf("message: %s", w.Body)
	}
	if strings.Contains(e.logs.String(), "install-123") {
		t.Errorf("install id logged: %s", e.logs)
	}
}
