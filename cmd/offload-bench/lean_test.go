package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestLeanSender checks the raw client against replies net/http can send:
// fixed length, chunked, Connection: close (the next request redials), and
// an error envelope, and that the request reaches the server intact.
func TestLeanSender(t *testing.T) {
	var conns atomic.Int32
	var seq atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, `{"error":{"code":"unauthorized"}}`, http.StatusUnauthorized)
			return
		}
		n := seq.Add(1)
		want := fmt.Sprintf(`{"local_count":%d}`, n)
		if string(body) != want || r.URL.RequestURI() != "/v1/x?y=1" || r.Method != http.MethodPost {
			http.Error(w, `{"error":{"code":"validation_error"}}`, http.StatusUnprocessableEntity)
			return
		}
		switch n {
		case 2: // chunked: flushed before the end
			w.(http.Flusher).Flush()
			fmt.Fprintf(w, `{"server_count":%d,"pad":"%s"}`, n, strings.Repeat("x", 5000))
		case 3:
			w.Header().Set("Connection", "close")
			fmt.Fprintf(w, `{"server_count":%d}`, n)
		case 5:
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"code":"session_rate_limited","message":"m","request_id":"r"}}`)
		default:
			fmt.Fprintf(w, `{"server_count":%d}`, n)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	p, err := newPlan(context.Background(), http.MethodPost, srv.URL+"/v1/x?y=1", []byte{}, http.Header{"Authorization": {"Bearer tok"}})
	if err != nil {
		t.Fatal(err)
	}
	var sent int
	p.next = func(buf []byte) []byte {
		sent++
		return fmt.Appendf(buf, `{"local_count":%d}`, sent)
	}
	key := []byte(serverCountKey)
	p.verify = func(body []byte) string {
		if n, err := jsonInt(body, key); err != nil || int(n) != sent {
			return "bad count"
		}
		return ""
	}
	l := newLeanSender(context.Background(), p)
	defer l.Close()
	var st workerState
	want := []string{"", "", "", "", "status 429 session_rate_limited", ""}
	for i, w := range want {
		if got := l.send(p, &st); got != w {
			t.Errorf("request %d: %q, want %q", i+1, got, w)
		}
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("%d connections, want 2 (one redial after Connection: close)", got)
	}
}

func TestLeanSenderServerGone(t *testing.T) {
	srv := httptest.NewServer(ceilingHandler())
	p, err := newPlan(context.Background(), http.MethodGet, srv.URL+"/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := newLeanSender(context.Background(), p)
	defer l.Close()
	var st workerState
	if got := l.send(p, &st); got != "" {
		t.Fatalf("first request: %q", got)
	}
	srv.Close()
	if got := l.send(p, &st); !strings.HasPrefix(got, "transport error") {
		t.Errorf("request to a closed server: %q, want a transport error", got)
	}
}
