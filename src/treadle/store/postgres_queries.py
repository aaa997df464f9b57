"""Every SQL statement of the PostgreSQL backend, by name. Values are always bound.

Writes go through one function, ``treadle_apply`` (first defined by the migration
``0002_apply_function.pre.sql``, replaced by ``0003_run_queue.pre.sql``), called once per
group-commit batch; reads are
single queries that return a checkpoint with its blobs and pending writes. The run
queue's statements are in ``sql/postgres.sql``.
"""


# --- migrations ----------------------------------------------------------------

#: pg_advisory_xact_lock key serialising ``migrate()`` across processes ("treadle" in ASCII).
MIGRATION_LOCK_KEY = 0x74726561646C65
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(%s)"
CREATE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS treadle_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
APPLIED_MIGRATIONS = "SELECT version, name FROM treadle_migrations"
RECORD_MIGRATION = "INSERT INTO treadle_migrations (version, name) VALUES (%s, %s)"
SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM treadle_migrations"

# --- writes ----------------------------------------------------------------------------
# The group committer applies a whole batch (claims, checkpoints, task writes) with one
# call of treadle_apply (migrations 0002, 0003), passing the operations as one JSON document:
# one statement, so one transaction under autocommit and one round trip. Fencing is
# checked inside it, per operation, against the thread row read FOR SHARE.
APPLY_BATCH = "SELECT treadle_apply(%s::jsonb)"

THREAD_EPOCH = "SELECT epoch FROM treadle_threads WHERE thread_id = %s"

# --- reads ---------------------------------------------------------------------------
# A checkpoint comes back in one row with the blobs it references and its pending
# writes as parallel arrays, so reading one is one round trip, and so is a list.
# The checkpoints are selected (filtered, ordered, limited) in an inner query first;
# the outer one only fetches blobs and writes for the rows that survive.

_CHECKPOINT_COLUMNS = """thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id,
    type, checkpoint, channel_versions, metadata_type, metadata_blob, metadata"""
_RECORD_HEAD = """
SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, c.run_id, c.type,
       c.checkpoint, c.channel_versions::text, c.metadata_type, c.metadata_blob, c.metadata::text,
       bl.channels, bl.versions, bl.types, bl.blobs,
       wr.task_ids, wr.idxs, wr.channels, wr.types, wr.blobs, wr.task_paths
FROM ("""
_RECORD_TAIL = """) AS c
CROSS JOIN LATERAL (
    SELECT array_agg(b.channel) AS channels, array_agg(b.version) AS versions,
           array_agg(b.type) AS types, array_agg(b.blob) AS blobs
    FROM jsonb_each_text(c.channel_versions) AS v
    JOIN treadle_blobs b
      ON b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
     AND b.channel = v.key AND b.version = v.value
) AS bl
CROSS JOIN LATERAL (
    SELECT array_agg(w.task_id ORDER BY w.task_id, w.idx) AS task_ids,
           array_agg(w.idx ORDER BY w.task_id, w.idx) AS idxs,
           array_agg(w.channel ORDER BY w.task_id, w.idx) AS channels,
           array_agg(w.type ORDER BY w.task_id, w.idx) AS types,
           array_agg(w.blob ORDER BY w.task_id, w.idx) AS blobs,
           array_agg(w.task_path ORDER BY w.task_id, w.idx) AS task_paths
    FROM treadle_writes w
    WHERE w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
      AND w.checkpoint_id = c.checkpoint_id
) AS wr
ORDER BY c.checkpoint_id DESC"""

GET_CHECKPOINT_BY_ID = (
    _RECORD_HEAD
    + f"""
    SELECT {_CHECKPOINT_COLUMNS} FROM treadle_checkpoints
    WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s
"""
    + _RECORD_TAIL
)
GET_LATEST_CHECKPOINT = (
    _RECORD_HEAD
    + f"""
    SELECT {_CHECKPOINT_COLUMNS} FROM treadle_checkpoints
    WHERE thread_id = %s AND checkpoint_ns = %s
    ORDER BY checkpoint_id DESC LIMIT 1
"""
    + _RECORD_TAIL
)

# The list query is assembled from these fixed fragments; values stay bound:
# LIST_HEAD + [" WHERE " + " AND ".join(LIST_WHERE_*)] + LIST_ORDER + [LIST_LIMIT] + LIST_TAIL
LIST_HEAD = _RECORD_HEAD + f"\n    SELECT {_CHECKPOINT_COLUMNS} FROM treadle_checkpoints"
LIST_WHERE_THREAD = "thread_id = %s"
LIST_WHERE_NS = "checkpoint_ns = %s"
LIST_WHERE_BEFORE = "checkpoint_id < %s"
LIST_WHERE_METADATA = "metadata @> %s::jsonb"
# A filter value of None matches a null or a missing key, as with SQLite's json_extract.
LIST_WHERE_METADATA_NULL = "coalesce(metadata -> %s::text, 'null'::jsonb) = 'null'::jsonb"
LIST_ORDER = " ORDER BY checkpoint_id DESC"
LIST_LIMIT = " LIMIT %s"
LIST_TAIL = "\n" + _RECORD_TAIL

