"""Every SQL statement of the SQLite backend, by name. Values are always bound."""

CREATE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS treadle_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)"""
APPLIED_MIGRATIONS = "SELECT version, name FROM treadle_migrations"
RECORD_MIGRATION = "INSERT INTO treadle_migrations (version, name) VALUES (?, ?)"

CLAIM_THREAD = """
INSERT INTO treadle_threads (thread_id, epoch, owner) VALUES (?, 1, ?)
ON CONFLICT (thread_id) DO UPDATE SET
    epoch = treadle_threads.epoch + 1,
    owner = excluded.owner,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
RETURNING epoch"""
THREAD_EPOCH = "SELECT epoch FROM treadle_threads WHERE thread_id = ?"
THREAD_OWNER = "SELECT epoch, owner FROM treadle_threads WHERE thread_id = ?"
# Only create a missing row; updated_at is stamped by each claim (one per execution).
# Batch inserts: a head ending in VALUES, completed by ``values(rows, columns)`` with one
# "(?, ...)" group per row. One statement per batch matters: Python's sqlite3 releases
# and re-takes the GIL around every row of an executemany, and under a busy event loop
# each re-take can wait a whole switch interval (measured: 400 rows, 407 ms vs 25 ms).
TOUCH_THREADS_HEAD = "INSERT OR IGNORE INTO treadle_threads (thread_id, epoch) VALUES "
TOUCH_THREADS_ROW = "(?, 0)"
UPSERT_CHECKPOINTS_HEAD = """
INSERT OR REPLACE INTO treadle_checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type, checkpoint,
     channel_versions, metadata_type, metadata_blob, metadata)
VALUES """
UPSERT_BLOBS_HEAD = """
INSERT OR IGNORE INTO treadle_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
VALUES """
INSERT_WRITES_KEEP_HEAD = """
INSERT OR IGNORE INTO treadle_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
VALUES """
INSERT_WRITES_REPLACE_HEAD = """
INSERT OR REPLACE INTO treadle_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
VALUES """


def values(rows: int, columns: int) -> str:
    """``(?, ?), (?, ?)`` for ``rows`` rows of ``columns`` placeholders (no values)."""
    group = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([group] * rows)


CHECKPOINT_COLUMNS = """thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type,
    checkpoint, channel_versions, metadata_type, metadata_blob, metadata"""
GET_CHECKPOINT_BY_ID = f"""
SELECT {CHECKPOINT_COLUMNS} FROM treadle_checkpoints
WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"""
GET_LATEST_CHECKPOINT = f"""
SELECT {CHECKPOINT_COLUMNS} FROM treadle_checkpoints
WHERE thread_id = ? AND checkpoint_ns = ?
ORDER BY checkpoint_id DESC LIMIT 1"""
# The list query is assembled from these fixed fragments; values stay bound.
LIST_CHECKPOINTS = f"SELECT {CHECKPOINT_COLUMNS} FROM treadle_checkpoints"
LIST_WHERE_THREAD = "thread_id = ?"
LIST_WHERE_NS = "checkpoint_ns = ?"
LIST_WHERE_BEFORE = "checkpoint_id < ?"
# A row whose metadata is not valid JSON (NaN) matches nothing rather than failing the list.
LIST_WHERE_METADATA = ("json_extract(CASE WHEN json_valid(metadata) THEN metadata END, ?) "
                       "IS json_extract(?, '$')")
LIST_ORDER = " ORDER BY checkpoint_id DESC"
LIST_LIMIT = " LIMIT ?"

GET_BLOBS = """
SELECT b.channel, b.version, b.type, b.blob
FROM treadle_blobs b, json_each(?) v
WHERE b.thread_id = ? AND b.checkpoint_ns = ? AND b.channel = v.key AND b.version = v.value"""
GET_WRITES = """
SELECT task_id, idx, channel, type, blob, task_path FROM treadle_writes
WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?
ORDER BY task_id, idx"""

LIST_THREADS = """
SELECT t.thread_id, t.epoch, t.created_at, t.updated_at,
       (SELECT count(*) FROM treadle_checkpoints c WHERE c.thread_id = t.thread_id),
       (SELECT max(checkpoint_id) FROM treadle_checkpoints c
         WHERE c.thread_id = t.thread_id AND c.checkpoint_ns = '')
