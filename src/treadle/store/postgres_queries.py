"""Every SQL statement of the PostgreSQL backend, by name. Values are always bound.

Writes go through one function, ``treadle_apply`` (first defined by the migration
``0002_apply_function.pre.sql``, replaced by ``0003_run_queue.pre.sql``), called once per
group-commit batch; reads are
single queries that return a checkpoint with its blobs and pending writes. The run
queue's statements are in the last section.
"""

from treadle.store.queue import (
    CANCEL_STATUS,
    CHANNEL_CANCEL,
    CHANNEL_EVENTS,
    CHANNEL_RUN_DONE,
    CHANNEL_RUNS,
    CHANNEL_TASK_DONE,
    CHANNEL_TASKS,
)

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

# --- run queue (treadle.store.queue.RunQueue; see postgres_queue.py) --------------------
# Tables and the functions treadle_enqueue_run / treadle_claim_run come from migration
# 0003_run_queue.pre.sql. Each statement below is one transaction (autocommit) unless
# postgres_queue.py wraps several in one. Notifications (pg_notify) are sent in the
# statement that makes the change, so they go out exactly when it commits. Times are
# timestamptz, returned as Unix seconds (float8); pg_notify's result (void) comes back as
# an extra last column where a statement notifies, and is ignored.

CLOCK = "SELECT extract(epoch FROM clock_timestamp())::float8"


def _seconds(column: str) -> str:
    return f"extract(epoch FROM {column})::float8"


# Columns in the order of the RunRow / TaskRow fields, from a relation aliased r / t.
RUN_ROW = f"""r.run_id, r.thread_id, r.graph_id, r.payload, r.status, r.attempt, r.max_attempts,
    r.epoch, r.worker, {_seconds('r.lease_expires_at')}, r.timeout_s, r.stream, r.cancel,
    r.metadata, r.result, r.error, {_seconds('r.created_at')}, {_seconds('r.started_at')},
    {_seconds('r.ended_at')}, r.lost_count"""
TASK_ROW = f"""t.task_key, t.run_id, t.thread_id, t.graph_id, t.node, t.payload, t.status,
    t.attempt, t.max_attempts, t.epoch, t.worker, {_seconds('t.lease_expires_at')}, t.result,
    t.error, {_seconds('t.created_at')}, {_seconds('t.ended_at')}"""

_LEASE = "clock_timestamp() + make_interval(secs => %(ttl)s::float8)"
# The graph filter of claims: graph ids listed, or pickled ones when allowed.
_GRAPH_FILTER = """(t.graph_id = ANY (%(graph_ids)s::text[])
       OR (%(allow_pickled)s::boolean AND starts_with(t.graph_id, 'pickle:')))"""


def _notify_next_run(alias: str) -> str:
    """Tell claimers about the next pending run of ``alias``'s thread, now free (if any)."""
    return f"""(SELECT pg_notify('{CHANNEL_RUNS}', n.run_id)::text FROM (
        SELECT p.run_id FROM treadle_runs p
        WHERE p.thread_id = {alias}.thread_id AND p.status = 'pending'
          AND p.run_id <> {alias}.run_id
        ORDER BY p.seq LIMIT 1) AS n)"""


# The multitask decision and the insert, atomically under the thread's row lock.
# A 'reject' refused raises SQLSTATE ENQUEUE_BUSY_STATE, active run ids (JSON) in DETAIL.
ENQUEUE_BUSY_STATE = "TRBSY"
# With an idempotency key (0008): the key's existing run, if any, instead of a new one; the
# stored request hash comes first for the caller to compare.
ENQUEUE_RUN = f"""
SELECT r.request_hash, {RUN_ROW} FROM treadle_enqueue_run(
    %s::text, %s::text, %s::text, %s::bytea, %s::integer, %s::float8, %s::boolean, %s::text,
    %s::text, %s::text, %s::text) AS r"""
CLAIM_RUN = f"""
SELECT {RUN_ROW}
FROM treadle_claim_run(%s::text, %s::text[], %s::boolean, %s::float8, %s::bigint) AS r"""

