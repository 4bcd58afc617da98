package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// checkEnvelope checks what every answer must have: an X-Request-ID, and
// for a status of 300 or more the contract's error envelope carrying it.
func checkEnvelope(t *testing.T, status int, h http.Header, body []byte) {
	t.Helper()
	id := h.Get("X-Request-ID")
	if id == "" {
		t.Errorf("status %d without X-Request-ID", status)
	}
	if status < 300 {
		return
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("status %d with Content-Type %q: %q", status, ct, body)
		return
	}
	var env struct {
		Error *errorDetail `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Error == nil || env.Error.Code == "" || env.Error.Message == "" {
		t.Errorf("status %d: not the envelope: %q", status, body)
		return
	}
	if env.Error.RequestID != id {
		t.Errorf("request_id %q, X-Request-ID %q", env.Error.RequestID, id)
	}
}

func TestCanonicalPathServed(t *testing.T) {
	e := newEnv(t)
	tok := e.token("install-1234")
	tests := []struct {
		name   string
		r      req
		status int
		code   string
	}{
		{"double slash", req{method: "GET", path: "//v1/health"}, 200, ""},
		{"dot dot", req{method: "GET", path: "/v1/../v1/health"}, 200, ""},
		{"dot", req{method: "GET", path: "/v1/./health"}, 200, ""},
		{"inner double slash", req{method: "GET", path: "/v1//health"}, 200, ""},
		{"with a query", req{method: "GET", path: "//v1/health?x=1"}, 200, ""},
		{"HEAD", req{method: "HEAD", path: "//v1/health"}, 200, ""},
		{"POST session", req{method: "POST", path: "//v1/sessions/anonymous", body: sessionBody("install-1234", "1", "ios")}, 200, ""},
		{"auth still applies", req{method: "POST", path: "/v1/ai/../usage/reconcile", body: reconcileBody("install-1234", "breakdown", 1)}, 401, "unauthorized"},
		{"POST reconcile", req{method: "POST", path: "/v1/ai/../usage/reconcile", body: reconcileBody("install-1234", "breakdown", 1),
			header: map[string]string{"Authorization": "Bearer " + tok}}, 200, ""},
		{"wrong method", req{method: "PUT", path: "//v1/health"}, 405, "method_not_allowed"},
		{"unknown", req{method: "GET", path: "//nope/.."}, 404, "not_found"},
		{"escaped dots are a name", req{method: "GET", path: "/v1/%2e%2e/v1/health"}, 404, "not_found"},
		{"trailing slash is another path", req{method: "GET", path: "/v1/health/"}, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(tt.r)
			if tt.code != "" {
				wantError(t, w, tt.status, tt.code)
				return
			}
			if w.Code != tt.status {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			checkEnvelope(t, w.Code, w.Header(), w.Body.Bytes())
		})
	}

	t.Run("health body", func(t *testing.T) {
		w := e.do(req{method: "GET", path: "/v1/../v1/health", header: map[string]string{"X-Request-ID": "canonical-1"}})
		if got := decode[map[string]string](t, w); got["status"] != "ok" {
			t.Errorf("body %s", w.Body)
		}
		// The access log names the route that served it.
		for line := range strings.Lines(e.logs.String()) {
			if strings.Contains(line, `"request_id":"canonical-1"`) && !strings.Contains(line, `"route":"GET /v1/health"`) {
				t.Errorf("log line %s", line)
			}
		}
	})
}

// rawExchange sends one raw HTTP/1.1 request over TCP to addr and reads the
// answer; method tells the reader how to frame it.
func rawExchange(t *testing.T, addr, method, request string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: body: %v", request, err)
	}
	return resp, body
}

// realServer serves NewServer on a listener as internal/app does:
// DisableGeneralOptionsHandler is what lets OPTIONS * reach the handler.
func realServer(t *testing.T) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(newEnv(t).handler)
	ts.Config.DisableGeneralOptionsHandler = true
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

// Requests that httptest.NewRequest can't make, over a real connection.
func TestEnvelopeOverTCP(t *testing.T) {
	addr := realServer(t)
	tests := []struct {
		name, method, request string
		status                int
		code, allow           string
	}{
		{"OPTIONS *", "OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n", 200, "", serverMethods},
		{"OPTIONS * HTTP/1.0", "OPTIONS", "OPTIONS * HTTP/1.0\r\n\r\n", 200, "", serverMethods},
		{"OPTIONS * with a body", "OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: api\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", 200, "", serverMethods},
		{"GET *", "GET", "GET * HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n", 405, "method_not_allowed", "OPTIONS"},
		{"POST *", "POST", "POST * HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 405, "method_not_allowed", "OPTIONS"},
		{"CONNECT authority", "CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 404, "not_found", ""},
		{"CONNECT a route", "CONNECT", "CONNECT /v1/health HTTP/1.1\r\nHost: api\r\n\r\n", 405, "method_not_allowed", "GET, HEAD"},
		{"CONNECT unclean", "CONNECT", "CONNECT //v1/../nope HTTP/1.1\r\nHost: api\r\n\r\n", 404, "not_found", ""},
		{"double slash", "GET", "GET //v1/health HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n", 200, "", ""},
		{"dot dot", "GET", "GET /v1/../v1/health HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n", 200, "", ""},
		{"absolute form, no path", "GET", "GET http://api HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n", 404, "not_found", ""},
		{"absolute form, unclean", "GET", "GET http://api//v1/health HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawExchange(t, addr, tt.method, tt.request)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %q", resp.StatusCode, tt.status, body)
			}
			checkEnvelope(t, resp.StatusCode, resp.Header, body)
			if tt.code != "" && !bytes.Contains(body, []byte(`"code":"`+tt.code+`"`)) {
				t.Errorf("body %q, want code %s", body, tt.code)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			if tt.status == 200 && tt.method == "OPTIONS" && (len(body) != 0 || resp.ContentLength != 0) {
				t.Errorf("OPTIONS * body %q, Content-Length %d", body, resp.ContentLength)
			}
		})
	}

	t.Run("client request id kept", func(t *testing.T) {
		resp, _ := rawExchange(t, addr, "OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: api\r\nX-Request-ID: ping-7\r\nConnection: close\r\n\r\n")
		if got := resp.Header.Get("X-Request-ID"); got != "ping-7" {
			t.Errorf("X-Request-ID = %q", got)
		}
	})
}

// Odd request targets and methods all get the envelope, whatever the route
// table holds.
func TestEnvelopeEverywhere(t *testing.T) {
	e := newEnv(t)
	for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "BREW"} {
		for _, target := range []string{
			"/", "//", "/.", "/..", "/./", "/../..", "*", "/v1", "/v1/", "/v1/health", "/v1/health/", "/v1/health/.",
			"/v1/health/..", "//v1//health//", "/v1/%2e/health", "/v1/health%2F", "/v1/sessions/anonymous/../anonymous",
			"/v1/usage/reconcile/.", "/%7Ev1", "/v1/health?", "/v1/health#x", "http://api", "http://api/..//v1/health",
		} {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: api\r\n\r\n")))
			if err != nil {
				continue // net/http refuses it before any handler
			}
			w := httptest.NewRecorder()
			e.handler.ServeHTTP(w, r)
			t.Run(method+" "+target, func(t *testing.T) {
				checkEnvelope(t, w.Code, w.Header(), w.Body.Bytes())
				if w.Code/100 == 3 {
					t.Errorf("redirect to %q", w.Header().Get("Location"))
				}
			})
		}
	}
}
