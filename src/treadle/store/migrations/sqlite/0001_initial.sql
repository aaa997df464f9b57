-- treadle schema v1 (SQLite): threads with fencing epochs and owner tokens, checkpoints, channel blobs, task writes.
-- WITHOUT ROWID: every table is looked up by its text key, which then is the only B-tree
-- (a rowid table would keep a second one for the key, and write both on every step).
CREATE TABLE IF NOT EXISTS treadle_threads (
    thread_id   TEXT PRIMARY KEY,
    epoch       INTEGER NOT NULL DEFAULT 0,
    owner       TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS treadle_checkpoints (
    thread_id            TEXT NOT NULL,
    checkpoint_ns        TEXT NOT NULL DEFAULT '',
    checkpoint_id        TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    run_id               TEXT,
    type                 TEXT NOT NULL,
    checkpoint           BLOB NOT NULL,
    channel_versions     TEXT NOT NULL DEFAULT '{}',
    metadata_type        TEXT NOT NULL,
    metadata_blob        BLOB NOT NULL,
    metadata             TEXT NOT NULL DEFAULT '{}',
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS treadle_checkpoints_run_id ON treadle_checkpoints (run_id);
CREATE TABLE IF NOT EXISTS treadle_blobs (
    thread_id     TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel       TEXT NOT NULL,
    version       TEXT NOT NULL,
    type          TEXT NOT NULL,
    blob          BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS treadle_writes (
    thread_id     TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    channel       TEXT NOT NULL,
    type          TEXT,
    blob          BLOB,
    task_path     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
) WITHOUT ROWID;
