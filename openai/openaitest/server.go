// Package openaitest is a fake OpenAI chat-completions server for tests and
// for the load benchmark. It speaks enough of POST /chat/completions (also
// under /v1) for the official SDK: chat.completion objects on success and
// OpenAI's error JSON on failure.
//
// Unscripted, it answers every request with a fixed, deterministic plan
// (DefaultContent) from precomputed bytes, without decoding the request and
// without taking a lock, so it can stand in for a fast upstream under load.
// Tests script responses with Enqueue or Respond and, with WithRecording,
// inspect what the adapter sent. Scripted answers can also be hostile (a
// huge header, a huge or chunked body, a slow drip) to test the adapter's
// bounds; those are streamed, so they cost the fake next to nothing.
package openaitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultContent is the assistant content of the default answer: a small
// fixed plan. It never contains anything derived from the request, so privacy
// tests can look for their canaries in logs without false alarms.
const DefaultContent = `{"steps":[` +
	`{"title":"Gather what you need","substeps":[]},` +
	`{"title":"Start with the first small piece","substeps":[` +
	`{"title":"Set a timer for ten minutes","substeps":[]},` +
	`{"title":"Work until the timer ends","substeps":[]}]},` +
	`{"title":"Pause and decide on the next piece","substeps":[]}]}`

// DefaultModel is the model the default answer reports.
const DefaultModel = "gpt-4o-mini"

// Token usage of the default answer.
const (
	DefaultPromptTokens     = 120
	DefaultCompletionTokens = 48
)

// Usage is the token accounting of a scripted answer.
type Usage struct {
	Prompt, Completion int
}

// Message is one chat message of a recorded request. Content is the text of a
// string content, or the concatenated text parts of an array content.
type Message struct {
	Role    string
	Content string
}

// Request is what the fake received. Raw is the whole request body, for
// assertions on fields Request does not decode (the JSON schema, store, …).
type Request struct {
	Model              string
	ResponseFormatType string // "json_schema", "json_object", "" when absent
	Messages           []Message
	Header             http.Header
	Raw                []byte
}

// Response is one scripted answer.
//
// Precedence: Hang, then Body (written as-is with Status, default 200), then
// Status ≥ 400 (an OpenAI error JSON), then a chat.completion with Content and
// Usage. An empty Content with an empty Refusal means DefaultContent; to send
// an empty content, build the body with CompletionBody and set Body.
//
// HeaderBytes, BodyBytes and Drip make a hostile answer (see hostile.go):
// they apply on top of whatever the fields above would send, and are
// streamed from a small buffer so that a huge answer costs the fake nothing.
type Response struct {
	Status  int
	Content string
	Refusal string // sets message.refusal (content becomes null)
	Body    []byte
	Usage   Usage
	Header  http.Header   // extra response headers, e.g. Retry-After
	Delay   time.Duration // added to the server's WithDelay latency
	Hang    bool          // block until the request's context is done

	// HeaderBytes pads the response header with about this many bytes of
	// X-Openaitest-Pad lines before the real fields.
	HeaderBytes int
	// BodyBytes pads the body with spaces up to this many bytes: still valid
	// JSON, so only a size cap stops a reader that wants it all.
	BodyBytes int64
	// Chunked sends a padded body without Content-Length, so that only
	// reading tells its size.
	Chunked bool
	// Drip writes the body one byte at a time, Drip apart.
	Drip time.Duration
}

// Option configures a Server.
type Option func(*Server)

// WithDelay makes every answer wait d first (simulated model latency). A
// request whose context ends during the wait is counted by Canceled.
func WithDelay(d time.Duration) Option { return func(s *Server) { s.delay = d } }

// WithRecording keeps every request for Requests. Off by default so a load
// test does not accumulate bodies; Count and Canceled work either way.
func WithRecording() Option { return func(s *Server) { s.record = true } }

