package app

import (
	"context"
	"log/slog"
	"time"
)

// Retention runs in small batches so a large backlog never holds the
// store's writer for long; the interval is short enough that rows go within
// a day of their expiry.
const (
	retentionBatch    = 500
	retentionInterval = time.Hour
	retentionPause    = 50 * time.Millisecond // between batches of one pass
)

// RunRetention deletes usage rows idle for longer than the retention
// (OFFLOAD_USAGE_RETENTION_DAYS): once at start, then every hour, until ctx
// ends. With retention 0 it returns at once.
func (a *App) RunRetention(ctx context.Context) {
	if a.retention <= 0 {
		return
	}
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		a.ExpireOnce(ctx, retentionPause)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ExpireOnce runs one retention pass: it deletes rows not updated since
// now−retention, a batch at a time, pausing between batches, and returns how
// many went. Errors are logged (content-free) and end the pass; the next
// pass retries.
func (a *App) ExpireOnce(ctx context.Context, pause time.Duration) int64 {
	before := a.clock.Now().Add(-a.retention)
	var total int64
	for ctx.Err() == nil {
		n, err := a.store.Expire(ctx, before, retentionBatch)
		total += n
		if n > 0 && a.metrics != nil {
			a.metrics.UsageExpired(int(n))
		}
		if err != nil {
			if ctx.Err() == nil {
				a.logger.Warn("usage_retention_failed", slog.String("error", err.Error()))
			}
			break
		}
		if n < retentionBatch {
			break
		}
		if pause > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}
	if total > 0 {
		a.logger.Info("usage_rows_expired", slog.Int64("rows", total), slog.Duration("retention", a.retention))
	}
	return total
}
