-- Only counts and timestamps, never content. Keys are COLLATE "C": compared
-- and ordered byte by byte, as SQLite does, so a copy between the stores
-- sees the same keys in the same order, and the primary key index serves
-- the (install_id, feature) order of a full listing.
CREATE TABLE usage_counts (
    install_id TEXT COLLATE "C" NOT NULL,
    feature TEXT COLLATE "C" NOT NULL,
    count BIGINT NOT NULL CHECK (count >= 0),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (install_id, feature)
);

-- Retention deletes rows not updated for a while, oldest first, in batches.
CREATE INDEX usage_counts_updated_at ON usage_counts (updated_at);
