-- A usage database as the earlier Python deployment wrote it: its own
-- CREATE TABLE, user_version 0, CURRENT_TIMESTAMP-style timestamps.
CREATE TABLE IF NOT EXISTS usage_counts (
    install_id TEXT NOT NULL,
    feature TEXT NOT NULL,
    count INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (install_id, feature)
);
INSERT INTO usage_counts (install_id, feature, count, updated_at) VALUES
    ('install-python-1', 'breakdown', 17, '2025-11-02 08:15:30'),
    ('install-python-1', 'braindump', 3, '2025-11-03 09:00:00'),
    ('install-python-2', 'breakdown', 250, '2025-12-24 23:59:59');
