-- treadle schema v3 (SQLite): the LangGraph Platform API resources (treadle.store.resources):
-- assistants and their versions, thread records, crons.
-- JSON is TEXT written with sorted keys, so equal objects have equal text (metadata filters
-- compare nested values as text). Times are REAL Unix seconds from SQLite's clock. ``seq``
-- (the rowid) is the creation order, the tie-breaker of every sort.
CREATE TABLE IF NOT EXISTS treadle_assistants (
    seq          INTEGER PRIMARY KEY,
    assistant_id TEXT NOT NULL UNIQUE,
    graph_id     TEXT NOT NULL,
    config       TEXT NOT NULL DEFAULT '{}',
    context      TEXT NOT NULL DEFAULT '{}',
    metadata     TEXT NOT NULL DEFAULT '{}',
    name         TEXT NOT NULL DEFAULT '',
    description  TEXT,
    version      INTEGER NOT NULL DEFAULT 1,
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
CREATE INDEX IF NOT EXISTS treadle_assistants_graph_id ON treadle_assistants (graph_id);
CREATE INDEX IF NOT EXISTS treadle_assistants_created_at ON treadle_assistants (created_at);
-- Every version's full record (the current one included).
CREATE TABLE IF NOT EXISTS treadle_assistant_versions (
    assistant_id TEXT NOT NULL,
    version      INTEGER NOT NULL,
    graph_id     TEXT NOT NULL,
    config       TEXT NOT NULL DEFAULT '{}',
    context      TEXT NOT NULL DEFAULT '{}',
    metadata     TEXT NOT NULL DEFAULT '{}',
    name         TEXT NOT NULL DEFAULT '',
    description  TEXT,
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    PRIMARY KEY (assistant_id, version)
) WITHOUT ROWID;
-- The API's thread records (treadle_threads holds the checkpoint store's fencing state).
CREATE TABLE IF NOT EXISTS treadle_thread_records (
    seq          INTEGER PRIMARY KEY,
    thread_id    TEXT NOT NULL UNIQUE,
    metadata     TEXT NOT NULL DEFAULT '{}',
    status       TEXT NOT NULL DEFAULT 'idle' CHECK (status IN
                     ('idle', 'busy', 'interrupted', 'error')),
    state_values TEXT,
    interrupts   TEXT NOT NULL DEFAULT '{}',
    config       TEXT NOT NULL DEFAULT '{}',
    error        TEXT,
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
CREATE INDEX IF NOT EXISTS treadle_thread_records_status ON treadle_thread_records (status);
CREATE INDEX IF NOT EXISTS treadle_thread_records_created_at
    ON treadle_thread_records (created_at);
CREATE TABLE IF NOT EXISTS treadle_crons (
    seq          INTEGER PRIMARY KEY,
    cron_id      TEXT NOT NULL UNIQUE,
    assistant_id TEXT NOT NULL,
    thread_id    TEXT,
    schedule     TEXT NOT NULL,
    payload      TEXT NOT NULL DEFAULT '{}',
    metadata     TEXT NOT NULL DEFAULT '{}',
    end_time     REAL,
    next_run_at  REAL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    user_id      TEXT,
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
-- The scheduler: enabled crons by next tick.
CREATE INDEX IF NOT EXISTS treadle_crons_due ON treadle_crons (next_run_at) WHERE enabled;
CREATE INDEX IF NOT EXISTS treadle_crons_assistant_id ON treadle_crons (assistant_id);
CREATE INDEX IF NOT EXISTS treadle_crons_thread_id ON treadle_crons (thread_id);
