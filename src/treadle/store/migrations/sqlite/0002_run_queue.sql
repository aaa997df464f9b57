-- treadle schema v2 (SQLite): the run queue (runs, node tasks, stream events, shipped graphs).
-- Times are REAL Unix seconds from SQLite's clock (no unixepoch('subsec') before 3.42).
-- Runs and tasks are rowid tables whose AUTOINCREMENT seq is their queue order: never
-- reused, strictly increasing, so "oldest first" is exact.
CREATE TABLE IF NOT EXISTS treadle_runs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id           TEXT NOT NULL UNIQUE,
    thread_id        TEXT NOT NULL,
    graph_id         TEXT NOT NULL,
    payload          BLOB NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                         ('pending', 'running', 'success', 'error', 'interrupted', 'cancelled',
                          'timeout')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3,
    epoch            INTEGER NOT NULL DEFAULT 0,
    worker           TEXT,
    lease_expires_at REAL,
    timeout_s        REAL,
    stream           INTEGER NOT NULL DEFAULT 0,
    cancel           TEXT,
    metadata         TEXT NOT NULL DEFAULT '{}',
    result           BLOB,
    error            TEXT,
    created_at       REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    started_at       REAL,
    ended_at         REAL
);
-- The hard guarantee: at most one running run per thread.
CREATE UNIQUE INDEX IF NOT EXISTS treadle_runs_one_running
    ON treadle_runs (thread_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS treadle_runs_claim ON treadle_runs (status, seq);
CREATE INDEX IF NOT EXISTS treadle_runs_thread ON treadle_runs (thread_id, status);
CREATE TABLE IF NOT EXISTS treadle_tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    task_key         TEXT NOT NULL UNIQUE,
    run_id           TEXT NOT NULL,
    thread_id        TEXT NOT NULL,
    graph_id         TEXT NOT NULL,
    node             TEXT NOT NULL,
    payload          BLOB NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                         ('pending', 'running', 'success', 'error')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3,
    epoch            INTEGER NOT NULL DEFAULT 0,
    worker           TEXT,
    lease_expires_at REAL,
    result           BLOB,
    error            TEXT,
    created_at       REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    ended_at         REAL
);
CREATE INDEX IF NOT EXISTS treadle_tasks_claim ON treadle_tasks (status, seq);
CREATE INDEX IF NOT EXISTS treadle_tasks_run_id ON treadle_tasks (run_id);
CREATE TABLE IF NOT EXISTS treadle_events (
    run_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS treadle_graphs (
    graph_id   TEXT PRIMARY KEY,
    blob       BLOB NOT NULL,
    created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
