package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// reusableBody is a request body that is rewound, not reallocated, for every
// request of a worker. Close is a no-op so the transport closing it after a
// request doesn't stop the next one from reading it.
type reusableBody struct {
	buf []byte
	r   bytes.Reader
}

func (b *reusableBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *reusableBody) Close() error               { return nil }

// plan is one worker's request, built once and sent again and again. A
// request may be reused once the previous response's body has been closed.
type plan struct {
	req  *http.Request
	body *reusableBody // nil for requests without a body
	// next, if set, rewrites body.buf before each request (a new install id,
	// a higher local_count).
	next func(buf []byte) []byte
	// verify, if set, checks a 2xx body; a non-empty result is an error label.
	verify func(body []byte) string
	// authz, if set, is the Authorization header, shared with req.Header:
	// next may change authz[0] for each request (one install after the
	// other), and the lean sender then writes it per request.
	authz []string
}

// newPlan builds a plan for method and url with a JSON body (nil for none).
func newPlan(ctx context.Context, method, url string, body []byte, header http.Header) (*plan, error) {
	p := &plan{}
	var rd io.Reader
	if body != nil {
		p.body = &reusableBody{buf: body}
		rd = p.body
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if p.body != nil {
		req.Header.Set("Content-Type", "application/json")
		b := p.body
		// GetBody lets the transport replay the body if a kept-alive
		// connection turns out to be closed before the request was written.
		req.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b.buf)), nil
		}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	p.req = req
	return p, nil
}

// prepare readies the request for its next send.
func (p *plan) prepare() *http.Request {
	if p.body != nil {
		if p.next != nil {
			p.body.buf = p.next(p.body.buf[:0])
		}
		p.body.r.Reset(p.body.buf)
		p.req.ContentLength = int64(len(p.body.buf))
	}
	return p.req
}

// loadResult is what one endpoint's measured run produced.
type loadResult struct {
	hist     histogram
	requests uint64 // completed inside the measured window
	errors   uint64 // of requests, non-2xx or transport errors or failed checks
	elapsed  time.Duration
	samples  []errorSample // first few distinct errors, warmup included
}

type errorSample struct {
	What  string `json:"what"` // "status 429 session_rate_limited", "transport", …
	Count uint64 `json:"count"`
}

const maxErrorSamples = 5

// workerState is a worker's private tally; nothing in it is shared while the
// load runs, so recording costs no synchronisation.
type workerState struct {
	hist    histogram
	errors  uint64
	samples map[string]uint64
	buf     bytes.Buffer // captured bodies (errors, verified replies)
}

func (w *workerState) sample(what string) {
	if w.samples == nil {
		w.samples = make(map[string]uint64)
	}
	if _, ok := w.samples[what]; ok || len(w.samples) < maxErrorSamples {
		w.samples[what]++
	}
}

// runLoad drives plans in a closed loop (one goroutine per plan) for warmup
// and then for d. Requests completing in [start+warmup, start+warmup+d) are
// measured; requests running at the end are allowed to finish but are not
// counted. onMeasure, if set, is called when measuring starts and ends (for
// store statistics snapshots).
func runLoad(ctx context.Context, newSender func(*plan) sender, plans []*plan, warmup, d time.Duration, onMeasure func(starting bool)) loadResult {
	states := make([]workerState, len(plans))
	start := time.Now()
	mStart := start.Add(warmup)
	mEnd := mStart.Add(d)

	var wg sync.WaitGroup
	for i, p := range plans {
		snd := newSender(p)
		wg.Go(func() {
			defer closeSender(snd)
			drive(ctx, snd, p, &states[i], mStart, mEnd)
		})
	}
	if onMeasure != nil {
		sleepUntil(ctx, mStart)
		onMeasure(true)
		sleepUntil(ctx, mEnd)
		onMeasure(false)
	}
	wg.Wait()

	var res loadResult
	res.elapsed = d
	if now := time.Now(); ctx.Err() != nil && now.Before(mEnd) {
		res.elapsed = max(now.Sub(mStart), 0)
	}
	merged := map[string]uint64{}
	for i := range states {
		s := &states[i]
		res.hist.merge(&s.hist)
		res.errors += s.errors
		for k, v := range s.samples {
			merged[k] += v
		}
	}
	res.requests = res.hist.n
	for k, v := range merged {
		res.samples = append(res.samples, errorSample{What: k, Count: v})
	}
	sort.Slice(res.samples, func(i, j int) bool {
		if res.samples[i].Count != res.samples[j].Count {
			return res.samples[i].Count > res.samples[j].Count
		}
		return res.samples[i].What < res.samples[j].What
	})
	if len(res.samples) > maxErrorSamples {
		res.samples = res.samples[:maxErrorSamples]
	}
	return res
}

// closeSender releases a sender's own connection, if it has one.
func closeSender(s sender) {
	if c, ok := s.(io.Closer); ok {
		_ = c.Close()
	}
}

func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// drive is one closed-loop client: it sends the next request as soon as the
// previous one is fully read.
func drive(ctx context.Context, snd sender, p *plan, st *workerState, mStart, mEnd time.Time) {
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(mEnd) {
			return
		}
		failure := snd.send(p, st)
		t1 := time.Now()
		if failure != "" {
			st.sample(failure)
		}
		if t1.Before(mStart) || !t1.Before(mEnd) {
			continue // warmup, or finished after the window closed
		}
		st.hist.record(t1.Sub(t0))
		if failure != "" {
			st.errors++
		}
	}
}

// sender performs one request of a plan and reads the reply to the end. It
// returns "" on success or a short, content-free label of the failure.
type sender interface {
	send(p *plan, st *workerState) string
}

// clientSender sends through the shared keep-alive http.Client.
type clientSender struct{ client *http.Client }

func (c clientSender) send(p *plan, st *workerState) string {
	resp, err := c.client.Do(p.prepare())
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return "canceled"
		}
		return "transport error"
	}
	return readReply(resp, p, st)
}

// readReply reads resp to the end, closes it and judges it.
func readReply(resp *http.Response, p *plan, st *workerState) string {
	defer resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if ok && p.verify == nil {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return "transport error (reading body)"
		}
		return ""
	}
	st.buf.Reset()
	if _, err := st.buf.ReadFrom(io.LimitReader(resp.Body, 1<<20)); err != nil {
		return "transport error (reading body)"
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "transport error (reading body)"
	}
	if !ok {
		return "status " + strconv.Itoa(resp.StatusCode) + " " + errorCode(st.buf.Bytes())
	}
	return p.verify(st.buf.Bytes())
}

// errorCode extracts the contract error code from an error envelope.
func errorCode(body []byte) string {
	var env struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &env) != nil || env.Error.Code == "" {
		return "(no error envelope)"
	}
	return env.Error.Code
}

// jsonInt finds the integer after key (`"name":`) in body without decoding
// the whole document: verify runs for every reconcile, and the reply is a
// flat object whose field names occur nowhere else.
func jsonInt(body, key []byte) (int64, error) {
	i := bytes.Index(body, key)
	if i < 0 {
		return 0, fmt.Errorf("field %s missing", key)
	}
	rest := bytes.TrimLeft(body[i+len(key):], " ")
	j := 0
	for j < len(rest) && (rest[j] == '-' || rest[j] >= '0' && rest[j] <= '9') {
		j++
	}
	n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	if err != nil {
		return 0, err
	}
	return n, nil
}
