-- The table becomes usable by the Python deployment's own statements again,
-- so both can run on one file (blue/green) and an operator can go back:
-- they insert (install_id, feature, count) only and set
-- updated_at = CURRENT_TIMESTAMP, so both timestamps get that default.
--
-- Timestamps are SQLite's CURRENT_TIMESTAMP format, 'YYYY-MM-DD HH:MM:SS' in
-- UTC, for our rows as for Python's: one format on every row is what lets
-- retention compare updated_at as text and walk an index on it. Rows written
-- in RFC 3339 by migration 002 are converted.
--
-- STRICT (a count that overflowed into a REAL is refused) and the CHECK stay:
-- the Python statements never store anything they refuse. STRICT needs
-- SQLite 3.37 or newer in every program that opens the file.
CREATE TABLE usage_counts_v3 (
    install_id TEXT NOT NULL,
    feature TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count >= 0),
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (install_id, feature)
) STRICT, WITHOUT ROWID;

INSERT INTO usage_counts_v3 (install_id, feature, count, created_at, updated_at)
SELECT
    install_id,
    feature,
    count,
    coalesce(strftime('%Y-%m-%d %H:%M:%S', created_at), CURRENT_TIMESTAMP),
    coalesce(strftime('%Y-%m-%d %H:%M:%S', updated_at), CURRENT_TIMESTAMP)
FROM usage_counts;

DROP TABLE usage_counts;

ALTER TABLE usage_counts_v3 RENAME TO usage_counts;

-- Retention deletes the oldest rows first, a few at a time, without a scan.
CREATE INDEX usage_counts_updated_at ON usage_counts (updated_at);
