package app_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/offload-app/offload/postgres/pgtest"
	"github.com/offload-app/offload/redis/redistest"
)

func postgresBackend(t *testing.T) backend {
	url := pgtest.Database(t)
	return backend{name: "postgres", env: map[string]string{"OFFLOAD_DATABASE_URL": url}, rows: func(t *testing.T, id string) int {
		t.Helper()
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM usage_counts WHERE install_id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}}
}

// twoInstances are two wired servers on one PostgreSQL database and one
// Redis, as behind a load balancer.
func twoInstances(t *testing.T, env map[string]string) (*instance, *instance, *redistest.Server) {
	t.Helper()
	rds := redistest.Start(t)
	shared := map[string]string{
		"OFFLOAD_DATABASE_URL":   pgtest.Database(t),
		"OFFLOAD_REDIS_URL":      rds.URL(),
		"OFFLOAD_SESSION_SECRET": "scale-out-test-secret-scale-out-test-secret",
		"OFFLOAD_AI_PROVIDER":    "local",
	}
	for k, v := range env {
		shared[k] = v
	}
	return newInstance(t, shared), newInstance(t, shared), rds
}

// TestTwoInstancesShareLimits: a limit of 8 is 8 over both instances, not
// 16, per IP and per install.
func TestTwoInstancesShareLimits(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		install func(i int) string
	}{
		{"per install", map[string]string{"OFFLOAD_SESSION_ISSUE_LIMIT_PER_INSTALL": "8", "OFFLOAD_SESSION_ISSUE_LIMIT_PER_IP": "1000"}, func(int) string { return "install-shared-1" }},
		{"per IP", map[string]string{"OFFLOAD_SESSION_ISSUE_LIMIT_PER_INSTALL": "1000", "OFFLOAD_SESSION_ISSUE_LIMIT_PER_IP": "8"}, func(i int) string { return fmt.Sprintf("install-ip-%04d", i) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, _ := twoInstances(t, tt.env)
			allowed := 0
			for i := range 16 {
				in := a
				if i%2 == 1 {
					in = b
				}
				code, _ := in.call("POST", "/v1/sessions/anonymous", "", map[string]string{"install_id": tt.install(i), "app_version": "1", "platform": "ios"})
				switch code {
				case 200:
					allowed++
				case 429:
				default:
					t.Fatalf("session %d: %d", i, code)
				}
			}
			if allowed != 8 {
				t.Errorf("%d sessions allowed over two instances, want 8", allowed)
			}
		})
	}
}

// TestTwoInstancesShareCounts: a token issued by one instance works on the
// other, 200 concurrent reconciles through both keep the max, and
// breakdowns counted by both add up.
func TestTwoInstancesShareCounts(t *testing.T) {
	a, b, _ := twoInstances(t, map[string]string{
		"OFFLOAD_USAGE_RECONCILE_LIMIT_PER_INSTALL": "1000",
		"OFFLOAD_USAGE_RECONCILE_LIMIT_PER_IP":      "1000",
		"OFFLOAD_AI_INFERENCE_LIMIT_PER_INSTALL":    "1000",
		"OFFLOAD_AI_INFERENCE_LIMIT_PER_IP":         "1000",
	})
	tok := a.token("install-shared-count")
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := range 200 {
		in := a
		if i%2 == 1 {
			in = b
		}
		wg.Go(func() {
			if code, _ := in.reconcile(tok, "install-shared-count", "export", int64(i+1)); code != 200 {
				bad.Add(1)
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d reconciles failed", bad.Load())
	}
	for _, in := range []*instance{a, b} {
		if _, out := in.reconcile(tok, "install-shared-count", "export", 0); out["server_count"] != float64(200) {
			t.Errorf("after 200 concurrent reconciles: %v", out)
		}
	}
	for i := range 10 {
		in := a
		if i%2 == 1 {
			in = b
		}
		if code, out := in.call("POST", "/v1/ai/breakdown/generate", tok, map[string]any{"input_text": "clean the apartment", "granularity": 3}); code != 200 {
			t.Fatalf("breakdown: %d %v", code, out)
		}
	}
	if _, out := b.reconcile(tok, "install-shared-count", "breakdown", 0); out["server_count"] != float64(10) {
		t.Errorf("breakdowns counted by both: %v, want 10", out)
	}
}

// TestRedisDownKeepsServing: with Redis killed mid-test both instances go
// on answering, with no 5xx, limiting by themselves, and /readyz says
// degraded but stays 200.
func TestRedisDownKeepsServing(t *testing.T) {
	a, b, rds := twoInstances(t, map[string]string{"OFFLOAD_SESSION_ISSUE_LIMIT_PER_IP": "1000", "OFFLOAD_SESSION_ISSUE_LIMIT_PER_INSTALL": "1000"})
	tok := a.token("install-redis-down")
	rds.Kill()
	for i := range 40 {
		in := a
		if i%2 == 1 {
			in = b
		}
		if code, out := in.reconcile(tok, "install-redis-down", "breakdown", int64(i)); code != 200 {
			t.Fatalf("reconcile %d with Redis down: %d %v", i, code, out)
		}
		if code, _ := in.call("POST", "/v1/sessions/anonymous", "", map[string]string{"install_id": fmt.Sprintf("install-rd-%04d", i), "app_version": "1", "platform": "ios"}); code >= 500 {
			t.Fatalf("session with Redis down: %d", code)
		}
	}
	code, out := a.call("GET", "/readyz", "", nil)
	if code != 200 || out["status"] != "degraded" {
		t.Errorf("readyz with Redis down: %d %v", code, out)
	}
}
