-- treadle schema v1 (PostgreSQL): threads with fencing epochs and owner tokens, checkpoints, channel blobs, task writes.
-- "pre": safe to apply before new code rolls out (only adds objects).
CREATE TABLE IF NOT EXISTS treadle_threads (
    thread_id   TEXT PRIMARY KEY,
    epoch       BIGINT NOT NULL DEFAULT 0,
    owner       TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS treadle_checkpoints (
    thread_id            TEXT NOT NULL,
    checkpoint_ns        TEXT NOT NULL DEFAULT '',
    checkpoint_id        TEXT COLLATE "C" NOT NULL,
    parent_checkpoint_id TEXT COLLATE "C",
    run_id               TEXT,
    type                 TEXT NOT NULL,
    checkpoint           BYTEA NOT NULL,
    channel_versions     JSONB NOT NULL DEFAULT '{}',
    metadata_type        TEXT NOT NULL,
    metadata_blob        BYTEA NOT NULL,
    metadata             JSONB NOT NULL DEFAULT '{}',
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE INDEX IF NOT EXISTS treadle_checkpoints_run_id ON treadle_checkpoints (run_id);
CREATE TABLE IF NOT EXISTS treadle_blobs (
    thread_id     TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel       TEXT NOT NULL,
    version       TEXT NOT NULL,
    type          TEXT NOT NULL,
    blob          BYTEA,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);
CREATE TABLE IF NOT EXISTS treadle_writes (
    thread_id     TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT COLLATE "C" NOT NULL,
    task_id       TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    channel       TEXT NOT NULL,
    type          TEXT,
    blob          BYTEA,
    task_path     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
