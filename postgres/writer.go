package postgres

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offload-app/offload"
)

// request is one queued reconcile. A writer owns it from the moment it is
// sent until it replies; reply has room for that one answer, so the writer
// never blocks on a caller that stopped waiting.
type request struct {
	installID string
	feature   string
	count     int64
	reply     chan result
}

type result struct {
	count int64
	err   error
}

// updateSQL reconciles every key of a group that has a row, in one
// statement. The arrays are bound as three parameters whatever the group's
// size, so one prepared statement serves every group. Keys are distinct in
// a group (see group.add), so each row is updated once; ord says which key
// a returned row belongs to.
//
// The locked CTE takes the rows' locks in key order before anything is
// updated (ORDER BY runs below the row locking), so two groups sharing keys,
// from this instance or another, wait for each other instead of
// deadlocking: the UPDATE's own join order follows the plan, which follows
// where the row versions happen to lie. UPDATE then re-reads each locked
// row at its newest version, so GREATEST sees the latest count.
const updateSQL = `WITH i AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS i(install_id, feature, n, ord)
), locked AS MATERIALIZED (
    SELECT u.install_id, u.feature, i.n, i.ord
    FROM usage_counts AS u JOIN i ON u.install_id = i.install_id AND u.feature = i.feature
    ORDER BY u.install_id, u.feature
    FOR UPDATE OF u
)
UPDATE usage_counts AS u
SET count = GREATEST(u.count, l.n), updated_at = $4
FROM locked AS l
WHERE u.install_id = l.install_id AND u.feature = l.feature
RETURNING l.ord, u.count`

// lockInstallsSQL takes the advisory lock of every install in $2, in one
// order for every instance so two of them never deadlock. Held until the
// transaction ends.
const lockInstallsSQL = `SELECT count(pg_advisory_xact_lock($1, k.h))
FROM (SELECT DISTINCT hashtext(x) AS h FROM unnest($2::text[]) AS x ORDER BY 1) AS k`

// insertCappedSQL creates the rows of keys that had none, in the
// transaction that holds their installs' locks; its snapshot is taken after
// they were granted, so "have" counts every row created under them. A key
// whose row exists by now (created by an Increment, which takes no lock, or
// by a reconcile that committed since) is reconciled as usual; of the
// others, an install's first cap-have keys (by feature) are created and the
// rest are not returned: those fail with ErrFeatureLimit. Rows are written
// (and locked) in key order, like the groups' updates.
const insertCappedSQL = `WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) AS i(install_id, feature, n)
), cand AS (
    SELECT i.install_id, i.feature, i.n,
        EXISTS (SELECT 1 FROM usage_counts u WHERE u.install_id = i.install_id AND u.feature = i.feature) AS present
    FROM input i
), ranked AS (
    SELECT c.install_id, c.feature, c.n, c.present,
        row_number() OVER (PARTITION BY c.install_id, c.present ORDER BY c.feature) AS rn,
        (SELECT count(*) FROM usage_counts u WHERE u.install_id = c.install_id) AS have
    FROM cand c
)
INSERT INTO usage_counts (install_id, feature, count, created_at, updated_at)
SELECT install_id, feature, n, $4, $4 FROM ranked WHERE present OR have + rn <= $5
ORDER BY install_id, feature
ON CONFLICT (install_id, feature) DO UPDATE
SET count = GREATEST(usage_counts.count, EXCLUDED.count), updated_at = EXCLUDED.updated_at
RETURNING install_id, feature, count`