# Leases still held (same epoch, worker, running) are extended; the rows found come back
# as ('run', run_id, cancel) and ('task', task_key, NULL).
HEARTBEAT = f"""
WITH runs AS (
    UPDATE treadle_runs r SET lease_expires_at = {_LEASE}
    FROM unnest(%(run_ids)s::text[], %(run_epochs)s::bigint[]) AS h (run_id, epoch)
    WHERE r.run_id = h.run_id AND r.epoch = h.epoch AND r.worker = %(worker)s
      AND r.status = 'running'
    RETURNING r.run_id, r.cancel
), tasks AS (
    UPDATE treadle_tasks t SET lease_expires_at = {_LEASE}
    FROM unnest(%(task_keys)s::text[], %(task_epochs)s::bigint[]) AS h (task_key, epoch)
    WHERE t.task_key = h.task_key AND t.epoch = h.epoch AND t.worker = %(worker)s
      AND t.status = 'running'
    RETURNING t.task_key
)
SELECT 'run', run_id, cancel FROM runs
UNION ALL
SELECT 'task', task_key, NULL FROM tasks"""

# %s = status, result, error, run_id, epoch. One row when done (False when fenced).
FINISH_RUN = f"""
WITH done AS (
    UPDATE treadle_runs SET status = %s, result = %s, error = %s, worker = NULL,
        lease_expires_at = NULL, ended_at = clock_timestamp()
    WHERE run_id = %s AND epoch = %s AND status = 'running'
    RETURNING run_id, thread_id
)
SELECT d.run_id, pg_notify('{CHANNEL_RUN_DONE}', d.run_id)::text, {_notify_next_run('d')}
FROM done AS d"""
RELEASE_RUN = f"""
WITH released AS (
    UPDATE treadle_runs SET status = 'pending', worker = NULL, lease_expires_at = NULL,
        attempt = greatest(attempt - 1, 0)
    WHERE run_id = %s AND epoch = %s AND status = 'running'
    RETURNING run_id
)
SELECT run_id, pg_notify('{CHANNEL_RUNS}', run_id)::text FROM released"""
# %(final)s = CANCEL_STATUS[action]. A pending run ends at once (its thread's next run
# may now start); a running one gets the request and its worker is told.
CANCEL_RUN = f"""
WITH upd AS (
    UPDATE treadle_runs SET
        status = CASE WHEN status = 'pending' THEN %(final)s ELSE status END,
        ended_at = CASE WHEN status = 'pending' THEN clock_timestamp() ELSE ended_at END,
        cancel = %(action)s
    WHERE run_id = %(run_id)s AND status IN ('pending', 'running')
    RETURNING *
)
SELECT {RUN_ROW},
    CASE WHEN r.status = 'running' THEN pg_notify('{CHANNEL_CANCEL}', r.run_id)::text
         ELSE pg_notify('{CHANNEL_RUN_DONE}', r.run_id)::text || coalesce({_notify_next_run('r')}, '')
    END
FROM upd AS r"""
GET_RUN = f"SELECT {RUN_ROW} FROM treadle_runs AS r WHERE r.run_id = %s"
RUN_BY_KEY = f"SELECT r.request_hash, {RUN_ROW} FROM treadle_runs AS r WHERE r.idempotency_key = %s"
# list_runs is assembled from these fixed fragments; values stay bound.
LIST_RUNS = f"SELECT {RUN_ROW} FROM treadle_runs AS r"
LIST_RUNS_WHERE_THREAD = "r.thread_id = %s"
LIST_RUNS_WHERE_STATUS = "r.status = %s"
LIST_RUNS_ORDER = " ORDER BY r.seq DESC LIMIT %s OFFSET %s"
DELETE_RUN_TASKS = "DELETE FROM treadle_tasks WHERE run_id = %s"
DELETE_RUN_EVENTS = "DELETE FROM treadle_events WHERE run_id = %s"
DELETE_RUN = "DELETE FROM treadle_runs WHERE run_id = %s AND status NOT IN ('pending', 'running')"
PURGE_EVENTS = """
DELETE FROM treadle_events WHERE run_id IN (
    SELECT run_id FROM treadle_runs WHERE ended_at IS NOT NULL
    AND ended_at < clock_timestamp() - make_interval(secs => %s))
"""
# pending is what a KEDA postgresql scaler counts:
# SELECT count(*) FROM treadle_runs WHERE status = 'pending'
QUEUE_STATS = f"""
SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'running'),
    {_seconds("clock_timestamp() - min(created_at) FILTER (WHERE status = 'pending')")}
FROM treadle_runs WHERE status IN ('pending', 'running')"""