FROM treadle_threads t
WHERE EXISTS (SELECT 1 FROM treadle_checkpoints c WHERE c.thread_id = t.thread_id)
ORDER BY t.updated_at DESC LIMIT ?"""

# Deleting a thread also bumps its epoch, fencing any writer still running on it.
FENCE_THREAD = "UPDATE treadle_threads SET epoch = epoch + 1, owner = NULL WHERE thread_id = ?"
DELETE_THREAD_CHECKPOINTS = "DELETE FROM treadle_checkpoints WHERE thread_id = ?"
DELETE_THREAD_BLOBS = "DELETE FROM treadle_blobs WHERE thread_id = ?"
DELETE_THREAD_WRITES = "DELETE FROM treadle_writes WHERE thread_id = ?"

DELETE_RUN_WRITES = """
DELETE FROM treadle_writes WHERE EXISTS (
    SELECT 1 FROM treadle_checkpoints c
    WHERE c.run_id = ? AND c.thread_id = treadle_writes.thread_id
      AND c.checkpoint_ns = treadle_writes.checkpoint_ns
      AND c.checkpoint_id = treadle_writes.checkpoint_id)"""
DELETE_RUN_CHECKPOINTS = "DELETE FROM treadle_checkpoints WHERE run_id = ?"

COPY_THREAD_ROW = """
INSERT INTO treadle_threads (thread_id, epoch) VALUES (?, 0) ON CONFLICT (thread_id) DO NOTHING"""
COPY_CHECKPOINTS = f"""
INSERT OR REPLACE INTO treadle_checkpoints ({CHECKPOINT_COLUMNS})
SELECT ?, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type, checkpoint,
       channel_versions, metadata_type, metadata_blob, metadata
FROM treadle_checkpoints WHERE thread_id = ?"""
COPY_BLOBS = """
INSERT OR REPLACE INTO treadle_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT ?, checkpoint_ns, channel, version, type, blob FROM treadle_blobs WHERE thread_id = ?"""
COPY_WRITES = """
INSERT OR REPLACE INTO treadle_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
SELECT ?, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path
FROM treadle_writes WHERE thread_id = ?"""

PRUNE_CHECKPOINTS = """
DELETE FROM treadle_checkpoints WHERE thread_id = ? AND checkpoint_id < (
    SELECT max(c.checkpoint_id) FROM treadle_checkpoints c
    WHERE c.thread_id = treadle_checkpoints.thread_id
      AND c.checkpoint_ns = treadle_checkpoints.checkpoint_ns)"""
PRUNE_WRITES = """
DELETE FROM treadle_writes WHERE thread_id = ? AND NOT EXISTS (
    SELECT 1 FROM treadle_checkpoints c
    WHERE c.thread_id = treadle_writes.thread_id AND c.checkpoint_ns = treadle_writes.checkpoint_ns
      AND c.checkpoint_id = treadle_writes.checkpoint_id)"""
PRUNE_BLOBS = """
DELETE FROM treadle_blobs WHERE thread_id = ? AND NOT EXISTS (
    SELECT 1 FROM treadle_checkpoints c, json_each(c.channel_versions) v
    WHERE c.thread_id = treadle_blobs.thread_id AND c.checkpoint_ns = treadle_blobs.checkpoint_ns
      AND v.key = treadle_blobs.channel AND v.value = treadle_blobs.version)"""


# A cluster run's thread claim is refused unless the run still runs under its epoch.
RUN_HOLDS_CLAIM = """
SELECT 1 FROM treadle_runs WHERE run_id = ? AND status = 'running' AND epoch = ?"""
