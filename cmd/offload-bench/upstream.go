package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/offload-app/offload/openai/openaitest"
)

// fakeUpstream is the bench's OpenAI stand-in: openaitest's default answer
// (the same bytes, the same headers) from precomputed bytes, after an
// optional delay, plus what openaitest.Server cannot tell: how many TCP
// connections it accepted, so the report can show a client pool that
// churns, and the first request it received, so the proxy floor and the
// direct requests send exactly the body the server sends.
type fakeUpstream struct {
	URL string // base URL including "/v1", as OFFLOAD_OPENAI_BASE_URL takes it

	srv   *http.Server
	ln    net.Listener
	delay time.Duration
	body  []byte
	done  chan struct{}
	errc  chan error

	conns    atomic.Uint64 // TCP connections accepted since start
	requests atomic.Uint64

	mu       sync.Mutex
	captured *capturedRequest
}

// capturedRequest is the first chat-completion request the upstream saw.
type capturedRequest struct {
	body   []byte
	header http.Header
}

func startUpstream(delay time.Duration) (*fakeUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &fakeUpstream{
		URL:   "http://" + ln.Addr().String() + "/v1",
		ln:    ln,
		delay: delay,
		body: openaitest.CompletionBody(openaitest.DefaultContent,
			openaitest.Usage{Prompt: openaitest.DefaultPromptTokens, Completion: openaitest.DefaultCompletionTokens}),
		done: make(chan struct{}),
		errc: make(chan error, 1),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", u.handleChat)
	u.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				u.conns.Add(1)
			}
		},
		ErrorLog: discardLog,
	}
	go func() { u.errc <- u.srv.Serve(ln) }()
	return u, nil
}

func (u *fakeUpstream) handleChat(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	capture := u.captured == nil
	u.mu.Unlock()
	var raw []byte
	var err error
	if capture {
		raw, err = io.ReadAll(r.Body)
	} else {
		_, err = io.Copy(io.Discard, r.Body)
	}
	if err != nil {
		return
	}
	if capture {
		u.mu.Lock()
		if u.captured == nil {
			u.captured = &capturedRequest{body: raw, header: r.Header.Clone()}
		}
		u.mu.Unlock()
	}
	u.requests.Add(1)
	if u.delay > 0 {
		t := time.NewTimer(u.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-u.done:
			t.Stop()
			return
		}
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(u.body))}
	_, _ = w.Write(u.body)
}

// request returns the captured first request, nil before there was one.
func (u *fakeUpstream) request() *capturedRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.captured
}

// newConns is the number of TCP connections accepted so far.
func (u *fakeUpstream) newConns() uint64 { return u.conns.Load() }

func (u *fakeUpstream) close() error {
	close(u.done)
	err := u.srv.Close()
	if serr := <-u.errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