# Lost claims: an expired lease or, with %(check_sessions)s, a claimer's session lock
# (migration 0007) no longer held by any session: its worker died. pg_locks shows a
# pg_advisory_lock(bigint) key as classid (high 32 bits) and objid (low 32 bits),
# objsubid 1. Not within %(grace)s s (SESSION_GRACE) of the server's start: workers are
# taking their locks again after a restart. Rows another transaction holds are skipped (caught by the next sweep), so
# the sweeper never waits nor deadlocks. A run with a cancel request ends (its
# CANCEL_STATUS); its %(max_losses)s-th loss errors; any other goes back to pending, epoch
# unchanged (the next claim raises it). %(max_losses)s = TREADLE_MAX_WORKER_LOSSES.
_RUN_CANCEL_STATUS = (
    "CASE r.cancel "
    + " ".join(f"WHEN '{action}' THEN '{status}'" for action, status in CANCEL_STATUS.items())
    + " ELSE 'cancelled' END"
)
_SESSION_GONE = """(%(check_sessions)s::boolean AND {a}.worker_lock IS NOT NULL
           AND pg_postmaster_start_time()
               < clock_timestamp() - make_interval(secs => %(grace)s::float8)
           AND NOT EXISTS (
               SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                 AND l.database = (SELECT oid FROM pg_database
                                   WHERE datname = current_database())
                 AND ((l.classid::bigint << 32) | l.objid::bigint) = {a}.worker_lock))"""
_LOST = """CASE WHEN l.died THEN 'worker ' || coalesce({a}.worker, '?')
                || ' died (its database session ended)'
            ELSE 'lease of worker ' || coalesce({a}.worker, '?') || ' expired' END
        || ' on attempt ' || {a}.attempt"""
_GIVE_UP = "r.cancel IS NULL AND r.lost_count + 1 >= %(max_losses)s::integer"
SWEEP_RUNS = f"""
WITH lost AS (
    SELECT run_id, lease_expires_at >= clock_timestamp() AS died FROM treadle_runs r
    WHERE status = 'running'
      AND (lease_expires_at < clock_timestamp() OR {_SESSION_GONE.format(a='r')})
    FOR UPDATE SKIP LOCKED
), swept AS (
    UPDATE treadle_runs r SET
        status = CASE
            WHEN r.cancel IS NOT NULL THEN {_RUN_CANCEL_STATUS}
            WHEN {_GIVE_UP} THEN 'error'
            ELSE 'pending' END,
        error = CASE
            WHEN r.cancel IS NOT NULL THEN r.error
            WHEN {_GIVE_UP} THEN
                'the run''s worker died ' || (r.lost_count + 1)
                || ' times (killed, OOM or lost); giving up; last: '
                || {_LOST.format(a='r')} || coalesce('; previous error: ' || r.error, '')
            ELSE {_LOST.format(a='r')} || '; queued again' END,
        ended_at = CASE WHEN r.cancel IS NOT NULL OR {_GIVE_UP} THEN clock_timestamp() END,
        lost_count = r.lost_count + 1,
        worker = NULL,
        worker_lock = NULL,
        lease_expires_at = NULL
    FROM lost AS l
    WHERE r.run_id = l.run_id
    RETURNING r.run_id, r.thread_id, r.status
)
SELECT s.run_id, s.status, s.thread_id,
    CASE WHEN s.status = 'pending' THEN pg_notify('{CHANNEL_RUNS}', s.run_id)::text
         ELSE pg_notify('{CHANNEL_RUN_DONE}', s.run_id)::text || coalesce({_notify_next_run('s')}, '')
    END
FROM swept AS s"""
SWEEP_TASKS = f"""
WITH lost AS (
    SELECT task_key, lease_expires_at >= clock_timestamp() AS died FROM treadle_tasks t
    WHERE status = 'running'
      AND (lease_expires_at < clock_timestamp() OR {_SESSION_GONE.format(a='t')})
    FOR UPDATE SKIP LOCKED
), swept AS (
    UPDATE treadle_tasks t SET
        status = CASE WHEN t.attempt >= t.max_attempts THEN 'error' ELSE 'pending' END,
        error = {_LOST.format(a='t')} || ' of ' || t.max_attempts
            || CASE WHEN t.attempt >= t.max_attempts THEN ': giving up' ELSE '; queued again' END,
        ended_at = CASE WHEN t.attempt >= t.max_attempts THEN clock_timestamp() END,
        worker = NULL,
        worker_lock = NULL,
        lease_expires_at = NULL
    FROM lost AS l
    WHERE t.task_key = l.task_key
    RETURNING t.task_key, t.status
)
SELECT s.task_key, s.status,
    pg_notify(CASE WHEN s.status = 'pending' THEN '{CHANNEL_TASKS}' ELSE '{CHANNEL_TASK_DONE}' END,
              s.task_key)::text
FROM swept AS s"""
# A worker's session lock (WorkerSession): taken once on its dedicated connection.
TAKE_SESSION_LOCK = "SELECT pg_try_advisory_lock(%s::bigint)"
SESSION_PING = "SELECT 1"

