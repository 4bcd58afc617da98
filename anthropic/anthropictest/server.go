// Package anthropictest is a fake Anthropic Messages server for tests and
// for the load benchmark. It speaks enough of POST /v1/messages for the
// official SDK: message objects on success and Anthropic's error JSON on
// failure (529 overloaded included).
//
// Unscripted, it answers every request with a fixed, deterministic plan
// (DefaultText) from precomputed bytes, without decoding the request and
// without taking a lock, so it can stand in for a fast upstream under load.
// Tests script responses with Enqueue or Respond and, with WithRecording,
// inspect what the adapter sent. It mirrors package openaitest.
package anthropictest

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

// DefaultText is the text block of the default answer: a small fixed plan.
// It never contains anything derived from the request, so privacy tests can
// look for their canaries in logs without false alarms.
const DefaultText = `{"steps":[` +
	`{"title":"Gather what you need","substeps":[]},` +
	`{"title":"Start with the first small piece","substeps":[` +
	`{"title":"Set a timer for ten minutes","substeps":[]},` +
	`{"title":"Work until the timer ends","substeps":[]}]},` +
	`{"title":"Pause and decide on the next piece","substeps":[]}]}`

// DefaultModel is the model the default answer reports.
const DefaultModel = "claude-haiku-4-5-20251001"

// Token usage of the default answer.
const (
	DefaultInputTokens  = 130
	DefaultOutputTokens = 52
)

// Usage is the token accounting of a scripted answer.
type Usage struct {
	Input, Output int
}

// Block is one content block of a scripted answer: "text" (Text is the
// text), "thinking" (Text is the thinking) or "tool_use" (Text is the JSON
// input).
type Block struct {
	Type string
	Text string
}

// Message is one message of a recorded request. Content is the text of a
// string content, or the concatenated text blocks of an array content.
type Message struct {
	Role    string
	Content string
}

// Request is what the fake received. Raw is the whole request body, for
// assertions on fields Request does not decode.
type Request struct {
	Model     string
	MaxTokens int
	System    string // the text of a string or text-block system prompt
	Messages  []Message
	Header    http.Header
	Raw       []byte
}

// Response is one scripted answer.
//
// Precedence: Hang, then Body (written as-is with Status, default 200), then
// Status ≥ 400 (an Anthropic error JSON, 529 overloaded_error included), then
// a message with Blocks, or with one text block of Text (empty: DefaultText),
// StopReason (empty: "end_turn") and Usage.
type Response struct {
	Status     int
	Text       string
	Blocks     []Block
	StopReason string
	Body       []byte
	Usage      Usage
	Header     http.Header   // extra response headers, e.g. Retry-After
	Delay      time.Duration // added to the server's WithDelay latency
	Hang       bool          // block until the request's context is done
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
	URL string // base URL without "/v1", e.g. http://127.0.0.1:1234

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
	s.defaultBody = MessageBody(DefaultText, Usage{Input: DefaultInputTokens, Output: DefaultOutputTokens})
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/messages", s.handleMessages)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, nil)
	})
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
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

// Count is the number of message requests received.
func (s *Server) Count() int { return int(s.count.Load()) }

// Canceled is the number of requests whose context ended (client gone,
// timeout) while the server was still delaying or hanging them.
func (s *Server) Canceled() int { return int(s.canceled.Load()) }

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
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
			s.canceled.Add(1)
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
		// The caller went away while sending (net/http notices a closed
		// connection only after the body is read).
		s.canceled.Add(1)
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
	switch {
	case resp.Body != nil:
		writeJSON(w, status, resp.Body, resp.Header)
	case status >= 400:
		writeError(w, status, resp.Header)
	default:
		blocks := resp.Blocks
		if blocks == nil {
			text := resp.Text
			if text == "" {
				text = DefaultText
			}
			blocks = []Block{{Type: "text", Text: text}}
		}
		writeJSON(w, status, message(blocks, resp.StopReason, resp.Usage), resp.Header)
	}
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
	h["Request-Id"] = []string{"req_anthropictest"}
	if _, ok := extra["Content-Length"]; !ok { // a script may announce more than it sends
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ErrorType is the error.type Anthropic sends with status.
func ErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// writeError writes Anthropic's error JSON for status.
func writeError(w http.ResponseWriter, status int, extra http.Header) {
	text := http.StatusText(status)
	if status == 529 {
		text = "Overloaded"
	}
	body, _ := json.Marshal(map[string]any{
		"type": "error",
		"error": map[string]any{
			"type":    ErrorType(status),
			"message": "anthropictest: " + text,
		},
		"request_id": "req_anthropictest",
	})
	writeJSON(w, status, body, extra)
}

// MessageBody returns a message body with one text block, as the real API
// sends it. Tests use it to build raw variants (odd usage, cut-off bodies)
// for Response.Body.
func MessageBody(text string, u Usage) []byte {
	return message([]Block{{Type: "text", Text: text}}, "", u)
}

func message(blocks []Block, stop string, u Usage) []byte {
	if stop == "" {
		stop = "end_turn"
	}
	content := make([]any, 0, len(blocks))
	for _, b := range blocks {
		switch b.Type {
		case "thinking":
			content = append(content, map[string]any{"type": "thinking", "thinking": b.Text, "signature": "sig-anthropictest"})
		case "tool_use":
			input := json.RawMessage(b.Text)
			if !json.Valid(input) {
				input = json.RawMessage(`{}`)
			}
			content = append(content, map[string]any{"type": "tool_use", "id": "toolu_anthropictest", "name": "plan", "input": input})
		default:
			content = append(content, map[string]any{"type": b.Type, "text": b.Text})
		}
	}
	type usage struct {
		InputTokens              int `json:"input_tokens"`
		OutputTokens             int `json:"output_tokens"`
		CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	}
	body, _ := json.Marshal(struct {
		ID           string  `json:"id"`
		Type         string  `json:"type"`
		Role         string  `json:"role"`
		Model        string  `json:"model"`
		Content      []any   `json:"content"`
		StopReason   string  `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
		Usage        usage   `json:"usage"`
	}{
		ID:         "msg_anthropictest",
		Type:       "message",
		Role:       "assistant",
		Model:      DefaultModel,
		Content:    content,
		StopReason: stop,
		Usage:      usage{InputTokens: u.Input, OutputTokens: u.Output},
	})
	return body
}

func decodeRequest(raw []byte, h http.Header) Request {
	var body struct {
		Model     string          `json:"model"`
		MaxTokens int             `json:"max_tokens"`
		System    json.RawMessage `json:"system"`
		Messages  []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	_ = json.Unmarshal(raw, &body) // a malformed body still counts; fields stay empty
	req := Request{
		Model:     body.Model,
		MaxTokens: body.MaxTokens,
		System:    contentText(body.System),
		Header:    h.Clone(),
		Raw:       raw,
	}
	for _, m := range body.Messages {
		req.Messages = append(req.Messages, Message{Role: m.Role, Content: contentText(m.Content)})
	}
	return req
}

// contentText flattens a content: a string, or an array of blocks whose
// text fields are joined.
func contentText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &blocks) != nil {
		return ""
	}
	var b bytes.Buffer
	for _, p := range blocks {
		b.WriteString(p.Text)
	}
	return b.String()
}
