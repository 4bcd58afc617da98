package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/mock"
)

// memUsage is an in-memory store: the test is about metrics labels, and
// 10,000 installs through SQLite's fsync would only make it slow.
func memUsage() *mock.UsageStore {
	var mu sync.Mutex
	counts := map[[2]string]int64{}
	return &mock.UsageStore{
		ReconcileFn: func(_ context.Context, id, f string, n int64) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			counts[[2]string{id, f}] = max(counts[[2]string{id, f}], n)
			return counts[[2]string{id, f}], nil
		},
		IncrementFn: func(_ context.Context, id, f string) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			counts[[2]string{id, f}]++
			return counts[[2]string{id, f}], nil
		},
		CloseFn: func() error { return nil },
	}
}

// series counts the offload_ series of a scrape and fails on any canary.
func series(t *testing.T, a *app.App, canaries []string) int {
	t.Helper()
	w := httptest.NewRecorder()
	a.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, c := range canaries {
		if strings.Contains(body, c) {
			t.Fatalf("metrics hold %q", c)
		}
	}
	n := 0
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "offload_") {
			n++
		}
	}
	return n
}

// TestMetricsHoldNoClientData pushes canaries, 10,000 distinct install ids,
// 100 features and 1,000 random paths through the server and checks that no
// canary reaches /metrics and that the number of series does not grow with
// them (a tenth of that traffic makes exactly as many series).
func TestMetricsHoldNoClientData(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), map[string]string{
		"OFFLOAD_METRICS_ADDR":                      "127.0.0.1:0",
		"OFFLOAD_AI_PROVIDER":                       "local",
		"OFFLOAD_SESSION_ISSUE_LIMIT_PER_IP":        "1000000",
		"OFFLOAD_SESSION_ISSUE_LIMIT_PER_INSTALL":   "1000000",
		"OFFLOAD_USAGE_RECONCILE_LIMIT_PER_IP":      "1000000",
		"OFFLOAD_USAGE_RECONCILE_LIMIT_PER_INSTALL": "1000000",
		"OFFLOAD_AI_INFERENCE_LIMIT_PER_IP":         "1000000",
	})
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), app.WithUsageStore(memUsage()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := a.Handler()
	do := func(method, path, body, tok string) int {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.RemoteAddr = fmt.Sprintf("198.51.100.%d:1234", rand.IntN(250)+1)
		r.Header.Set("Content-Type", "application/json")
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
			r.Header.Set("X-Offload-Cloud-Opt-In", "true")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	token := func(id string) string {
		r := httptest.NewRequest("POST", "/v1/sessions/anonymous", strings.NewReader(`{"install_id":"`+id+`","app_version":"1","platform":"ios"}`))
		r.RemoteAddr = "198.51.100.7:1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("session for %s: %d %s", id, w.Code, w.Body)
		}
		s := w.Body.String()
		i := strings.Index(s, `"session_token":"`) + len(`"session_token":"`)
		return s[i : i+strings.Index(s[i:], `"`)]
	}
	var seen []string
	traffic := func(installs, features, paths int) {
		for i := range installs {
			id := fmt.Sprintf("CANARY-install-%06d", i)
			seen = append(seen, id)
			tok := token(id)
			feature := fmt.Sprintf("CANARY-feature-%03d", i%features)
			if i < features {
				seen = append(seen, feature)
			}
			if code := do("POST", "/v1/usage/reconcile", fmt.Sprintf(`{"install_id":%q,"feature":%q,"local_count":%d}`, id, feature, i), tok); code != 200 {
				t.Fatalf("reconcile: %d", code)
			}
			if i%50 == 0 {
				do("POST", "/v1/ai/breakdown/generate", `{"input_text":"CANARY-input clean the apartment","granularity":3}`, tok)
				do("POST", "/v1/usage/reconcile", `{"install_id":"CANARY-other-install","feature":"x","local_count":1}`, tok) // 403
				do("POST", "/v1/usage/reconcile", `{"install_id":`, tok)                                                      // 422
				do("DELETE", "/v1/usage", "", tok)
			}
		}
		for i := range paths {
			p := fmt.Sprintf("/CANARY-path-%d/%x", i, rand.Uint64())
			seen = append(seen, p)
			do("GET", p, "", "")
			do("BREW", p, "", "") // an unknown method shares the OTHER label
		}
		do("GET", "/v1/health", "", "")
		do("GET", "/readyz", "", "")
	}
	traffic(1000, 10, 100)
	before := series(t, a, seen)
	traffic(10000, 100, 1000)
	if after := series(t, a, seen); after != before {
		t.Errorf("series grew with traffic: %d after a tenth, %d after all", before, after)
	}
	if before < 20 {
		t.Errorf("only %d offload_ series: is the traffic counted at all?", before)
	}
}
