package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Endpoint names, in the order they run.
const (
	epCeiling       = "ceiling"
	epHealth        = "health"
	epSession       = "session"
	epGenerate      = "generate"
	epGenerateLocal = "generate-local"
	epReconcile     = "reconcile"
	epLimiter       = "limiter"
)

// allEndpoints is the default -endpoints list, in run order.
func allEndpoints() []string {
	return []string{epCeiling, epHealth, epSession, epGenerate, epGenerateLocal, epReconcile, epLimiter}
}

// benchInput is a realistic breakdown request: about 200 characters of task
// text, two hints, as the app sends it.
const benchInput = `{"input_text":"Plan and pack for a three-day family camping trip next weekend: check the tent and sleeping bags, buy groceries for six meals, charge the lanterns, and leave the house tidy for the cat sitter.",` +
	`"granularity":3,"context_hints":["two kids","leaving Friday after school"],"template_ids":[]}`

// ceilingHandler is a bare handler writing a tiny JSON object: what net/http
// itself costs on this machine, the upper bound for every endpoint.
func ceilingHandler() http.Handler {
	body := []byte(`{"status":"ok"}` + "\n")
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// serverCountKey precedes the count in a reconcile reply.
const serverCountKey = `"server_count":`

// reconcileWorker tracks one reconcile client's counts: sent is the highest
// local_count sent, acked the highest one the server confirmed.
type reconcileWorker struct {
	installID string
	token     string
	sent      int64
	acked     int64
}

// planner builds the per-worker requests of each endpoint against base URLs.
type planner struct {
	ctx    context.Context
	client *http.Client
	runID  string // distinguishes this run's install ids from earlier runs'
}

func (pl *planner) plans(ep, base string, c int) ([]*plan, []*reconcileWorker, error) {
	plans := make([]*plan, c)
	var recs []*reconcileWorker
	for i := range plans {
		var (
			p   *plan
			err error
		)
		switch ep {
		case epCeiling:
			p, err = newPlan(pl.ctx, http.MethodGet, base+"/", nil, nil)
		case epHealth:
			p, err = newPlan(pl.ctx, http.MethodGet, base+"/v1/health", nil, nil)
		case epSession:
			p, err = pl.sessionPlan(base, i)
		case epGenerate, epGenerateLocal:
			p, err = pl.generatePlan(base, i)
		case epReconcile:
			var rw *reconcileWorker
			p, rw, err = pl.reconcilePlan(base, i)
			recs = append(recs, rw)
		default:
			err = fmt.Errorf("unknown endpoint %q", ep)
		}
		if err != nil {
			return nil, nil, err
		}
		plans[i] = p
	}
	return plans, recs, nil
}

// sessionPlan issues a session for a new install id on every request, so the
// per-install limiter sees a fresh key each time, as a flood would.
func (pl *planner) sessionPlan(base string, worker int) (*plan, error) {
	p, err := newPlan(pl.ctx, http.MethodPost, base+"/v1/sessions/anonymous", []byte{}, nil)
	if err != nil {
		return nil, err
	}
	prefix := []byte(`{"install_id":"bench-` + pl.runID + "-s" + strconv.Itoa(worker) + "-")
	var seq uint64
	p.next = func(buf []byte) []byte {
		seq++
		buf = append(buf, prefix...)
		buf = strconv.AppendUint(buf, seq, 10)
		return append(buf, `","app_version":"1.0.0","platform":"ios"}`...)
	}
	return p, nil
}

func (pl *planner) generatePlan(base string, worker int) (*plan, error) {
	tok, err := pl.issue(base, "bench-"+pl.runID+"-g"+strconv.Itoa(worker))
	if err != nil {
		return nil, err
	}
	h := http.Header{
		"Authorization":          {"Bearer " + tok},
		"X-Offload-Cloud-Opt-In": {"true"},
	}
	return newPlan(pl.ctx, http.MethodPost, base+"/v1/ai/breakdown/generate", []byte(benchInput), h)
}

// reconcilePlan sends a strictly increasing local_count on every request, so
// every reconcile raises the stored count and is a durable write, and checks
// that the server answers with exactly that count.
func (pl *planner) reconcilePlan(base string, worker int) (*plan, *reconcileWorker, error) {
	rw := &reconcileWorker{installID: "bench-" + pl.runID + "-r" + strconv.Itoa(worker)}
	tok, err := pl.issue(base, rw.installID)
	if err != nil {
		return nil, nil, err
	}
	rw.token = tok
	h := http.Header{"Authorization": {"Bearer " + tok}}
	p, err := newPlan(pl.ctx, http.MethodPost, base+"/v1/usage/reconcile", []byte{}, h)
	if err != nil {
		return nil, nil, err
	}
	prefix := []byte(`{"install_id":"` + rw.installID + `","feature":"breakdown","local_count":`)
	p.next = func(buf []byte) []byte {
		rw.sent++
		buf = append(buf, prefix...)
		buf = strconv.AppendInt(buf, rw.sent, 10)
		return append(buf, '}')
	}
	key := []byte(serverCountKey)
	p.verify = func(body []byte) string {
		n, err := jsonInt(body, key)
		if err != nil {
			return "reply without server_count"
		}
		if n != rw.sent {
			return "server_count differs from local_count"
		}
		rw.acked = rw.sent
		return ""
	}
	return p, rw, nil
}

// issue gets a session token for installID.
func (pl *planner) issue(base, installID string) (string, error) {
	body := `{"install_id":"` + installID + `","app_version":"1.0.0","platform":"ios"}`
	reply, status, err := pl.post(base+"/v1/sessions/anonymous", "", body)
	if err != nil {
		return "", fmt.Errorf("issue session: %w", err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("issue session: status %d %s", status, errorCode(reply))
	}
	var r struct {
		Token string `json:"session_token"`
	}
	if err := json.Unmarshal(reply, &r); err != nil || r.Token == "" {
		return "", fmt.Errorf("issue session: reply without session_token")
	}
	return r.Token, nil
}

func (pl *planner) post(url, token, body string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(pl.ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := pl.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return b, resp.StatusCode, err
}

// durability is the outcome of reading every reconcile worker's count back.
type durability struct {
	Installs int `json:"installs"`
	// Lost counts installs whose stored count is below the last count the
	// server acknowledged: an acknowledged write that was not kept.
	Lost int `json:"lost"`
	// Invented counts installs whose stored count is above anything sent.
	Invented int `json:"invented"`
	// Unreadable counts installs whose count could not be read back.
	Unreadable int `json:"unreadable"`
}

func (d durability) ok() bool { return d.Lost == 0 && d.Invented == 0 && d.Unreadable == 0 }

// verifyCounts reads each install's stored count back with one more
// reconcile whose local_count is 0, which never raises the count. The
// stored count must be at least the last acknowledged count; it may be
// higher only by requests that were sent but not acknowledged.
func (pl *planner) verifyCounts(base string, recs []*reconcileWorker) durability {
	d := durability{Installs: len(recs)}
	for _, rw := range recs {
		body := `{"install_id":"` + rw.installID + `","feature":"breakdown","local_count":0}`
		reply, status, err := pl.post(base+"/v1/usage/reconcile", rw.token, body)
		if err != nil || status != http.StatusOK {
			d.Unreadable++
			continue
		}
		n, err := jsonInt(reply, []byte(serverCountKey))
		switch {
		case err != nil:
			d.Unreadable++
		case n < rw.acked:
			d.Lost++
		case n > rw.sent:
			d.Invented++
		}
	}
	return d
}
