package anthropictest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type messageBody struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Role    string `json:"role"`
	Model   string `json:"model"`
	Content []struct {
		Type     string          `json:"type"`
		Text     *string         `json:"text"`
		Thinking string          `json:"thinking"`
		Input    json.RawMessage `json:"input"`
	} `json:"content"`
	StopReason string `json:"stop_reason"`
	Usage      struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

type errorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

const messagesBody = `{"model":"m1","max_tokens":99,"system":[{"type":"text","text":"sys"}],` +
	`"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":"c"}]}`

func post(t *testing.T, url, body string) (*http.Response, []byte) {
	t.Helper()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func TestDefaultAnswer(t *testing.T) {
	s := NewServer()
	defer s.Close()
	res, b := post(t, s.URL+"/v1/messages", messagesBody)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var m messageBody
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "message" || m.Role != "assistant" || m.ID == "" || m.Model == "" || m.StopReason != "end_turn" || len(m.Content) != 1 {
		t.Fatalf("not a message: %s", b)
	}
	if c := m.Content[0]; c.Type != "text" || c.Text == nil || *c.Text != DefaultText {
		t.Errorf("content = %+v", c)
	}
	if m.Usage.InputTokens != DefaultInputTokens || m.Usage.OutputTokens != DefaultOutputTokens {
		t.Errorf("usage = %+v", m.Usage)
	}
	if s.Count() != 1 || s.Requests() != nil {
		t.Errorf("count %d, requests %v (recording is off by default)", s.Count(), s.Requests())
	}
	var plan struct {
		Steps []json.RawMessage `json:"steps"`
	}
	if err := json.Unmarshal([]byte(DefaultText), &plan); err != nil || len(plan.Steps) == 0 {
		t.Errorf("DefaultText is not a plan: %v", err)
	}
}

func TestRecording(t *testing.T) {
	s := NewServer(WithRecording())
	defer s.Close()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/messages", strings.NewReader(messagesBody))
	req.Header.Set("x-api-key", "k1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("recorded %d", len(reqs))
	}
	r := reqs[0]
	if r.Model != "m1" || r.MaxTokens != 99 || r.System != "sys" || string(r.Raw) != messagesBody || r.Header.Get("X-Api-Key") != "k1" {
		t.Errorf("request = %+v", r)
	}
	want := []Message{{"user", "ab"}, {"assistant", "c"}}
	if len(r.Messages) != 2 || r.Messages[0] != want[0] || r.Messages[1] != want[1] {
		t.Errorf("messages = %+v", r.Messages)
	}
}

func TestScriptedAnswers(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.Enqueue(
		Response{Status: 429, Header: http.Header{"Retry-After": {"1"}}},
		Response{Status: 529},
		Response{Text: `{"steps":[]}`, Usage: Usage{Input: 3, Output: 4}, StopReason: "max_tokens"},
		Response{Blocks: []Block{{Type: "thinking", Text: "hmm"}, {Type: "tool_use", Text: `{"steps":[]}`}, {Type: "text", Text: "t"}}},
		Response{Status: 202, Body: []byte(`raw`)},
	)
	s.Respond(func(r Request) Response { return Response{Text: `{"model":"` + r.Model + `"}`} })

	res, b := post(t, s.URL+"/v1/messages", messagesBody)
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil || res.StatusCode != 429 || e.Type != "error" || e.Error.Type != "rate_limit_error" ||
		e.Error.Message == "" || res.Header.Get("Retry-After") != "1" {
		t.Errorf("429: status %d, header %v, body %s", res.StatusCode, res.Header, b)
	}
	res, b = post(t, s.URL+"/v1/messages", messagesBody)
	if err := json.Unmarshal(b, &e); err != nil || res.StatusCode != 529 || e.Error.Type != "overloaded_error" {
		t.Errorf("529: status %d, body %s", res.StatusCode, b)
	}
	var m messageBody
	_, b = post(t, s.URL+"/v1/messages", messagesBody)
	if err := json.Unmarshal(b, &m); err != nil || *m.Content[0].Text != `{"steps":[]}` || m.Usage.InputTokens != 3 ||
		m.Usage.OutputTokens != 4 || m.StopReason != "max_tokens" {
		t.Errorf("text answer: %s", b)
	}
	m = messageBody{}
	_, b = post(t, s.URL+"/v1/messages", messagesBody)
	if err := json.Unmarshal(b, &m); err != nil || len(m.Content) != 3 || m.Content[0].Thinking != "hmm" ||
		string(m.Content[1].Input) != `{"steps":[]}` || *m.Content[2].Text != "t" {
		t.Errorf("block answer: %s", b)
	}
	res, b = post(t, s.URL+"/v1/messages", messagesBody)
	if res.StatusCode != 202 || string(b) != "raw" {
		t.Errorf("raw answer: %d %s", res.StatusCode, b)
	}
	m = messageBody{}
	_, b = post(t, s.URL+"/v1/messages", messagesBody)
	if err := json.Unmarshal(b, &m); err != nil || *m.Content[0].Text != `{"model":"m1"}` {
		t.Errorf("Respond answer: %s", b)
	}
	s.Respond(nil)
	m = messageBody{}
	_, b = post(t, s.URL+"/v1/messages", messagesBody)
	if err := json.Unmarshal(b, &m); err != nil || *m.Content[0].Text != DefaultText {
		t.Errorf("default after Respond(nil): %s", b)
	}
	if s.Count() != 7 {
		t.Errorf("count = %d", s.Count())
	}
}

func TestErrorTypes(t *testing.T) {
	for status, want := range map[int]string{400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
		404: "not_found_error", 413: "request_too_large", 422: "invalid_request_error", 429: "rate_limit_error",
		500: "api_error", 503: "api_error", 529: "overloaded_error"} {
		if got := ErrorType(status); got != want {
			t.Errorf("ErrorType(%d) = %q, want %q", status, got, want)
		}
	}
}

func TestHangCountsCancel(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.Enqueue(Response{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/messages", strings.NewReader(messagesBody))
	errc := make(chan error, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, func() bool { return s.Count() == 1 })
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a hanging answer returned")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request did not end after cancel")
	}
	waitFor(t, func() bool { return s.Canceled() == 1 })
}

func TestDelay(t *testing.T) {
	s := NewServer(WithDelay(40 * time.Millisecond))
	defer s.Close()
	start := time.Now()
	post(t, s.URL+"/v1/messages", messagesBody)
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("answered after %v, want ≥ 40ms", d)
	}
	// A client that gives up during the delay is counted.
	s2 := NewServer(WithDelay(time.Hour))
	defer s2.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s2.URL+"/v1/messages", strings.NewReader(messagesBody))
	go func() {
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	waitFor(t, func() bool { return s2.Count() == 1 })
	cancel()
	waitFor(t, func() bool { return s2.Canceled() == 1 })
}

