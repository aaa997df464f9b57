-- treadle schema v9 (PostgreSQL): the built-in auth's API keys (treadle.store.api_keys).
-- "pre": only adds a table.
--
-- A key is shown once, as tdl_<key_id>_<secret>; only the SHA-256 of its secret is kept
-- (hash, hex). revoked_at: when it was revoked (NULL while it is valid). Times are
-- timestamptz from the server's clock, returned as Unix seconds; ``seq`` is the creation order.
CREATE TABLE IF NOT EXISTS treadle_api_keys (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    key_id     TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    role       TEXT NOT NULL,
    name       TEXT,
    hash       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    revoked_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS treadle_api_keys_tenant_id ON treadle_api_keys (tenant_id, seq);