// Server is a running fake. Give URL to the adapter as its base URL.
type Server struct {
	URL string // base URL including "/v1", e.g. http://127.0.0.1:1234/v1

	srv    *httptest.Server
	delay  time.Duration
	record bool
	done   chan struct{}
	closed sync.Once

	defaultBody []byte

	count    atomic.Int64
	canceled atomic.Int64
	scripted atomic.Bool // fast path: no lock while nothing is scripted

	mu       sync.Mutex
	queue    []Response
	respond  func(Request) Response
	requests []Request
}

// NewServer starts a fake server; Close stops it.
func NewServer(opts ...Option) *Server {
	s := &Server{done: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	s.defaultBody = CompletionBody(DefaultContent, Usage{Prompt: DefaultPromptTokens, Completion: DefaultCompletionTokens})
	mux := http.NewServeMux()
	mux.HandleFunc("/chat/completions", s.handleChat)
	mux.HandleFunc("/v1/chat/completions", s.handleChat)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, nil)
	})
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL + "/v1"
	return s
}

// Close releases hanging requests and stops the server.
func (s *Server) Close() {
	s.closed.Do(func() { close(s.done) })
	s.srv.Close()
}

// Enqueue appends answers that are used, in order, before Respond's function
// or the default answer.
func (s *Server) Enqueue(rs ...Response) {
	s.mu.Lock()
	s.queue = append(s.queue, rs...)
	s.mu.Unlock()
	s.scripted.Store(true)
}

// Respond sets the function that answers every request the queue does not.
// A nil fn restores the default answer.
func (s *Server) Respond(fn func(Request) Response) {
	s.mu.Lock()
	s.respond = fn
	s.mu.Unlock()
	s.scripted.Store(true)
}

// Requests returns the recorded requests (WithRecording only; nil otherwise).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Count is the number of chat-completion requests received.
func (s *Server) Count() int { return int(s.count.Load()) }

// Canceled is the number of requests whose context ended (client gone,
// timeout) while the server was still delaying or hanging them.
func (s *Server) Canceled() int { return int(s.canceled.Load()) }

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, nil)
		return
	}
	// Count a request only once its body is in, so a caller that sees
	// Count() rise and then cancels is always seen as Canceled.
	if !s.scripted.Load() && !s.record {
		// Hot path: drain the body so the connection is reused, then answer
		// with the precomputed bytes.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			s.readFailed(r)
			return
		}
		s.count.Add(1)
		if !s.wait(r.Context(), s.delay) {
			return
		}
		writeJSON(w, http.StatusOK, s.defaultBody, nil)
		return
	}

	raw, err := io.ReadAll(r.Body)
	if err != nil {
		s.readFailed(r)
		return
	}
	s.count.Add(1)
	req := decodeRequest(raw, r.Header)
	resp, ok := s.next(req)
	if !ok {
		resp = Response{Body: s.defaultBody}
	}
	s.write(w, r, resp)
}

// readFailed counts a request whose caller went away while sending it (the
// request context may not be done yet: net/http notices a closed connection
// only after the body is read).
func (s *Server) readFailed(*http.Request) { s.canceled.Add(1) }

// next records req and picks the scripted answer; ok is false when nothing
// is scripted for it.
func (s *Server) next(req Request) (Response, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.record {
		s.requests = append(s.requests, req)
	}
	if len(s.queue) > 0 {
		resp := s.queue[0]
		s.queue = s.queue[1:]
		return resp, true
	}
	if s.respond != nil {
		return s.respond(req), true
	}
	return Response{}, false
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, resp Response) {
	ctx := r.Context()
	if resp.Hang {
		select {
		case <-ctx.Done():
			s.canceled.Add(1)
		case <-s.done:
		}
		return
	}
	if !s.wait(ctx, s.delay+resp.Delay) {
		return
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	var body []byte
	switch {
	case resp.Body != nil:
		body = resp.Body
	case status >= 400:
		body = errorBody(status)
	case resp.Refusal != "":
		body = completion(nil, resp.Refusal, resp.Usage)
	default:
		content := resp.Content
		if content == "" {
			content = DefaultContent
		}
		body = completion(&content, "", resp.Usage)
	}
	if resp.HeaderBytes > 0 || resp.BodyBytes > 0 || resp.Drip > 0 {
		s.writeHostile(w, r, status, body, resp)
		return
	}
	writeJSON(w, status, body, resp.Header)
}

// wait sleeps d unless ctx ends first; it reports whether to go on answering.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		s.canceled.Add(1)
		return false
	case <-s.done:
		return false
	}
}

