-- treadle schema v8 (SQLite): the built-in auth's API keys (treadle.store.api_keys).
-- A key is shown once, as tdl_<key_id>_<secret>; only the SHA-256 of its secret is kept
-- (hash, hex). revoked_at: when it was revoked (NULL while it is valid). Times are REAL Unix
-- seconds from SQLite's clock; ``seq`` (the rowid) is the creation order.
CREATE TABLE IF NOT EXISTS treadle_api_keys (
    seq        INTEGER PRIMARY KEY,
    key_id     TEXT NOT NULL UNIQUE,
    tenant_id  TEXT NOT NULL,
    role       TEXT NOT NULL,
    name       TEXT,
    hash       TEXT NOT NULL,
    created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS treadle_api_keys_tenant_id ON treadle_api_keys (tenant_id, seq);
