package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
)

// Where the servers run (-server).
const (
	serverInProcess = "in-process"
	serverChild     = "child"
)

// backend is the set of servers an endpoint's run loads.
type backend interface {
	// url is the base URL of the server behind ep.
	url(ep string) string
	// snapshot reads the server behind ep when the measured window starts
	// (starting, which also resets its peaks) and when it ends.
	snapshot(ep string, starting bool) (serverSnapshot, error)
}

// storeStats are the usage store's cumulative group-commit counters.
type storeStats struct {
	commits uint64 // write transactions committed
	writes  uint64 // reconciles and increments they acknowledged
}

// serverSnapshot is what is known about a server at one instant.
type serverSnapshot struct {
	store     storeStats
	haveStore bool
	proc      *procStats // -server child only
}

// childBackend is the child processes one endpoint needs (-server child),
// started fresh for it so that its peak RSS and goroutines are its own.
type childBackend struct {
	children map[string]*child // by role; "local" is the API with the local provider
}

var _ backend = (*childBackend)(nil)

// childRoles names the children ep needs: role → child name.
func childRoles(ep string) []string {
	switch ep {
	case epCeiling:
		return []string{roleCeiling}
	case epFloor:
		return []string{roleFloor}
	case epGenerateLocal:
		return []string{"local"}
	case epOverhead, epOverheadOpen:
		return []string{roleAPI, roleFloor}
	default:
		return []string{roleAPI}
	}
}

// startChildren starts the children ep needs. The API children get
// serverEnv, their database under dir/<ep>.
func startChildren(ctx context.Context, o options, ep, dir string, up *fakeUpstream, callPath string) (_ *childBackend, err error) {
	cb := &childBackend{children: map[string]*child{}}
	defer func() {
		if err != nil {
			_ = cb.close()
		}
	}()
	for _, name := range childRoles(ep) {
		var (
			role = name
			env  []string
		)
		switch name {
		case roleAPI, "local":
			provider := "openai"
			if name == "local" {
				role, provider = roleAPI, "local"
			}
			for k, v := range serverEnv(o, provider, filepath.Join(dir, ep+"-"+name, "usage.sqlite3"), up.URL) {
				env = append(env, k+"="+v)
			}
		case roleFloor:
			env = []string{
				envFloorUpstream + "=" + up.URL,
				envFloorCall + "=" + callPath,
				envFloorConns + "=" + strconv.Itoa(o.concurrency+8),
			}
		}
		c, err := startChild(ctx, role, env)
		if err != nil {
			return nil, err
		}
		cb.children[name] = c
	}
	return cb, nil
}

// serving returns the child behind ep.
func (cb *childBackend) serving(ep string) *child {
	switch ep {
	case epCeiling:
		return cb.children[roleCeiling]
	case epFloor:
		return cb.children[roleFloor]
	case epGenerateLocal:
		return cb.children["local"]
	default:
		return cb.children[roleAPI]
	}
}

func (cb *childBackend) url(ep string) string { return cb.serving(ep).url }

func (cb *childBackend) snapshot(ep string, starting bool) (serverSnapshot, error) {
	c := cb.serving(ep)
	if starting {
		if err := c.reset(); err != nil {
			return serverSnapshot{}, err
		}
	}
	st, err := c.stats()
	if err != nil {
		return serverSnapshot{}, err
	}
	return serverSnapshot{store: storeStats{commits: st.Commits, writes: st.Writes}, haveStore: st.HasStore, proc: &st}, nil
}

func (cb *childBackend) close() error {
	var errs []error
	for _, c := range cb.children {
		errs = append(errs, c.close())
	}
	return errors.Join(errs...)
}

// captureCall has the real server, wired in this process against the fake
// upstream, answer one breakdown, and returns the upstream request it made:
// the body and headers the floor and the direct requests send.
func captureCall(ctx context.Context, o options, dir string, up *fakeUpstream) (*capturedRequest, error) {
	env := serverEnv(o, "openai", filepath.Join(dir, "capture", "usage.sqlite3"), up.URL)
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	defer a.Close()
	h := a.Handler()
	do := func(path, body string, header map[string]string) (*httptest.ResponseRecorder, error) {
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			return nil, fmt.Errorf("capturing the upstream call: %s answered %d %s", path, w.Code, errorCode(w.Body.Bytes()))
		}
		return w, nil
	}
	w, err := do("/v1/sessions/anonymous", `{"install_id":"bench-capture","app_version":"1.0.0","platform":"ios"}`, nil)
	if err != nil {
		return nil, err
	}
	var tok struct {
		Token string `json:"session_token"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &tok); err != nil {
		return nil, fmt.Errorf("capturing the upstream call: %w", err)
	}
	if _, err := do("/v1/ai/breakdown/generate", benchInput, map[string]string{
		"Authorization": "Bearer " + tok.Token, "X-Offload-Cloud-Opt-In": "true",
	}); err != nil {
		return nil, err
	}
	call := up.request()
	if call == nil {
		return nil, errors.New("capturing the upstream call: the upstream saw no request")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return call, nil
}

// waitGone is a short pause between endpoints in child mode: the previous
// children's sockets in TIME_WAIT and their memory are the kernel's to
// reclaim, not the next run's to pay for.
const waitGone = 500 * time.Millisecond
