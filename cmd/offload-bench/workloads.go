package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint names, in the order they run.
const (
	epCeiling       = "ceiling"
	epFloor         = "floor"
	epHealth        = "health"
	epSession       = "session"
	epGenerate      = "generate"
	epGenerateLocal = "generate-local"
	epReconcile     = "reconcile"
	epReconcileHot  = "reconcile-hot"
	epReconcileMany = "reconcile-many"
	epOverhead      = "overhead"
	epOverheadOpen  = "overhead-open"
	epLimiter       = "limiter"
)

// allEndpoints is every endpoint, in run order.
func allEndpoints() []string {
	return []string{epCeiling, epFloor, epHealth, epSession, epGenerate, epGenerateLocal,
		epReconcile, epReconcileHot, epReconcileMany, epOverhead, epOverheadOpen, epLimiter}
}

// defaultEndpoints is the default -endpoints list: all but the gateway
// overhead runs, which want their own upstream delay and rate.
func defaultEndpoints() []string {
	return slices.DeleteFunc(allEndpoints(), func(ep string) bool { return ep == epOverhead || ep == epOverheadOpen })
}

// isOverhead reports whether ep is a gateway overhead run (not closed loop).
func isOverhead(ep string) bool { return ep == epOverhead || ep == epOverheadOpen }