# A new key is inserted; an 'error' row is reset to pending for the submitting run (the
# orchestrator retries it); the rows (re)queued come back (and are announced). When none
# does, the existing row is read by TASK_BY_KEY in a second statement: a fresh snapshot,
# which sees a row a concurrent submit just committed.
# %s = task_key, run_id, thread_id, graph_id, node, payload, max_attempts
SUBMIT_TASK = f"""
WITH queued AS (
    INSERT INTO treadle_tasks AS t
        (task_key, run_id, thread_id, graph_id, node, payload, max_attempts)
    VALUES (%s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (task_key) DO UPDATE SET
        status = 'pending', run_id = EXCLUDED.run_id, thread_id = EXCLUDED.thread_id,
        graph_id = EXCLUDED.graph_id, node = EXCLUDED.node, payload = EXCLUDED.payload,
        max_attempts = EXCLUDED.max_attempts, attempt = 0, worker = NULL,
        lease_expires_at = NULL, result = NULL, error = NULL, ended_at = NULL
    WHERE t.status = 'error' OR (t.status = 'pending' AND t.run_id IS DISTINCT FROM EXCLUDED.run_id)
    RETURNING *
)
SELECT {TASK_ROW}, pg_notify('{CHANNEL_TASKS}', t.task_key)::text FROM queued AS t"""
TASK_BY_KEY = f"SELECT {TASK_ROW} FROM treadle_tasks AS t WHERE t.task_key = %s"
CLAIM_TASKS = f"""
WITH picked AS (
    SELECT t.task_key FROM treadle_tasks t
    WHERE t.status = 'pending' AND {_GRAPH_FILTER}
      AND EXISTS (SELECT 1 FROM treadle_runs r
                  WHERE r.run_id = t.run_id AND r.status = 'running')
    ORDER BY t.seq
    LIMIT %(limit)s
    FOR UPDATE OF t SKIP LOCKED
), claimed AS (
    UPDATE treadle_tasks t SET
        status = 'running', worker = %(worker)s, worker_lock = %(lock)s::bigint,
        epoch = t.epoch + 1, attempt = t.attempt + 1, lease_expires_at = {_LEASE}
    FROM picked AS p
    WHERE t.task_key = p.task_key
    RETURNING t.*
)
SELECT {TASK_ROW} FROM claimed AS t ORDER BY t.seq"""
# %s = status, result, error, task_key, epoch
FINISH_TASK = f"""
WITH done AS (
    UPDATE treadle_tasks SET status = %s, result = %s, error = %s, worker = NULL,
        worker_lock = NULL, lease_expires_at = NULL, ended_at = clock_timestamp()
    WHERE task_key = %s AND epoch = %s AND status = 'running'
    RETURNING task_key
)
SELECT task_key, pg_notify('{CHANNEL_TASK_DONE}', task_key)::text FROM done"""
GET_TASKS = f"""
SELECT {TASK_ROW} FROM treadle_tasks AS t
WHERE t.task_key = ANY (%s::text[]) ORDER BY t.seq"""
LIST_TASKS = f"SELECT {TASK_ROW} FROM treadle_tasks AS t WHERE t.run_id = %s ORDER BY t.seq"