LIST_THREADS = """
SELECT t.thread_id, t.epoch,
       to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       (SELECT count(*) FROM treadle_checkpoints c WHERE c.thread_id = t.thread_id),
       (SELECT max(c.checkpoint_id) FROM treadle_checkpoints c
         WHERE c.thread_id = t.thread_id AND c.checkpoint_ns = '')
FROM treadle_threads t
WHERE EXISTS (SELECT 1 FROM treadle_checkpoints c WHERE c.thread_id = t.thread_id)
ORDER BY t.updated_at DESC LIMIT %s"""

# --- maintenance (thread ids and run ids are passed as arrays) ------------------------

# Deleting a thread also bumps its epoch and drops its owner, fencing any writer still
# running on it.
FENCE_THREADS = """
UPDATE treadle_threads SET epoch = epoch + 1, owner = NULL WHERE thread_id = ANY(%s::text[])"""
DELETE_THREADS_WRITES = "DELETE FROM treadle_writes WHERE thread_id = ANY(%s::text[])"
DELETE_THREADS_BLOBS = "DELETE FROM treadle_blobs WHERE thread_id = ANY(%s::text[])"
DELETE_THREADS_CHECKPOINTS = "DELETE FROM treadle_checkpoints WHERE thread_id = ANY(%s::text[])"

DELETE_RUNS_WRITES = """
DELETE FROM treadle_writes w USING treadle_checkpoints c
WHERE c.run_id = ANY(%s::text[]) AND c.thread_id = w.thread_id
  AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id"""
DELETE_RUNS_CHECKPOINTS = "DELETE FROM treadle_checkpoints WHERE run_id = ANY(%s::text[])"

COPY_THREAD_ROW = """
INSERT INTO treadle_threads (thread_id, epoch) VALUES (%s, 0) ON CONFLICT (thread_id) DO NOTHING"""
COPY_CHECKPOINTS = f"""
INSERT INTO treadle_checkpoints ({_CHECKPOINT_COLUMNS})
SELECT %s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type, checkpoint,
       channel_versions, metadata_type, metadata_blob, metadata
FROM treadle_checkpoints WHERE thread_id = %s
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET
    parent_checkpoint_id = EXCLUDED.parent_checkpoint_id,
    run_id = EXCLUDED.run_id,
    type = EXCLUDED.type,
    checkpoint = EXCLUDED.checkpoint,
    channel_versions = EXCLUDED.channel_versions,
    metadata_type = EXCLUDED.metadata_type,
    metadata_blob = EXCLUDED.metadata_blob,
    metadata = EXCLUDED.metadata"""
COPY_BLOBS = """
INSERT INTO treadle_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT %s, checkpoint_ns, channel, version, type, blob FROM treadle_blobs WHERE thread_id = %s
ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO UPDATE SET
    type = EXCLUDED.type,
    blob = EXCLUDED.blob"""
COPY_WRITES = """
INSERT INTO treadle_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
SELECT %s, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path
FROM treadle_writes WHERE thread_id = %s
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET
    channel = EXCLUDED.channel,
    type = EXCLUDED.type,
    blob = EXCLUDED.blob,
    task_path = EXCLUDED.task_path"""

# keep_latest: the newest checkpoint of each (thread, namespace), its writes, and the
# blobs it references survive.
PRUNE_CHECKPOINTS = """
DELETE FROM treadle_checkpoints c
WHERE c.thread_id = ANY(%s::text[]) AND c.checkpoint_id < (
    SELECT max(k.checkpoint_id) FROM treadle_checkpoints k
    WHERE k.thread_id = c.thread_id AND k.checkpoint_ns = c.checkpoint_ns)"""
PRUNE_WRITES = """
DELETE FROM treadle_writes w
WHERE w.thread_id = ANY(%s::text[]) AND NOT EXISTS (
    SELECT 1 FROM treadle_checkpoints c
    WHERE c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns
      AND c.checkpoint_id = w.checkpoint_id)"""
PRUNE_BLOBS = """
DELETE FROM treadle_blobs b
WHERE b.thread_id = ANY(%s::text[]) AND NOT EXISTS (
    SELECT 1 FROM treadle_checkpoints c, jsonb_each_text(c.channel_versions) AS v
    WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
      AND v.key = b.channel AND v.value = b.version)"""

# --- worker sessions (postgres_session.py) --------------------------------------------
# A worker's session lock (WorkerSession): taken once on its dedicated connection.
TAKE_SESSION_LOCK = "SELECT pg_try_advisory_lock(%s::bigint)"
SESSION_PING = "SELECT 1"