// Reconcile stores max(stored, localCount) durably and returns the stored
// value. A negative localCount is ErrCountRange; a key PostgreSQL text
// cannot hold is ErrKey. If ctx ends first the write may still commit; the
// caller gets ctx.Err(). An already-ended ctx writes nothing.
func (s *Store) Reconcile(ctx context.Context, installID, feature string, localCount int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if localCount < 0 {
		return 0, ErrCountRange
	}
	if !validKey(installID) || !validKey(feature) {
		return 0, ErrKey
	}
	r := s.reqPool.Get().(*request)
	r.installID, r.feature, r.count = installID, feature, localCount
	if err := s.enqueue(ctx, r); err != nil {
		r.installID, r.feature = "", ""
		s.reqPool.Put(r)
		return 0, err
	}
	select {
	case res := <-r.reply:
		r.installID, r.feature = "", ""
		s.reqPool.Put(r)
		return res.count, res.err
	case <-ctx.Done():
		// r stays with the writer, which will answer into its buffer; it is
		// not put back in the pool, so no later call can see that answer.
		return 0, ctx.Err()
	}
}

func (s *Store) enqueue(ctx context.Context, r *request) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	select {
	case s.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type key struct{ installID, feature string }

// group is one writer's scratch space, kept between groups so a group
// allocates little. A group holds each key once: members that share a key
// become one entry with the highest count, and all of them get its answer
// (as if the lower ones had gone first, which concurrent calls may have).
type group struct {
	index    map[key]int // key → entry
	ids      []string
	features []string
	counts   []int64
	results  []result
	found    []bool
	slot     []int // member → entry

	missIDs, missFeatures []string
	missCounts            []int64
	inserted              int // rows the capped insert wrote
}

func newGroup(maxBatch int) *group {
	return &group{
		index:    make(map[key]int, maxBatch),
		ids:      make([]string, 0, maxBatch),
		features: make([]string, 0, maxBatch),
		counts:   make([]int64, 0, maxBatch),
		results:  make([]result, 0, maxBatch),
		found:    make([]bool, 0, maxBatch),
		slot:     make([]int, 0, maxBatch),
	}
}

func (g *group) reset() {
	clear(g.index)
	clear(g.ids) // drop references to the members' strings
	clear(g.features)
	clear(g.missIDs)
	clear(g.missFeatures)
	g.ids, g.features, g.counts = g.ids[:0], g.features[:0], g.counts[:0]
	g.results, g.found, g.slot = g.results[:0], g.found[:0], g.slot[:0]
	g.missIDs, g.missFeatures, g.missCounts = g.missIDs[:0], g.missFeatures[:0], g.missCounts[:0]
}

func (g *group) add(r *request) {
	k := key{r.installID, r.feature}
	if j, ok := g.index[k]; ok {
		g.counts[j] = max(g.counts[j], r.count)
		g.slot = append(g.slot, j)
		return
	}
	j := len(g.ids)
	g.index[k] = j
	g.ids = append(g.ids, r.installID)
	g.features = append(g.features, r.feature)
	g.counts = append(g.counts, r.count)
	g.results = append(g.results, result{})
	g.found = append(g.found, false)
	g.slot = append(g.slot, j)
}

// writer is one of the goroutines that commit reconciles. It runs until
// Close closes reqs, and commits everything queued before that.
func (s *Store) writer() {
	batch := make([]*request, 0, s.cfg.maxBatch)
	g := newGroup(s.cfg.maxBatch)
	for {
		r, ok := <-s.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		open := true
	drain:
		for len(batch) < s.cfg.maxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					open = false
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commitGroup(g, batch)
		clear(batch) // drop references to answered requests
		if !open {
			return
		}
	}
}

// commitGroup writes batch and answers every member once its write is
// committed. The update of existing rows is one statement (its own
// transaction); keys without a row then go through the capped insert. A
// failure of either fails the members it concerned with an error wrapping
// offload.ErrStorage. Reconciles are idempotent, so a group whose connection
// broke is sent once more on another.
func (s *Store) commitGroup(g *group, batch []*request) {
	if s.cfg.batchHook != nil {
		s.cfg.batchHook(len(batch))
	}
	// Rows are locked in key order by every group of every instance (and
	// by MergeRows), so two groups sharing keys never deadlock.
	slices.SortFunc(batch, func(a, b *request) int {
		return cmp.Or(strings.Compare(a.installID, b.installID), strings.Compare(a.feature, b.feature))
	})
	g.reset()
	for _, r := range batch {
		g.add(r)
	}
	// The writer finishes what was queued, whoever stopped waiting; only
	// Close's cancel and the write timeout end it early.
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.writeTimeout)
	defer cancel()
	now := s.now()
	start := time.Now()

	err := s.retry(ctx, func() error { return s.updateExisting(ctx, g, now) })
	if err != nil {
		s.fail(batch, storageErr("reconcile", err))
		return
	}
	found := 0
	for j, ok := range g.found {
		if ok {
			found++
		} else {
			g.missIDs = append(g.missIDs, g.ids[j])
			g.missFeatures = append(g.missFeatures, g.features[j])
			g.missCounts = append(g.missCounts, g.counts[j])
		}
	}
	if found > 0 {
		s.cfg.metrics.UsageCommit(found, time.Since(start))
	}
	if len(g.missIDs) > 0 {
		start := time.Now()
		err := s.retry(ctx, func() error { return s.insertCapped(ctx, g, now) })
		if err != nil {
			// The members whose rows existed are committed; only the others fail.
			ferr := storageErr("reconcile", err)
			for j, ok := range g.found {
				if !ok {
					g.results[j].err = ferr
				}
			}
			s.failures.Add(1)
		} else {
			s.cfg.metrics.UsageCommit(g.inserted, time.Since(start))
		}
	}

	// Counters first, so a caller that has its answer sees them updated.
	s.commits.Add(1)
	s.writes.Add(uint64(len(batch)))
	if n := uint64(len(batch)); n > s.maxBatch.Load() {
		s.maxBatch.Store(n) // racy max among writers; a statistic only
	}
	for i, r := range batch {
		r.reply <- g.results[g.slot[i]]
	}
}

