package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/sqlite"
)

// served is one HTTP server running in this process on a loopback listener.
type served struct {
	app  *app.App // nil for the ceiling and the floor
	srv  *http.Server
	url  string
	errc chan error
}

// inProcess is the default setup: the real server twice (cloud provider
// through the fake upstream; local provider), the ceiling and the floor,
// all in this process.
type inProcess struct {
	cloud   *served
	local   *served
	ceiling *served
	floor   *served
}

var _ backend = (*inProcess)(nil)

// limitOutOfTheWay is every rate limit of the bench's servers: far above
// what a run can send, so no request is refused for rate, while the
// limiters still do all their work on every request.
const limitOutOfTheWay = 1 << 30

// benchEnv is the environment the bench's servers are configured from, as
// an operator would set it for cmd/offload-api. Metrics are on, as they are
// by default (the address is never listened on in-process; a child serves
// /metrics on its control listener).
func benchEnv(provider, dbPath, upstreamURL string) map[string]string {
	limit := strconv.Itoa(limitOutOfTheWay)
	return map[string]string{
		"OFFLOAD_ENVIRONMENT":                       "development",
		"OFFLOAD_BUILD_VERSION":                     "bench",
		"OFFLOAD_USAGE_DB_PATH":                     dbPath,
		"OFFLOAD_AI_PROVIDER":                       provider,
		"OFFLOAD_OPENAI_API_KEY":                    "bench",
		"OFFLOAD_OPENAI_BASE_URL":                   upstreamURL,
		"OFFLOAD_METRICS_ADDR":                      "127.0.0.1:0",
		"OFFLOAD_SESSION_ISSUE_LIMIT_PER_IP":        limit,
		"OFFLOAD_SESSION_ISSUE_LIMIT_PER_INSTALL":   limit,
		"OFFLOAD_AI_INFERENCE_LIMIT_PER_INSTALL":    limit,
		"OFFLOAD_AI_INFERENCE_LIMIT_PER_IP":         limit,
		"OFFLOAD_USAGE_RECONCILE_LIMIT_PER_INSTALL": limit,
		"OFFLOAD_USAGE_RECONCILE_LIMIT_PER_IP":      limit,
	}
}

// serverEnv is benchEnv plus what the run sets explicitly: an admission
// bound no lower than the concurrency (a breakdown over it would be refused
// with 503 at once, which is not what the run measures), and -server-env.
func serverEnv(o options, provider, dbPath, upstreamURL string) map[string]string {
	env := benchEnv(provider, dbPath, upstreamURL)
	env[config.EnvAIMaxInFlight] = strconv.Itoa(maxInFlight(o))
	for _, kv := range o.serverEnv {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}

// maxInFlight is the OFFLOAD_AI_MAX_IN_FLIGHT the bench sets: the default,
// or the concurrency when that is higher.
func maxInFlight(o options) int { return max(o.concurrency, config.DefaultMaxInFlight) }

// startInProcess starts everything; on error it releases what it started.
// Server logs go through the same JSON handler as cmd/offload-api's, into
// io.Discard, so formatting them is part of the measured cost while the
// terminal stays readable.
func startInProcess(ctx context.Context, o options, dir string, up *fakeUpstream, call *capturedRequest) (_ *inProcess, err error) {
	ip := &inProcess{}
	defer func() {
		if err != nil {
			ip.close()
		}
	}()
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))

	for _, s := range []struct {
		provider string
		dst      **served
	}{{"openai", &ip.cloud}, {"local", &ip.local}} {
		env := serverEnv(o, s.provider, filepath.Join(dir, "in-process-"+s.provider, "usage.sqlite3"), up.URL)
		cfg, err := config.Load(func(k string) string { return env[k] })
		if err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
		a, err := app.New(ctx, cfg, logger)
		if err != nil {
			return nil, err
		}
		sv, err := serve(a.HTTPServer("127.0.0.1:0"))
		if err != nil {
			a.Close()
			return nil, err
		}
		sv.app = a
		*s.dst = sv
	}

	// The ceiling and the floor get the API server's exact settings, only
	// their handlers differ, so the comparison isolates what the API's
	// handlers cost.
	for _, r := range []struct {
		h   http.Handler
		dst **served
	}{{ceilingHandler(), &ip.ceiling}, {floorHandler(up.URL, call, o.concurrency+8), &ip.floor}} {
		srv := ip.cloud.app.HTTPServer("127.0.0.1:0")
		srv.Handler = r.h
		if *r.dst, err = serve(srv); err != nil {
			return nil, err
		}
	}
	return ip, nil
}

func serve(srv *http.Server) (*served, error) {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return nil, err
	}
	s := &served{srv: srv, url: "http://" + ln.Addr().String(), errc: make(chan error, 1)}
	go func() { s.errc <- srv.Serve(ln) }()
	return s, nil
}

// url returns the base URL serving ep.
func (ip *inProcess) url(ep string) string {
	switch ep {
	case epCeiling:
		return ip.ceiling.url
	case epFloor:
		return ip.floor.url
	case epGenerateLocal:
		return ip.local.url
	default:
		return ip.cloud.url
	}
}

// snapshot reads the usage store counters of the server behind ep; the
// process figures are the whole bench's, so they are not reported.
func (ip *inProcess) snapshot(ep string, _ bool) (serverSnapshot, error) {
	sv := ip.cloud
	switch ep {
	case epGenerateLocal:
		sv = ip.local
	case epCeiling, epFloor, epHealth:
		return serverSnapshot{}, nil
	}
	st, ok := sv.app.Store().(*sqlite.Store)
	if !ok {
		return serverSnapshot{}, nil
	}
	s := st.Stats()
	return serverSnapshot{store: storeStats{commits: s.Commits, writes: s.Writes}, haveStore: true}, nil
}

// close shuts the servers down and closes the stores.
func (ip *inProcess) close() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, sv := range []*served{ip.ceiling, ip.floor, ip.cloud, ip.local} {
		if sv == nil {
			continue
		}
		if err := sv.srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		if err := <-sv.errc; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
		if sv.app != nil {
			if err := sv.app.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