# Events are appended only while the run's epoch is the writer's; the run row is read
# FOR SHARE, so a claim raising the epoch waits for this statement (and then fences the
# next one). A seq already stored is kept as first written.
# %s = run_id, epoch, seqs, kinds, datas. One row unless fenced.
PUT_EVENTS = f"""
WITH run AS (
    SELECT run_id FROM treadle_runs WHERE run_id = %s AND epoch = %s AND status = 'running'
    FOR SHARE
), added AS (
    INSERT INTO treadle_events (run_id, seq, kind, data)
    SELECT run.run_id, e.seq, e.kind, e.data
    FROM run, unnest(%s::bigint[], %s::text[], %s::bytea[]) AS e (seq, kind, data)
    ON CONFLICT (run_id, seq) DO NOTHING
)
SELECT run_id, pg_notify('{CHANNEL_EVENTS}', run_id)::text FROM run"""
RUN_AT_EPOCH = "SELECT 1 FROM treadle_runs WHERE run_id = %s AND epoch = %s"
READ_EVENTS = """
SELECT seq, kind, data FROM treadle_events
WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s"""

PUT_GRAPH = """
INSERT INTO treadle_graphs (graph_id, blob) VALUES (%s, %s) ON CONFLICT (graph_id) DO NOTHING"""
GET_GRAPH = "SELECT blob FROM treadle_graphs WHERE graph_id = %s"

# A pending run whose queue_timeout passed ends cancelled (left alone once claimed); its
# thread's next run may now start.
EXPIRE_PENDING_RUN = f"""
WITH upd AS (
    UPDATE treadle_runs SET status = 'cancelled', error = %(error)s,
        ended_at = clock_timestamp()
    WHERE run_id = %(run_id)s AND status = 'pending'
    RETURNING *
)
SELECT {RUN_ROW}, pg_notify('{CHANNEL_RUN_DONE}', r.run_id)::text, {_notify_next_run('r')}
FROM upd AS r"""

# --- workers (treadle_workers: who is alive, serving which graphs) --------------------
WORKER_ROW = f"""w.worker_id, w.name, w.graph_ids, w.allow_pickled, w.slots, w.running,
    {_seconds('w.started_at')}, {_seconds('w.heartbeat_at')}, {_seconds('w.expires_at')}"""
REGISTER_WORKER = """
WITH forget AS (
    DELETE FROM treadle_workers WHERE expires_at <= clock_timestamp()
      AND worker_id <> %(worker_id)s
)
INSERT INTO treadle_workers (worker_id, name, graph_ids, allow_pickled, slots, running,
                             expires_at)
VALUES (%(worker_id)s, %(name)s, %(graph_ids)s::text[], %(allow_pickled)s, %(slots)s,
        %(running)s, clock_timestamp() + make_interval(secs => %(ttl)s::float8))
ON CONFLICT (worker_id) DO UPDATE SET
    name = excluded.name, graph_ids = excluded.graph_ids,
    allow_pickled = excluded.allow_pickled, slots = excluded.slots,
    running = excluded.running, heartbeat_at = clock_timestamp(),
    expires_at = excluded.expires_at"""
REMOVE_WORKER = "DELETE FROM treadle_workers WHERE worker_id = %s"
LIVE_WORKERS = f"""
SELECT {WORKER_ROW} FROM treadle_workers AS w WHERE w.expires_at > clock_timestamp()
ORDER BY w.started_at, w.worker_id"""
