-- treadle schema v4 (PostgreSQL): the LangGraph Platform API resources
-- (treadle.store.resources): assistants and their versions, thread records, crons.
-- "pre": only adds tables.
--
-- JSON is jsonb; metadata filters use @> (GIN, jsonb_path_ops). Times are timestamptz from
-- the server's clock (clock_timestamp()), returned as Unix seconds, except a cron's
-- end_time and next_run_at: DOUBLE PRECISION, so the value read back is bit for bit the one
-- written and advance_cron's compare-and-set can compare it exactly. ``seq`` is the
-- creation order, the tie-breaker of every sort.
CREATE TABLE IF NOT EXISTS treadle_assistants (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    assistant_id TEXT PRIMARY KEY,
    graph_id     TEXT NOT NULL,
    config       JSONB NOT NULL DEFAULT '{}',
    context      JSONB NOT NULL DEFAULT '{}',
    metadata     JSONB NOT NULL DEFAULT '{}',
    name         TEXT NOT NULL DEFAULT '',
    description  TEXT,
    version      INTEGER NOT NULL DEFAULT 1,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS treadle_assistants_graph_id ON treadle_assistants (graph_id);
CREATE INDEX IF NOT EXISTS treadle_assistants_created_at ON treadle_assistants (created_at, seq);
CREATE INDEX IF NOT EXISTS treadle_assistants_metadata
    ON treadle_assistants USING gin (metadata jsonb_path_ops);
-- Every version's full record (the current one included).
CREATE TABLE IF NOT EXISTS treadle_assistant_versions (
    assistant_id TEXT NOT NULL,
    version      INTEGER NOT NULL,
    graph_id     TEXT NOT NULL,
    config       JSONB NOT NULL DEFAULT '{}',
    context      JSONB NOT NULL DEFAULT '{}',
    metadata     JSONB NOT NULL DEFAULT '{}',
    name         TEXT NOT NULL DEFAULT '',
    description  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (assistant_id, version)
);
-- The API's thread records (treadle_threads holds the checkpoint store's fencing state).
CREATE TABLE IF NOT EXISTS treadle_thread_records (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    thread_id    TEXT PRIMARY KEY,
    metadata     JSONB NOT NULL DEFAULT '{}',
    status       TEXT NOT NULL DEFAULT 'idle' CHECK (status IN
                     ('idle', 'busy', 'interrupted', 'error')),
    state_values JSONB,
    interrupts   JSONB NOT NULL DEFAULT '{}',
    config       JSONB NOT NULL DEFAULT '{}',
    error        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS treadle_thread_records_status ON treadle_thread_records (status);
CREATE INDEX IF NOT EXISTS treadle_thread_records_created_at
    ON treadle_thread_records (created_at, seq);
CREATE INDEX IF NOT EXISTS treadle_thread_records_metadata
    ON treadle_thread_records USING gin (metadata jsonb_path_ops);
CREATE TABLE IF NOT EXISTS treadle_crons (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    cron_id      TEXT PRIMARY KEY,
    assistant_id TEXT NOT NULL,
    thread_id    TEXT,
    schedule     TEXT NOT NULL,
    payload      JSONB NOT NULL DEFAULT '{}',
    metadata     JSONB NOT NULL DEFAULT '{}',
    end_time     DOUBLE PRECISION,
    next_run_at  DOUBLE PRECISION,
    enabled      BOOLEAN NOT NULL DEFAULT true,
    user_id      TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
-- The scheduler: enabled crons by next tick.
CREATE INDEX IF NOT EXISTS treadle_crons_due ON treadle_crons (next_run_at) WHERE enabled;
CREATE INDEX IF NOT EXISTS treadle_crons_assistant_id ON treadle_crons (assistant_id);
CREATE INDEX IF NOT EXISTS treadle_crons_thread_id ON treadle_crons (thread_id);
