"""Every SQL statement of the PostgreSQL backend, by name. Values are always bound.

Write statements are built so that one operation is one statement: a checkpoint
(thread touch + channel blobs + checkpoint row) or a task's writes go in as a single
statement with the rows passed as arrays and ``unnest``-ed server side. The writer
pipelines a whole batch (``BEGIN``, one statement per operation, ``COMMIT``) in one
network round trip.

Fenced variants (the operation carries a claim token) read the thread's epoch and
owner ``FOR SHARE`` inside the statement and only write when the owner is the
writer's token; they return the epoch and owner they saw, so the caller can tell a
refused write from an applied one. The share lock is held to the end of the batch
transaction, so a concurrent claim (which updates the row) waits for the batch instead
of slipping in between the check and the write. Each statement sees the effects of
the earlier ones in its batch: a write queued behind a claim is checked against it.
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
APPLIED_MIGRATIONS = "SELECT version FROM treadle_migrations"
RECORD_MIGRATION = "INSERT INTO treadle_migrations (version, name) VALUES (%s, %s)"
SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM treadle_migrations"

# --- batch transaction control (the writer runs with autocommit and pipelines these) --

BEGIN = "BEGIN"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"

# --- threads & fencing ------------------------------------------------------------

CLAIM_THREAD = """
INSERT INTO treadle_threads (thread_id, epoch, owner) VALUES (%(thread_id)s, 1, %(token)s)
ON CONFLICT (thread_id) DO UPDATE SET
    epoch = treadle_threads.epoch + 1,
    owner = EXCLUDED.owner,
    updated_at = now()
RETURNING epoch"""
THREAD_EPOCH = "SELECT epoch FROM treadle_threads WHERE thread_id = %s"

# Prefix of a fenced write: ``cur`` is the thread's row (none if the thread was never
# claimed), read under a share lock; ``ok`` has one row when the writer's token owns
# the thread, else none.
_FENCED = """
WITH cur AS (
    SELECT epoch, owner FROM treadle_threads WHERE thread_id = %(thread_id)s FOR SHARE
), ok AS (
    SELECT FROM cur WHERE cur.owner = %(token)s
)"""
_FENCED_RESULT = "\nSELECT epoch, owner FROM cur"
# Prefix of an unfenced write: ``ok`` always has one row.
_UNFENCED = "\nWITH ok AS (SELECT)"
_UNFENCED_RESULT = "\nSELECT NULL::bigint, NULL::text"

_PUT_CHECKPOINT_BODY = """,
touch AS (
    -- Only create a missing row: rewriting it each step would cost a tuple version and
    -- WAL per checkpoint. updated_at is stamped by each claim (one per execution).
    INSERT INTO treadle_threads (thread_id, epoch)
    SELECT %(thread_id)s, 0 FROM ok
    ON CONFLICT (thread_id) DO NOTHING
), blobs AS (
    INSERT INTO treadle_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT %(thread_id)s, %(checkpoint_ns)s, b.channel, b.version, b.type, b.blob
    FROM ok, unnest(%(channels)s::text[], %(versions)s::text[], %(types)s::text[],
                    %(blobs)s::bytea[]) AS b (channel, version, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
), checkpoint AS (
    INSERT INTO treadle_checkpoints
        (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type,
         checkpoint, channel_versions, metadata_type, metadata_blob, metadata)
    SELECT %(thread_id)s, %(checkpoint_ns)s, %(checkpoint_id)s, %(parent_checkpoint_id)s,
           %(run_id)s, %(type)s, %(checkpoint)s, %(channel_versions)s::jsonb,
           %(metadata_type)s, %(metadata_blob)s, %(metadata)s::jsonb
    FROM ok
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET
        parent_checkpoint_id = EXCLUDED.parent_checkpoint_id,
        run_id = EXCLUDED.run_id,
        type = EXCLUDED.type,
        checkpoint = EXCLUDED.checkpoint,
        channel_versions = EXCLUDED.channel_versions,
        metadata_type = EXCLUDED.metadata_type,
        metadata_blob = EXCLUDED.metadata_blob,
        metadata = EXCLUDED.metadata
)"""
PUT_CHECKPOINT = _UNFENCED + _PUT_CHECKPOINT_BODY + _UNFENCED_RESULT
PUT_CHECKPOINT_FENCED = _FENCED + _PUT_CHECKPOINT_BODY + _FENCED_RESULT

_PUT_WRITES_HEAD = """,
writes AS (
    INSERT INTO treadle_writes
        (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
    SELECT %(thread_id)s, %(checkpoint_ns)s, %(checkpoint_id)s,
           w.task_id, w.idx, w.channel, w.type, w.blob, w.task_path
    FROM ok, unnest(%(task_ids)s::text[], %(idxs)s::int[], %(channels)s::text[],
                    %(types)s::text[], %(blobs)s::bytea[], %(task_paths)s::text[])
         AS w (task_id, idx, channel, type, blob, task_path)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)"""
# Regular writes are kept as first written; special channels (errors, interrupts...) replace.
_KEEP = " DO NOTHING\n)"
_REPLACE = """ DO UPDATE SET
        channel = EXCLUDED.channel,
        type = EXCLUDED.type,
        blob = EXCLUDED.blob,
        task_path = EXCLUDED.task_path
)"""
PUT_WRITES_KEEP = _UNFENCED + _PUT_WRITES_HEAD + _KEEP + _UNFENCED_RESULT
PUT_WRITES_KEEP_FENCED = _FENCED + _PUT_WRITES_HEAD + _KEEP + _FENCED_RESULT
PUT_WRITES_REPLACE = _UNFENCED + _PUT_WRITES_HEAD + _REPLACE + _UNFENCED_RESULT
PUT_WRITES_REPLACE_FENCED = _FENCED + _PUT_WRITES_HEAD + _REPLACE + _FENCED_RESULT

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
