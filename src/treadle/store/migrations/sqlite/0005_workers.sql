-- treadle schema v5 (SQLite): the workers that are alive and the graphs each serves.
-- A worker upserts its row when it starts and on every heartbeat, and deletes it on a clean
-- stop; a row whose expires_at has passed is a dead worker (not listed, deleted by the next
-- registration). graph_ids is a JSON array of "ref:<name>" ids.
CREATE TABLE IF NOT EXISTS treadle_workers (
    worker_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    graph_ids     TEXT NOT NULL DEFAULT '[]',
    allow_pickled INTEGER NOT NULL DEFAULT 0,
    slots         INTEGER NOT NULL DEFAULT 0,
    running       INTEGER NOT NULL DEFAULT 0,
    started_at    REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    heartbeat_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    expires_at    REAL NOT NULL
);
