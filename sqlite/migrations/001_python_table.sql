-- The table as the earlier Python deployment created it. A database file that
-- deployment wrote is at this version while its user_version is still 0, so
-- CREATE TABLE IF NOT EXISTS adopts such a file unchanged and the next
-- migration converts it like any other.
CREATE TABLE IF NOT EXISTS usage_counts (
    install_id TEXT NOT NULL,
    feature TEXT NOT NULL,
    count INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (install_id, feature)
);
