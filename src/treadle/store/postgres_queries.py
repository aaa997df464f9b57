"""The PostgreSQL run queue's statements (postgres_queue.py), by name, until the queue
moves to ``sql/postgres.sql``; the checkpoints' and migrations' are there already. Values
are always bound."""

from treadle.store.queue import (
    CANCEL_STATUS,
    CHANNEL_CANCEL,
    CHANNEL_EVENTS,
    CHANNEL_RUN_DONE,
    CHANNEL_RUNS,
    CHANNEL_TASK_DONE,
    CHANNEL_TASKS,
)

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