// needsSetup reports whether ep needs servers the bench runs itself (it
// cannot be measured with -target).
func needsSetup(ep string) bool {
	return ep == epCeiling || ep == epFloor || ep == epGenerateLocal || isOverhead(ep)
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

// reconcileWorker tracks one install's counts: sent is the highest
// local_count sent, acked the highest one the server confirmed.
type reconcileWorker struct {
	installID string
	token     string
	sent      int64
	acked     int64
}

// planner builds the per-worker requests of each endpoint against base URLs.
type planner struct {
	ctx      context.Context
	client   *http.Client
	runID    string // distinguishes this run's install ids from earlier runs'
	installs int    // reconcile-many: distinct installs
}

// floorToken stands in for a session token on requests to the floor,
// which checks none: as long as a real one, so the bytes on the wire match.
var floorToken = strings.Repeat("x", 200)

// plans builds c workers' requests for ep against base. verify, when not
// nil, reads every count back after the run (reconcile workloads).
func (pl *planner) plans(ep, base string, c int) (plans []*plan, verify func() durability, err error) {
	switch ep {
	case epReconcileHot:
		return pl.reconcileHotPlans(base, c)
	case epReconcileMany:
		return pl.reconcileManyPlans(base, c)
	}
	plans = make([]*plan, c)
	var recs []*reconcileWorker
	for i := range plans {
		var p *plan
		switch ep {
		case epCeiling:
			p, err = newPlan(pl.ctx, http.MethodGet, base+"/", nil, nil)
		case epHealth:
			p, err = newPlan(pl.ctx, http.MethodGet, base+"/v1/health", nil, nil)
		case epSession:
			p, err = pl.sessionPlan(base, i)
		case epGenerate, epGenerateLocal:
			p, err = pl.generatePlan(base, i)
		case epFloor:
			p, err = floorPlan(pl.ctx, base)
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
	if recs != nil {
		verify = func() durability { return pl.verifyCounts(base, recs) }
	}
	return plans, verify, nil
}

// floorPlan is a generate request as the app sends it, to the floor.
func floorPlan(ctx context.Context, base string) (*plan, error) {
	h := http.Header{
		"Authorization":          {"Bearer " + floorToken},
		"X-Offload-Cloud-Opt-In": {"true"},
	}
	return newPlan(ctx, http.MethodPost, base+"/v1/ai/breakdown/generate", []byte(benchInput), h)
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

// reconcileHotPlans has every worker reconcile the same install: one row
// that all writes update. The workers share one strictly increasing
// local_count; a reply must confirm at least the count its request sent.
func (pl *planner) reconcileHotPlans(base string, c int) ([]*plan, func() durability, error) {
	installID := "bench-" + pl.runID + "-hot"
	tok, err := pl.issue(base, installID)
	if err != nil {
		return nil, nil, err
	}
	var sent, acked atomic.Int64
	prefix := []byte(`{"install_id":"` + installID + `","feature":"breakdown","local_count":`)
	key := []byte(serverCountKey)
	plans := make([]*plan, c)
	for i := range plans {
		p, err := newPlan(pl.ctx, http.MethodPost, base+"/v1/usage/reconcile", []byte{}, http.Header{"Authorization": {"Bearer " + tok}})
		if err != nil {
			return nil, nil, err
		}
		var last int64 // this worker's count in flight
		p.next = func(buf []byte) []byte {
			last = sent.Add(1)
			buf = append(buf, prefix...)
			buf = strconv.AppendInt(buf, last, 10)
			return append(buf, '}')
		}
		p.verify = func(body []byte) string {
			n, err := jsonInt(body, key)
			switch {
			case err != nil:
				return "reply without server_count"
			case n < last:
				return "server_count below local_count"
			case n > sent.Load():
				return "server_count above anything sent"
			}
			storeMaxInt(&acked, last)
			return ""
		}
		plans[i] = p
	}
	verify := func() durability {
		rw := &reconcileWorker{installID: installID, token: tok, sent: sent.Load(), acked: acked.Load()}
		return pl.verifyCounts(base, []*reconcileWorker{rw})
	}
	return plans, verify, nil
}

// reconcileManyPlans spreads the writes over pl.installs installs, each
// request another install than the previous (worker w owns installs w,
// w+c, w+2c, …), so most writes update a row that is not the last one
// written, and the first write of each install creates its row.
func (pl *planner) reconcileManyPlans(base string, c int) ([]*plan, func() durability, error) {
	n := max(pl.installs, c)
	recs := make([]*reconcileWorker, n)
	for i := range recs {
		recs[i] = &reconcileWorker{installID: "bench-" + pl.runID + "-m" + strconv.Itoa(i)}
	}
	if err := pl.issueAll(base, recs, c); err != nil {
		return nil, nil, err
	}
	key := []byte(serverCountKey)
	plans := make([]*plan, c)
	for w := range plans {
		var (
			own     []*reconcileWorker
			ownAuth []string // "Bearer <token>" of own[i], built once
		)
		for i := w; i < n; i += c {
			own = append(own, recs[i])
			ownAuth = append(ownAuth, "Bearer "+recs[i].token)
		}
		authz := []string{ownAuth[0]}
		p, err := newPlan(pl.ctx, http.MethodPost, base+"/v1/usage/reconcile", []byte{}, http.Header{"Authorization": authz})
		if err != nil {
			return nil, nil, err
		}
		p.authz = authz
		var next int
		var cur *reconcileWorker
		p.next = func(buf []byte) []byte {
			cur = own[next]
			p.authz[0] = ownAuth[next]
			next = (next + 1) % len(own)
			cur.sent++
			buf = append(buf, `{"install_id":"`...)
			buf = append(buf, cur.installID...)
			buf = append(buf, `","feature":"breakdown","local_count":`...)
			buf = strconv.AppendInt(buf, cur.sent, 10)
			return append(buf, '}')
		}
		p.verify = func(body []byte) string {
			n, err := jsonInt(body, key)
			if err != nil {
				return "reply without server_count"
			}
			if n != cur.sent {
				return "server_count differs from local_count"
			}
			cur.acked = cur.sent
			return ""
		}
		plans[w] = p
	}
	return plans, func() durability { return pl.verifyCounts(base, recs) }, nil
}

func storeMaxInt(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// issueAll issues a session token for every install, par at a time.
func (pl *planner) issueAll(base string, recs []*reconcileWorker, par int) error {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		mu    sync.Mutex
		first error
	)
	for range min(par, len(recs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(recs) {
					return
				}
				tok, err := pl.issue(base, recs[i].installID)
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
				recs[i].token = tok
			}
		})
	}
	wg.Wait()
	return first
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
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(16, len(recs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(recs) {
					return
				}
				r := pl.verifyOne(base, recs[i])
				mu.Lock()
				d.Lost += r.Lost
				d.Invented += r.Invented
				d.Unreadable += r.Unreadable
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return d
}

func (pl *planner) verifyOne(base string, rw *reconcileWorker) durability {
	var d durability
	body := `{"install_id":"` + rw.installID + `","feature":"breakdown","local_count":0}`
	reply, status, err := pl.post(base+"/v1/usage/reconcile", rw.token, body)
	if err != nil || status != http.StatusOK {
		d.Unreadable++
		return d
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
	return d
}