func TestCloseReleasesHangingRequests(t *testing.T) {
	s := NewServer()
	s.Respond(func(Request) Response { return Response{Hang: true} })
	go func() {
		res, err := http.Post(s.URL+"/v1/messages", "application/json", strings.NewReader(messagesBody))
		if err == nil {
			res.Body.Close()
		}
	}()
	waitFor(t, func() bool { return s.Count() == 1 })
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a hanging request")
	}
}

func TestRoutes(t *testing.T) {
	s := NewServer()
	defer s.Close()
	res, b := post(t, s.URL+"/v1/complete", "{}")
	var e errorBody
	if res.StatusCode != 404 || json.Unmarshal(b, &e) != nil || e.Error.Type != "not_found_error" {
		t.Errorf("unknown path: %d %s", res.StatusCode, b)
	}
	res, err := http.Get(s.URL + "/v1/messages")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 405 || s.Count() != 0 {
		t.Errorf("GET: %d, count %d", res.StatusCode, s.Count())
	}
}

func TestConcurrentDefault(t *testing.T) {
	s := NewServer()
	defer s.Close()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			res, err := http.Post(s.URL+"/v1/messages", "application/json", strings.NewReader(messagesBody))
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if !bytes.Contains(b, []byte(`"type":"message"`)) {
				t.Errorf("body %s", b)
			}
		})
	}
	wg.Wait()
	if s.Count() != 50 {
		t.Errorf("count = %d", s.Count())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
