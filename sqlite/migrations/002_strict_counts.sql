-- Only counts and timestamps, never content. STRICT makes SQLite refuse a
-- non-integer count, so an overflowing increment (which SQLite would turn into
-- a REAL) fails instead of storing an inexact number. Timestamps are RFC 3339
-- UTC with second precision.
CREATE TABLE usage_counts_v2 (
    install_id TEXT NOT NULL,
    feature TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count >= 0),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (install_id, feature)
) STRICT, WITHOUT ROWID;

INSERT INTO usage_counts_v2 (install_id, feature, count, created_at, updated_at)
SELECT
    CAST(install_id AS TEXT),
    CAST(feature AS TEXT),
    max(0, CAST(count AS INTEGER)),
    coalesce(strftime('%Y-%m-%dT%H:%M:%SZ', updated_at), strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    coalesce(strftime('%Y-%m-%dT%H:%M:%SZ', updated_at), strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
FROM usage_counts;

DROP TABLE usage_counts;

ALTER TABLE usage_counts_v2 RENAME TO usage_counts;
