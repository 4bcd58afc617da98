package app_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/openapi/openapitest"
	_ "modernc.org/sqlite"
)

// instance is one wired server under test, on a real listener.
type instance struct {
	t   *testing.T
	url string
	app *app.App
}

func newInstance(t *testing.T, env map[string]string, opts ...app.Option) *instance {
	t.Helper()
	cfg := testConfig(t, t.TempDir(), env)
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	return &instance{t: t, url: srv.URL, app: a}
}

// call sends one JSON request; a non-empty tok adds the bearer token and
// the opt-in header.
func (in *instance) call(method, path, tok string, body any) (int, map[string]any) {
	in.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, in.url+path, r)
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Offload-Cloud-Opt-In", "true")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	openapitest.Validate(in.t, resp)
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (in *instance) token(installID string) string {
	in.t.Helper()
	code, out := in.call("POST", "/v1/sessions/anonymous", "", map[string]string{"install_id": installID, "app_version": "1", "platform": "ios"})
	if code != 200 {
		in.t.Fatalf("session: %d %v", code, out)
	}
	return out["session_token"].(string)
}

func (in *instance) reconcile(tok, installID, feature string, n int64) (int, map[string]any) {
	in.t.Helper()
	return in.call("POST", "/v1/usage/reconcile", tok, map[string]any{"install_id": installID, "feature": feature, "local_count": n})
}

// backend is a usage store the server runs on, with a way to count an
// install's rows behind the server's back.
type backend struct {
	name string
	env  map[string]string
	rows func(t *testing.T, installID string) int
}

func sqliteBackend(t *testing.T) backend {
	path := filepath.Join(t.TempDir(), "usage.sqlite3")
	return backend{name: "sqlite", env: map[string]string{"OFFLOAD_USAGE_DB_PATH": path}, rows: func(t *testing.T, id string) int {
		t.Helper()
		db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM usage_counts WHERE install_id = ?`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}}
}

// backends are the stores every store-level server test runs on.
func backends(t *testing.T) []backend {
	return []backend{sqliteBackend(t), postgresBackend(t)}
}
