package openaitest

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

type completionBody struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
			Refusal *string `json:"refusal"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

const chatBody = `{"model":"m1","response_format":{"type":"json_object"},` +
	`"messages":[{"role":"system","content":"sys"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`

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
	for _, url := range []string{s.URL + "/chat/completions", strings.TrimSuffix(s.URL, "/v1") + "/chat/completions"} {
		res, b := post(t, url, chatBody)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: status %d, type %q", url, res.StatusCode, res.Header.Get("Content-Type"))
		}
		var c completionBody
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		if c.Object != "chat.completion" || c.ID == "" || c.Created == 0 || c.Model == "" || len(c.Choices) != 1 {
			t.Fatalf("not a chat.completion: %s", b)
		}
		ch := c.Choices[0]
		if ch.Message.Role != "assistant" || ch.Message.Content == nil || *ch.Message.Content != DefaultContent || ch.FinishReason != "stop" {
			t.Errorf("choice = %+v", ch)
		}
		if c.Usage.PromptTokens != DefaultPromptTokens || c.Usage.CompletionTokens != DefaultCompletionTokens ||
			c.Usage.TotalTokens != DefaultPromptTokens+DefaultCompletionTokens {
			t.Errorf("usage = %+v", c.Usage)
		}
	}
	if s.Count() != 2 || s.Requests() != nil {
		t.Errorf("count %d, requests %v (recording is off by default)", s.Count(), s.Requests())
	}
	var plan struct {
		Steps []json.RawMessage `json:"steps"`
	}
	if err := json.Unmarshal([]byte(DefaultContent), &plan); err != nil || len(plan.Steps) == 0 {
		t.Errorf("DefaultContent is not a plan: %v", err)
	}
}

func TestRecording(t *testing.T) {
	s := NewServer(WithRecording())
	defer s.Close()
	post(t, s.URL+"/chat/completions", chatBody)
	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("recorded %d", len(reqs))
	}
	r := reqs[0]
	if r.Model != "m1" || r.ResponseFormatType != "json_object" || string(r.Raw) != chatBody {
		t.Errorf("request = %+v", r)
	}
	want := []Message{{"system", "sys"}, {"user", "ab"}}
	if len(r.Messages) != 2 || r.Messages[0] != want[0] || r.Messages[1] != want[1] {
		t.Errorf("messages = %+v", r.Messages)
	}
	if r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("header = %v", r.Header)
	}
}

func TestScriptedAnswers(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.Enqueue(
		Response{Status: 429, Header: http.Header{"Retry-After": {"1"}}},
		Response{Status: 503},
		Response{Content: `{"steps":[]}`, Usage: Usage{Prompt: 3, Completion: 4}},
		Response{Refusal: "no"},
		Response{Status: 202, Body: []byte(`raw`)},
	)
	s.Respond(func(r Request) Response { return Response{Content: `{"model":"` + r.Model + `"}`} })

	res, b := post(t, s.URL+"/chat/completions", chatBody)
	var e struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || res.StatusCode != 429 || e.Error.Code != "rate_limit_exceeded" ||
		e.Error.Message == "" || res.Header.Get("Retry-After") != "1" {
		t.Errorf("429: status %d, header %v, body %s", res.StatusCode, res.Header, b)
	}
	res, b = post(t, s.URL+"/chat/completions", chatBody)
	if err := json.Unmarshal(b, &e); err != nil || res.StatusCode != 503 || e.Error.Type != "server_error" {
		t.Errorf("503: status %d, body %s", res.StatusCode, b)
	}
	var c completionBody
	_, b = post(t, s.URL+"/chat/completions", chatBody)
	if err := json.Unmarshal(b, &c); err != nil || *c.Choices[0].Message.Content != `{"steps":[]}` || c.Usage.TotalTokens != 7 {
		t.Errorf("content answer: %s", b)
	}
	c = completionBody{}
	_, b = post(t, s.URL+"/chat/completions", chatBody)
	if err := json.Unmarshal(b, &c); err != nil || c.Choices[0].Message.Content != nil || *c.Choices[0].Message.Refusal != "no" {
		t.Errorf("refusal answer: %s", b)
	}
	res, b = post(t, s.URL+"/chat/completions", chatBody)
	if res.StatusCode != 202 || string(b) != "raw" {
		t.Errorf("raw answer: %d %s", res.StatusCode, b)
	}
	c = completionBody{}
	_, b = post(t, s.URL+"/chat/completions", chatBody)
	if err := json.Unmarshal(b, &c); err != nil || *c.Choices[0].Message.Content != `{"model":"m1"}` {
		t.Errorf("Respond answer: %s", b)
	}
	s.Respond(nil)
	c = completionBody{}
	_, b = post(t, s.URL+"/chat/completions", chatBody)
	if err := json.Unmarshal(b, &c); err != nil || *c.Choices[0].Message.Content != DefaultContent {
		t.Errorf("default after Respond(nil): %s", b)
	}
	if s.Count() != 7 {
		t.Errorf("count = %d", s.Count())
	}
}

func TestHangCountsCancel(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.Enqueue(Response{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/chat/completions", strings.NewReader(chatBody))
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
	if err := <-errc; err == nil {
		t.Fatal("a hanging answer returned")
	}
	waitFor(t, func() bool { return s.Canceled() == 1 })
}

func TestDelay(t *testing.T) {
	s := NewServer(WithDelay(40 * time.Millisecond))
	defer s.Close()
	start := time.Now()
	post(t, s.URL+"/chat/completions", chatBody)
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("answered after %v, want ≥ 40ms", d)
	}
	// A client that gives up during the delay is counted.
	s2 := NewServer(WithDelay(time.Hour))
	defer s2.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s2.URL+"/chat/completions", strings.NewReader(chatBody))
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
		res, err := http.Post(s.URL+"/chat/completions", "application/json", strings.NewReader(chatBody))
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
	res, _ := post(t, s.URL+"/embeddings", "{}")
	if res.StatusCode != 404 {
		t.Errorf("unknown path: %d", res.StatusCode)
	}
	res, err := http.Get(s.URL + "/chat/completions")
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
			res, err := http.Post(s.URL+"/chat/completions", "application/json", strings.NewReader(chatBody))
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if !bytes.Contains(b, []byte(`"chat.completion"`)) {
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

func TestHostileAnswers(t *testing.T) {
	s := NewServer()
	defer s.Close()
	valid := CompletionBody(DefaultContent, Usage{Prompt: 1, Completion: 2})
	tests := []struct {
		name          string
		resp          Response
		wantHeaderMin int   // bytes of X-Openaitest-Pad values at least
		wantLength    int64 // Content-Length; -1 chunked
		wantBody      int   // body bytes
	}{
		{"huge header", Response{HeaderBytes: 200 << 10}, 200 << 10, int64(len(valid)), len(valid)},
		{"huge header chunked body", Response{HeaderBytes: 64 << 10, BodyBytes: 1 << 20, Chunked: true}, 64 << 10, -1, 1 << 20},
		{"huge body", Response{BodyBytes: 3 << 20}, 0, 3 << 20, 3 << 20},
		{"huge chunked body", Response{BodyBytes: 3 << 20, Chunked: true}, 0, -1, 3 << 20},
		{"huge error body", Response{Status: 500, BodyBytes: 1 << 20}, 0, 1 << 20, 1 << 20},
		{"drip", Response{Body: []byte(`{"a":1}`), Drip: 5 * time.Millisecond}, 0, 7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.resp.Body == nil && tt.resp.Status == 0 {
				tt.resp.Usage = Usage{Prompt: 1, Completion: 2}
			}
			s.Enqueue(tt.resp)
			start := time.Now()
			res, b := post(t, s.URL+"/chat/completions", chatBody)
			pad := 0
			for _, v := range res.Header["X-Openaitest-Pad"] {
				pad += len(v)
			}
			if pad < tt.wantHeaderMin || (tt.wantHeaderMin == 0 && pad != 0) {
				t.Errorf("header padding %d bytes, want ≥ %d", pad, tt.wantHeaderMin)
			}
			if res.ContentLength != tt.wantLength || len(b) != tt.wantBody {
				t.Errorf("Content-Length %d, body %d bytes; want %d, %d", res.ContentLength, len(b), tt.wantLength, tt.wantBody)
			}
			want := 200
			if tt.resp.Status != 0 {
				want = tt.resp.Status
			}
			if res.StatusCode != want || res.Header.Get("Content-Type") != "application/json" {
				t.Errorf("status %d, type %q", res.StatusCode, res.Header.Get("Content-Type"))
			}
			// Padding is whitespace: the body stays the answer it pads.
			if tt.resp.Status == 0 && tt.resp.Body == nil {
				var c completionBody
				if err := json.Unmarshal(b, &c); err != nil || *c.Choices[0].Message.Content != DefaultContent {
					t.Errorf("padded body is not the answer: %v", err)
				}
			}
			if tt.resp.Drip > 0 && time.Since(start) < time.Duration(tt.wantBody-1)*tt.resp.Drip {
				t.Errorf("dripped body came in %v", time.Since(start))
			}
		})
	}
}

// A client that reads the header of a huge answer and then stalls neither
// keeps the handler nor Close waiting for long.
func TestHostileStalledClient(t *testing.T) {
	for _, resp := range []Response{{BodyBytes: 1 << 30}, {HeaderBytes: 1 << 10, BodyBytes: 1 << 30}} {
		s := NewServer()
		s.Enqueue(resp)
		res, err := http.Post(s.URL+"/chat/completions", "application/json", strings.NewReader(chatBody))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { s.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close blocked on a stalled hostile answer")
		}
		res.Body.Close()
	}
}
