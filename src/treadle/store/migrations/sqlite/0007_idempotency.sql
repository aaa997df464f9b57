-- treadle schema v7 (SQLite): idempotent run creation.
-- idempotency_key: the key a client created the run under (the HTTP API scopes it: see
-- treadle.server.idempotency); a second enqueue with the key returns this run instead of
-- queueing another. request_hash: a digest of the creating request, so the key reused for a
-- different request is refused rather than answered with the wrong run.
ALTER TABLE treadle_runs ADD COLUMN idempotency_key TEXT;
ALTER TABLE treadle_runs ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS treadle_runs_idempotency_key
    ON treadle_runs (idempotency_key) WHERE idempotency_key IS NOT NULL;