func writeJSON(w http.ResponseWriter, status int, body []byte, extra http.Header) {
	h := w.Header()
	for k, vs := range extra {
		h[k] = vs
	}
	h["Content-Type"] = []string{"application/json"}
	if _, ok := extra["Content-Length"]; !ok { // a script may announce more than it sends
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError writes OpenAI's error JSON for status.
func writeError(w http.ResponseWriter, status int, extra http.Header) {
	writeJSON(w, status, errorBody(status), extra)
}

// errorBody is OpenAI's error JSON for status.
func errorBody(status int) []byte {
	typ, code := "invalid_request_error", any(nil)
	switch {
	case status == http.StatusUnauthorized:
		code = "invalid_api_key"
	case status == http.StatusNotFound:
		code = "unknown_url"
	case status == http.StatusTooManyRequests:
		typ, code = "requests", "rate_limit_exceeded"
	case status >= 500:
		typ = "server_error"
	}
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": "openaitest: " + http.StatusText(status),
		"type":    typ,
		"param":   nil,
		"code":    code,
	}})
	return body
}

// CompletionBody returns a chat.completion body whose first choice has the
// given assistant content, as the real API sends it. Tests use it to build
// raw variants (empty content, odd usage) for Response.Body.
func CompletionBody(content string, u Usage) []byte {
	return completion(&content, "", u)
}

func completion(content *string, refusal string, u Usage) []byte {
	type message struct {
		Role    string  `json:"role"`
		Content *string `json:"content"`
		Refusal *string `json:"refusal"`
	}
	type choice struct {
		Index        int     `json:"index"`
		Message      message `json:"message"`
		Logprobs     any     `json:"logprobs"`
		FinishReason string  `json:"finish_reason"`
	}
	type usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
	msg := message{Role: "assistant", Content: content}
	if refusal != "" {
		msg.Refusal = &refusal
	}
	body, _ := json.Marshal(struct {
		ID                string   `json:"id"`
		Object            string   `json:"object"`
		Created           int64    `json:"created"`
		Model             string   `json:"model"`
		Choices           []choice `json:"choices"`
		Usage             usage    `json:"usage"`
		SystemFingerprint string   `json:"system_fingerprint"`
	}{
		ID:                "chatcmpl-openaitest",
		Object:            "chat.completion",
		Created:           1767225600, // 2026-01-01T00:00:00Z: fixed, so answers are deterministic
		Model:             DefaultModel,
		Choices:           []choice{{Message: msg, FinishReason: "stop"}},
		Usage:             usage{u.Prompt, u.Completion, u.Prompt + u.Completion},
		SystemFingerprint: "fp_openaitest",
	})
	return body
}

func decodeRequest(raw []byte, h http.Header) Request {
	var body struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		ResponseFormat struct {
			Type string `json:"type"`
		} `json:"response_format"`
	}
	_ = json.Unmarshal(raw, &body) // a malformed body still counts; fields stay empty
	req := Request{
		Model:              body.Model,
		ResponseFormatType: body.ResponseFormat.Type,
		Header:             h.Clone(),
		Raw:                raw,
	}
	for _, m := range body.Messages {
		req.Messages = append(req.Messages, Message{Role: m.Role, Content: messageText(m.Content)})
	}
	return req
}

// messageText flattens a message content: a string, or an array of parts
// whose text fields are joined.
func messageText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var b bytes.Buffer
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String()
}
