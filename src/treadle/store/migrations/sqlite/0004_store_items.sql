-- treadle schema v4 (SQLite): LangGraph's long-term memory store (treadle.store.items).
-- namespace is the labels joined by '.', labels the same as a JSON array (wildcard matches
-- in namespace listings). value is JSON object TEXT with sorted keys, so equal objects have
-- equal text. Times are REAL Unix seconds from SQLite's clock; ttl_minutes is the TTL a
-- read refreshes expires_at with.
CREATE TABLE IF NOT EXISTS treadle_items (
    namespace   TEXT NOT NULL,
    labels      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL CHECK (json_type(value) = 'object'),
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    ttl_minutes REAL,
    expires_at  REAL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
-- The sweeper: items with a TTL, by expiry.
CREATE INDEX IF NOT EXISTS treadle_items_expires
    ON treadle_items (expires_at) WHERE expires_at IS NOT NULL;
