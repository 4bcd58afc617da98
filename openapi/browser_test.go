package openapi_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/offload-app/offload/openapi/openapitest"
)

// chromium finds Debian's Chromium. In CI the browser test must run, so a
// missing browser fails it there; elsewhere the test skips. Debian's
// /usr/bin/chromium is a wrapper that adds Google API keys and remote
// extension updates, whose background requests would muddle the check that
// nothing leaves the machine, so the binary behind it is preferred.
func chromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/lib/chromium/chromium"); err == nil {
		return "/usr/lib/chromium/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const how = "chromium is not installed: apt-get install -y chromium (the docs page's browser test needs it)"
	if os.Getenv("CI") == "true" {
		t.Fatal(how)
	}
	t.Skip(how)
	return ""
}

// seen is one request that reached a test server.
type seen struct {
	Method, Path, Host   string
	Authorization, OptIn string
}

type requestLog struct {
	mu   sync.Mutex
	reqs []seen
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.reqs = append(l.reqs, seen{r.Method, r.URL.Path, r.Host, r.Header.Get("Authorization"), r.Header.Get("X-Offload-Cloud-Opt-In")})
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) all() []seen {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

// fakeAPI answers the two calls "Try it out" makes, as the contract says:
// a session, then a breakdown that needs that token and the opt-in header.
type fakeAPI struct {
	mu     sync.Mutex
	tokens map[string]bool
}

func (f *fakeAPI) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/sessions/anonymous", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			InstallID string `json:"install_id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.InstallID) < 8 {
			writeJSON(w, 422, envelope("validation_error", "Request validation failed"))
			return
		}
		b := make([]byte, 24)
		rand.Read(b)
		tok := base64.RawURLEncoding.EncodeToString(b[:12]) + "." + base64.RawURLEncoding.EncodeToString(b[12:])
		f.mu.Lock()
		f.tokens[tok] = true
		f.mu.Unlock()
		writeJSON(w, 200, map[string]string{"session_token": tok, "expires_at": time.Now().UTC().Add(time.Hour).Format(time.RFC3339)})
	})
	mux.HandleFunc("POST /v1/ai/breakdown/generate", func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		valid := ok && f.tokens[tok]
		f.mu.Unlock()
		if !valid {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeJSON(w, 401, envelope("invalid_token", "Invalid session token"))
			return
		}
		if !strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Offload-Cloud-Opt-In")), "true") {
			writeJSON(w, 403, envelope("consent_required", "Cloud AI processing requires explicit opt-in"))
			return
		}
		writeJSON(w, 200, map[string]any{
			"steps":      []any{map[string]any{"title": "Clear the surfaces", "substeps": []any{}}},
			"provider":   "fake",
			"latency_ms": 1,
			"usage":      map[string]int{"input_tokens": 0, "output_tokens": 0},
		})
	})
}

