-- treadle schema v5 (PostgreSQL): LangGraph's long-term memory store (treadle.store.items).
-- "pre": only adds a table.
--
-- namespace is the labels joined by '.' in the "C" collation, so a namespace prefix is a
-- bytewise range (index-friendly, and the listing order is the same as SQLite's).
-- ttl_minutes is the TTL a read refreshes expires_at with.
CREATE TABLE IF NOT EXISTS treadle_items (
    namespace   TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    value       JSONB NOT NULL CHECK (jsonb_typeof(value) = 'object'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    ttl_minutes DOUBLE PRECISION,
    expires_at  TIMESTAMPTZ,
    PRIMARY KEY (namespace, key)
);
-- The sweeper: items with a TTL, by expiry.
CREATE INDEX IF NOT EXISTS treadle_items_expires
    ON treadle_items (expires_at) WHERE expires_at IS NOT NULL;