// retry runs fn, and once more if it failed in a way another connection may
// not (a broken connection, a server restart).
func (s *Store) retry(ctx context.Context, fn func() error) error {
	err := fn()
	if err != nil && retryable(err) && ctx.Err() == nil {
		s.retries.Add(1)
		err = fn()
	}
	return err
}

func (s *Store) updateExisting(ctx context.Context, g *group, now time.Time) error {
	clear(g.found)
	rows, err := s.pool.Query(ctx, updateSQL, g.ids, g.features, g.counts, now)
	if err != nil {
		return err
	}
	defer rows.Close()
	var ord, count int64
	for rows.Next() {
		if err := rows.Scan(&ord, &count); err != nil {
			return err
		}
		j := int(ord - 1)
		if j < 0 || j >= len(g.ids) || g.found[j] {
			return errUnexpected
		}
		g.found[j] = true
		g.results[j] = result{count: count}
	}
	return rows.Err()
}

// insertCapped creates the rows of the group's missing keys under their
// installs' advisory locks (two statements pipelined in one round trip, in
// one transaction). Keys not returned were refused by the cap.
func (s *Store) insertCapped(ctx context.Context, g *group, now time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(lockInstallsSQL, lockClassInstall, g.missIDs)
		b.Queue(insertCappedSQL, g.missIDs, g.missFeatures, g.missCounts, now, s.cfg.maxFeatures)
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for j, ok := range g.found {
			if !ok {
				g.results[j] = result{err: offload.ErrFeatureLimit}
			}
		}
		g.inserted = 0
		var k key
		var count int64
		for rows.Next() {
			if err := rows.Scan(&k.installID, &k.feature, &count); err != nil {
				return err
			}
			j, ok := g.index[k]
			if !ok || g.found[j] {
				return errUnexpected
			}
			g.results[j] = result{count: count}
			g.inserted++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		return br.Close()
	})
}

func (s *Store) fail(batch []*request, err error) {
	s.failures.Add(1)
	for _, r := range batch {
		r.reply <- result{err: err}
	}
}
