package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/offload-app/offload/config"
	"github.com/offload-app/offload/internal/app"
	"github.com/offload-app/offload/openai/openaitest"
	"github.com/offload-app/offload/sqlite"
)

// served is one HTTP server running in this process on a loopback listener.
type served struct {
	app  *app.App // nil for the ceiling
	srv  *http.Server
	url  string
	errc chan error
}

// inProcess is the default setup: a fake OpenAI upstream, the real server
// twice (cloud provider through the fake; local provider), and the ceiling.
type inProcess struct {
	dir      string
	upstream *openaitest.Server
	cloud    *served
	local    *served
	ceiling  *served
}

// limitOutOfTheWay is every rate limit of the bench's servers: far above
// what a run can send, so no request is refused for rate, while the
// limiters still do all their work on every request.
const limitOutOfTheWay = 1 << 30

// benchEnv is the environment the bench's servers are configured from, as
// an operator would set it for cmd/offload-api.
func benchEnv(provider, dbPath, upstreamURL string) map[string]string {
	limit := strconv.Itoa(limitOutOfTheWay)
	return map[string]string{
		"OFFLOAD_ENVIRONMENT":                     "development",
		"OFFLOAD_BUILD_VERSION":                   "bench",
		"OFFLOAD_USAGE_DB_PATH":                   dbPath,
		"OFFLOAD_AI_PROVIDER":                     provider,
		"OFFLOAD_OPENAI_API_KEY":                  "bench",
		"OFFLOAD_OPENAI_BASE_URL":                 upstreamURL,
		"OFFLOAD_SESSION_ISSUE_LIMIT_PER_IP":      limit,
		"OFFLOAD_SESSION_ISSUE_LIMIT_PER_INSTALL": limit,
		"OFFLOAD_AI_INFERENCE_LIMIT_PER_INSTALL":  limit,
		"OFFLOAD_AI_INFERENCE_LIMIT_PER_IP":       limit,
	}
}

// startInProcess starts everything; on error it releases what it started.
// Server logs go through the same JSON handler as cmd/offload-api's, into
// io.Discard, so formatting them is part of the measured cost while the
// terminal stays readable.
func startInProcess(ctx context.Context, upstreamDelay time.Duration) (_ *inProcess, err error) {
	dir, err := os.MkdirTemp("", "offload-bench-")
	if err != nil {
		return nil, err
	}
	ip := &inProcess{dir: dir}
	defer func() {
		if err != nil {
			ip.close()
		}
	}()
	ip.upstream = openaitest.NewServer(openaitest.WithDelay(upstreamDelay))
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))

	for _, s := range []struct {
		provider string
		dst      **served
	}{{"openai", &ip.cloud}, {"local", &ip.local}} {
		env := benchEnv(s.provider, filepath.Join(dir, s.provider, "usage.sqlite3"), ip.upstream.URL)
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

	// The ceiling gets the API server's exact settings, only its handler
	// differs, so the comparison isolates what the API's handlers cost.
	csrv := ip.cloud.app.HTTPServer("127.0.0.1:0")
	csrv.Handler = ceilingHandler()
	ip.ceiling, err = serve(csrv)
	if err != nil {
		return nil, err
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

// url returns the base URL serving ep, or "" if this setup has none.
func (ip *inProcess) url(ep string) string {
	switch ep {
	case epCeiling:
		return ip.ceiling.url
	case epGenerateLocal:
		return ip.local.url
	default:
		return ip.cloud.url
	}
}

// storeStats are the usage store's cumulative group-commit counters.
type storeStats struct {
	commits uint64 // write transactions committed
	writes  uint64 // reconciles and increments they acknowledged
}

// storeStats returns the usage store counters of the server behind ep.
func (ip *inProcess) storeStats(ep string) (storeStats, bool) {
	sv := ip.cloud
	if ep == epGenerateLocal {
		sv = ip.local
	}
	st, ok := sv.app.Store().(*sqlite.Store)
	if !ok {
		return storeStats{}, false
	}
	s := st.Stats()
	return storeStats{commits: s.Commits, writes: s.Writes}, true
}

// close shuts the servers down, closes the stores and removes the files.
func (ip *inProcess) close() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, sv := range []*served{ip.ceiling, ip.cloud, ip.local} {
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
	if ip.upstream != nil {
		ip.upstream.Close()
	}
	errs = append(errs, os.RemoveAll(ip.dir))
	return errors.Join(errs...)
}
