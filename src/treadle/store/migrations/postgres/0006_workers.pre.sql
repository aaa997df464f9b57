-- treadle schema v6 (PostgreSQL): the workers that are alive and the graphs each serves.
-- "pre": only adds a table.
--
-- A worker upserts its row when it starts and on every heartbeat, and deletes it on a clean
-- stop; a row whose expires_at has passed is a dead worker (not listed, deleted by the next
-- registration).
CREATE TABLE IF NOT EXISTS treadle_workers (
    worker_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    graph_ids     TEXT[] NOT NULL DEFAULT '{}',
    allow_pickled BOOLEAN NOT NULL DEFAULT false,
    slots         INTEGER NOT NULL DEFAULT 0,
    running       INTEGER NOT NULL DEFAULT 0,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    expires_at    TIMESTAMPTZ NOT NULL
);
