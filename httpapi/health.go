package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/offload-app/offload"
)

func handleHealth(environment, version string) http.Handler {
	// The answer never changes: encode it once.
	body, err := json.Marshal(struct {
		Status      string `json:"status"`
		Service     string `json:"service"`
		Version     string `json:"version"`
		Environment string `json:"environment"`
	}{"ok", offload.ServiceName, version, environment})
	if err != nil {
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusOK, body)
	})
}

// livez answers 200 while the process serves: a failing dependency is
// readiness' business, not a reason to restart the process.
var livezBody = []byte("{\"status\":\"ok\"}\n")

func handleLivez() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusOK, livezBody)
	})
}

// readyTimeout bounds each readiness check, so a stuck dependency turns
// /readyz 503 instead of hanging the load balancer's probe.
const readyTimeout = 2 * time.Second

type readyResponse struct {
	// Status is "ready", "degraded" (a non-critical check fails: still
	// 200) or "unready" (503).
	Status string `json:"status"`
	// Checks maps each check's fixed name to "ok", "degraded" (a failing
	// non-critical check) or "failing"; no error text, which could carry a
	// path or an address.
	Checks map[string]string `json:"checks"`
}

// handleReadyz answers 200 when every critical check passes and no drain
// has started, 503 otherwise, naming the failing checks.
func handleReadyz(checks []offload.HealthCheck, draining func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := readyResponse{Status: "ready", Checks: make(map[string]string, len(checks)+1)}
		failed := make([]bool, len(checks))
		var wg sync.WaitGroup
		for i, c := range checks {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
				defer cancel()
				failed[i] = c.Probe(ctx) != nil
			})
		}
		wg.Wait()
		critical, degraded := false, false
		for i, c := range checks {
			resp.Checks[c.Name] = "ok"
			switch {
			case failed[i] && c.Critical:
				resp.Checks[c.Name] = "failing"
				critical = true
			case failed[i]:
				resp.Checks[c.Name] = "degraded"
				degraded = true
			}
		}
		resp.Checks["draining"] = "ok"
		if draining() {
			resp.Checks["draining"] = "failing"
			critical = true
		}
		code := http.StatusOK
		switch {
		case critical:
			resp.Status, code = "unready", http.StatusServiceUnavailable
		case degraded:
			resp.Status = "degraded"
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, code, resp)
	})
}