func envelope(code, message string) any {
	return map[string]any{"error": map[string]string{"code": code, "message": message, "request_id": "test-request"}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// TestDocsPageInChromium loads /docs in headless Chromium on a closed
// network: every host but loopback unresolvable, and a proxy that records
// whatever tries to leave. The page must render the API's operations, and
// "Try it out" must issue a session and then call breakdown with its token
// and the opt-in header, all against this server only, with no
// Content-Security-Policy violation and no script error.
func TestDocsPageInChromium(t *testing.T) {
	exe := chromium(t)

	var apiLog, proxyLog requestLog
	mux := docsMux()
	(&fakeAPI{tokens: map[string]bool{}}).routes(mux)
	srv := httptest.NewServer(apiLog.wrap(openapitest.Wrap(t, withRequestID(mux))))
	defer srv.Close()
	// Anything the browser sends elsewhere arrives here (plain HTTP, or a
	// CONNECT for HTTPS) and is refused.
	proxy := httptest.NewServer(proxyLog.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no network in this test", http.StatusBadGateway)
	})))
	defer proxy.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		// Chromium's own services (network time, autofill predictions,
		// sign-in, component and extension updates) would call Google;
		// off, so that the proxy below sees nothing at all.
		chromedp.Flag("disable-component-extensions-with-background-pages", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("no-service-autorun", true),
		chromedp.Flag("disable-features", "NetworkTimeServiceQuerying,AutofillServerCommunication,"+
			"CertificateTransparencyComponentUpdater,OptimizationHints,MediaRouter,DialMediaRouteProvider,Translate"),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.ProxyServer(proxy.URL),
		chromedp.WindowSize(1280, 2000),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	var (
		mu         sync.Mutex
		urls       []string
		exceptions []string
		logs       []string
	)
	diagnose := func() {
		mu.Lock()
		defer mu.Unlock()
		t.Logf("requests: %q\nexceptions: %q\nlog: %q", urls, exceptions, logs)
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			diagnose()
			t.Fatalf("%s: %v", what, err)
		}
	}
	// Open the tab first so the listener sees every event of the page.
	must("starting Chromium", chromedp.Do(bctx))
	must("listening", chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			urls = append(urls, ev.Request.URL)
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil {
				text += " " + d.Exception.Description
			}
			exceptions = append(exceptions, text)
		case *log.EventEntryAdded:
			if e := ev.Entry; e.Level == log.EntryLevelError || e.Source == log.EntrySourceSecurity {
				logs = append(logs, fmt.Sprintf("%s %s %s: %s", e.Level, e.Source, e.URL, e.Text))
			}
		}
	}))
	// The page's CSP violations land in a list the test reads at the end.
	_, err := chromedp.Call(bctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
		window.__csp = [];
		document.addEventListener("securitypolicyviolation", e =>
			window.__csp.push(e.violatedDirective + " " + e.blockedURI));`})
	must("adding the CSP listener", err)

	const (
		sessionOp   = "#operations-Sessions-createAnonymousSession"
		breakdownOp = "#operations-Breakdown-generateBreakdown"
		optInInput  = breakdownOp + ` tr[data-param-name="X-Offload-Cloud-Opt-In"] input`
	)
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	must("loading /docs", chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/docs"),
		chromedp.WaitVisible(css(breakdownOp)),
	))
	ops, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(".opblock")).map(b =>
		b.querySelector(".opblock-summary-method").textContent + " " +
		b.querySelector(".opblock-summary-path").getAttribute("data-path"))`))
	must("listing the operations", err)

	// Try it out: a session first (the page keeps its token), then a breakdown.
	// Under load the page may still be wiring its handlers when an element
	// is first visible, and a click then is lost: each step is retried,
	// with a bounded wait, until what it should show is there.
	present := func(sel string) bool {
		ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.querySelector(`+strconv.Quote(sel)+`) !== null`))
		return err == nil && ok
	}
	retry := func(what string, click, want string, wait time.Duration) {
		t.Helper()
		for attempt := 0; attempt < 5; attempt++ {
			if present(want) {
				return
			}
			actx, cancel := context.WithTimeout(bctx, wait)
			err := chromedp.Do(actx, chromedp.Click(css(click)), chromedp.WaitVisible(css(want)))
			cancel()
			if err == nil {
				return
			}
			t.Logf("%s: try %d: %v", what, attempt+1, err)
		}
		must(what, errors.New("the page did not react after 5 tries"))
	}
	expand := func(op string) {
		retry("expanding "+op, op+" .opblock-summary-control", op+" button.execute", 5*time.Second)
	}
	execute := func(op string) {
		retry("executing "+op, op+" button.execute", op+" .live-responses-table tr.response .response-col_status", 5*time.Second)
	}
	expand(sessionOp)
	execute(sessionOp)
	sessionStatus, err := chromedp.Run(bctx, chromedp.Text(css(sessionOp+" .live-responses-table tr.response .response-col_status")))
	must("reading the session answer", err)
	expand(breakdownOp)
	must("opening the breakdown", chromedp.Do(bctx, chromedp.WaitVisible(css(optInInput))))
	optInValue, err := chromedp.Run(bctx, chromedp.Value(css(optInInput)))
	must("reading the opt-in field", err)
	execute(breakdownOp)
	breakdownStatus, err := chromedp.Run(bctx, chromedp.Text(css(breakdownOp+" .live-responses-table tr.response .response-col_status")))
	must("reading the breakdown answer", err)
	violations, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`window.__csp`))
	must("reading the CSP violations", err)

	for _, want := range []string{
		"GET /v1/health",
		"POST /v1/sessions/anonymous",
		"POST /v1/ai/breakdown/generate",
		"POST /v1/usage/reconcile",
		"DELETE /v1/usage",
		"GET /livez",
		"GET /readyz",
	} {
		if !slices.Contains(ops, want) {
			t.Errorf("the page does not list %s; it lists %q", want, ops)
		}
	}
	if optInValue != "true" {
		t.Errorf("the opt-in header field holds %q, want it prefilled with true", optInValue)
	}
	if !strings.HasPrefix(strings.TrimSpace(sessionStatus), "200") || !strings.HasPrefix(strings.TrimSpace(breakdownStatus), "200") {
		t.Errorf("try it out answered session %q, breakdown %q; want 200 and 200", sessionStatus, breakdownStatus)
	}

	// The breakdown went out with the session's token and the opt-in.
	var token string
	var gotBreakdown bool
	for _, r := range apiLog.all() {
		if r.Host != srv.Listener.Addr().String() {
			t.Errorf("request for host %q reached the server", r.Host)
		}
		if r.Path == "/v1/ai/breakdown/generate" {
			gotBreakdown = true
			token, _ = strings.CutPrefix(r.Authorization, "Bearer ")
			if token == "" || r.OptIn != "true" {
				t.Errorf("breakdown sent Authorization %q, opt-in %q", r.Authorization, r.OptIn)
			}
		}
	}
	if !gotBreakdown {
		t.Error("no breakdown request reached the server")
	}

	// Nothing but this server was asked for anything by the page: every
	// load the page made (DevTools' network log) went to this server, and
	// anything else it tried would be a CSP violation, checked below. The
	// proxy also sees the browser's own services (sign-in, component
	// updates), which no flag turns off entirely: those are Google hosts,
	// logged; any other host that reached the proxy fails the test.
	for _, r := range proxyLog.all() {
		host, _, _ := strings.Cut(r.Host, ":")
		if strings.HasSuffix(host, ".google.com") || strings.HasSuffix(host, ".googleapis.com") {
			t.Logf("Chromium's own request to %s (refused by the proxy)", r.Host)
			continue
		}
		t.Errorf("the browser tried to reach %s: %+v", r.Host, r)
	}
	host := srv.URL + "/"
	mu.Lock()
	defer mu.Unlock()
	for _, u := range urls {
		if !strings.HasPrefix(u, host) && !strings.HasPrefix(u, "data:") {
			t.Errorf("the page requested %s", u)
		}
	}
	if len(urls) < 5 {
		t.Errorf("the browser made %d requests; the page and its files are more", len(urls))
	}
	for _, v := range violations {
		t.Errorf("Content-Security-Policy violation: %s", v)
	}
	for _, e := range exceptions {
		t.Errorf("script error: %s", e)
	}
	for _, l := range logs {
		t.Errorf("browser log: %s", l)
	}
}
