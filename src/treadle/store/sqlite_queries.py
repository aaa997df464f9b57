"""The SQLite run queue's statements (sqlite_queue.py), by name, until the queue moves to
``sql/sqlite.sql``; the checkpoints' and migrations' are there already. Values are always bound."""

from treadle.store.queue import CANCEL_STATUS


def values(rows: int, columns: int) -> str:
    """``(?, ?), (?, ?)`` for ``rows`` rows of ``columns`` placeholders (no values)."""
    group = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([group] * rows)


# --- run queue (treadle.store.queue.RunQueue; see sqlite_queue.py) --------------------
# The clock: Unix seconds as REAL (SQLite 3.40 has no unixepoch('subsec')). 'now' is the
# same for every use within one statement.
NOW = "((julianday('now') - 2440587.5) * 86400.0)"
CLOCK = f"SELECT {NOW}"

# Columns in the order of the RunRow / TaskRow fields.
RUN_COLUMNS = """run_id, thread_id, graph_id, payload, status, attempt, max_attempts, epoch, worker,
    lease_expires_at, timeout_s, stream, cancel, metadata, result, error, created_at, started_at,
    ended_at, lost_count"""
TASK_COLUMNS = """task_key, run_id, thread_id, graph_id, node, payload, status, attempt,
    max_attempts, epoch, worker, lease_expires_at, result, error, created_at, ended_at"""


def _graph_filter(alias: str) -> str:
    """The graph filter of claims: ? = JSON array of graph ids, ? = 1 to accept pickled ones."""
    return (f"({alias}.graph_id IN (SELECT value FROM json_each(?))"
            f" OR (? AND {alias}.graph_id GLOB 'pickle:*'))")


ACTIVE_RUNS = """
SELECT run_id, status FROM treadle_runs
WHERE thread_id = ? AND status IN ('pending', 'running') ORDER BY seq"""
# multitask interrupt / rollback: ? = final status, ? = the cancel action, ? = thread.
STOP_PENDING_RUNS = f"""
UPDATE treadle_runs SET status = ?, cancel = ?, ended_at = {NOW}
WHERE thread_id = ? AND status = 'pending'"""
REQUEST_CANCEL_RUNNING = """
UPDATE treadle_runs SET cancel = ? WHERE thread_id = ? AND status = 'running'"""
INSERT_RUN = f"""
INSERT INTO treadle_runs
    (run_id, thread_id, graph_id, payload, max_attempts, timeout_s, stream, metadata,
     idempotency_key, request_hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING {RUN_COLUMNS}"""
# The run created under an idempotency key, its request hash first. ? = key.
RUN_BY_KEY = f"SELECT request_hash, {RUN_COLUMNS} FROM treadle_runs WHERE idempotency_key = ?"
# The oldest pending run of an allowed graph whose thread has no running run and no
# older pending run. ? = worker, ? = ttl, graph filter.
CLAIM_RUN = f"""
UPDATE treadle_runs SET
    status = 'running', worker = ?, worker_lock = ?, epoch = epoch + 1, attempt = attempt + 1,
    lease_expires_at = {NOW} + ?, started_at = coalesce(started_at, {NOW})
WHERE seq = (
    SELECT r.seq FROM treadle_runs r
    WHERE r.status = 'pending' AND {_graph_filter('r')}
      AND NOT EXISTS (SELECT 1 FROM treadle_runs o
                      WHERE o.thread_id = r.thread_id AND o.status = 'running')
      AND NOT EXISTS (SELECT 1 FROM treadle_runs o
                      WHERE o.thread_id = r.thread_id AND o.status = 'pending' AND o.seq < r.seq)
    ORDER BY r.seq LIMIT 1)
RETURNING {RUN_COLUMNS}"""
# ? = ttl, ? = run_id, ? = epoch, ? = worker
HEARTBEAT_RUN = f"""
UPDATE treadle_runs SET lease_expires_at = {NOW} + ?
WHERE run_id = ? AND epoch = ? AND worker = ? AND status = 'running'
RETURNING cancel"""
HEARTBEAT_TASK = f"""
UPDATE treadle_tasks SET lease_expires_at = {NOW} + ?
WHERE task_key = ? AND epoch = ? AND worker = ? AND status = 'running'
RETURNING task_key"""
# ? = status, ? = result, ? = error, ? = run_id, ? = epoch
FINISH_RUN = f"""
UPDATE treadle_runs SET status = ?, result = ?, error = ?, worker = NULL,
    lease_expires_at = NULL, ended_at = {NOW}
WHERE run_id = ? AND epoch = ? AND status = 'running'"""
RELEASE_RUN = """
UPDATE treadle_runs SET status = 'pending', worker = NULL, lease_expires_at = NULL,
    attempt = max(attempt - 1, 0)
WHERE run_id = ? AND epoch = ? AND status = 'running'"""
# ? = final status, ? = action, ? = run_id
CANCEL_PENDING_RUN = f"""
UPDATE treadle_runs SET status = ?, cancel = ?, ended_at = {NOW}
WHERE run_id = ? AND status = 'pending'"""
CANCEL_RUNNING_RUN = """
UPDATE treadle_runs SET cancel = ? WHERE run_id = ? AND status = 'running'"""
GET_RUN = f"SELECT {RUN_COLUMNS} FROM treadle_runs WHERE run_id = ?"
# list_runs is assembled from these fixed fragments; values stay bound.
LIST_RUNS = f"SELECT {RUN_COLUMNS} FROM treadle_runs"
LIST_RUNS_WHERE_THREAD = "thread_id = ?"
LIST_RUNS_WHERE_STATUS = "status = ?"
LIST_RUNS_ORDER = " ORDER BY seq DESC LIMIT ? OFFSET ?"
DELETE_RUN_TASKS = "DELETE FROM treadle_tasks WHERE run_id = ?"
DELETE_RUN_EVENTS = "DELETE FROM treadle_events WHERE run_id = ?"
DELETE_RUN = "DELETE FROM treadle_runs WHERE run_id = ? AND status NOT IN ('pending', 'running')"
PURGE_EVENTS = """
DELETE FROM treadle_events WHERE run_id IN (
    SELECT run_id FROM treadle_runs WHERE ended_at IS NOT NULL AND ended_at < ?)
"""
QUEUE_STATS = f"""
SELECT count(CASE WHEN status = 'pending' THEN 1 END),
    count(CASE WHEN status = 'running' THEN 1 END),
    {NOW} - min(CASE WHEN status = 'pending' THEN created_at END)
FROM treadle_runs WHERE status IN ('pending', 'running')"""

# Expired run leases (one statement, so 'now' is one instant): a requested cancel ends
# the run (its CANCEL_STATUS), its :max_losses-th loss (TREADLE_MAX_WORKER_LOSSES) errors,
# any other goes back to pending with the epoch unchanged (the next claim raises it).
_RUN_CANCEL_STATUS = (
    "CASE cancel "
    + " ".join(f"WHEN '{action}' THEN '{status}'" for action, status in CANCEL_STATUS.items())
    + " ELSE 'cancelled' END"
)
_GIVE_UP = "cancel IS NULL AND lost_count + 1 >= :max_losses"
# :dead = JSON array of the session keys whose process is gone (sqlite_session).
_DEAD = "worker_lock IN (SELECT value FROM json_each(:dead))"
_LOST = f"""CASE WHEN {_DEAD} THEN 'worker ' || coalesce(worker, '?') || ' died (its process is gone)'
        ELSE 'lease of worker ' || coalesce(worker, '?') || ' expired' END
        || ' on attempt ' || attempt"""
LIVE_SESSION_KEYS = """
SELECT worker_lock FROM treadle_runs WHERE status = 'running' AND worker_lock IS NOT NULL
UNION SELECT worker_lock FROM treadle_tasks WHERE status = 'running' AND worker_lock IS NOT NULL"""
SWEEP_RUNS = f"""
UPDATE treadle_runs SET
    status = CASE
        WHEN cancel IS NOT NULL THEN {_RUN_CANCEL_STATUS}
        WHEN {_GIVE_UP} THEN 'error'
        ELSE 'pending' END,
    error = CASE
        WHEN cancel IS NOT NULL THEN error
        WHEN {_GIVE_UP} THEN
            'the run''s worker died ' || (lost_count + 1)
            || ' times (killed, OOM or lost); giving up; last: ' || {_LOST}
            || coalesce('; previous error: ' || error, '')
        ELSE {_LOST} || '; queued again' END,
    ended_at = CASE WHEN cancel IS NOT NULL OR {_GIVE_UP} THEN {NOW} END,
    lost_count = lost_count + 1,
    worker = NULL,
    worker_lock = NULL,
    lease_expires_at = NULL
WHERE status = 'running' AND (lease_expires_at < {NOW} OR {_DEAD})
RETURNING run_id, status, thread_id"""
SWEEP_TASKS = f"""
UPDATE treadle_tasks SET
    status = CASE WHEN attempt >= max_attempts THEN 'error' ELSE 'pending' END,
    error = {_LOST} || ' of ' || max_attempts
        || CASE WHEN attempt >= max_attempts THEN ': giving up' ELSE '; queued again' END,
    ended_at = CASE WHEN attempt >= max_attempts THEN {NOW} END,
    worker = NULL,
    worker_lock = NULL,
    lease_expires_at = NULL
WHERE status = 'running' AND (lease_expires_at < {NOW} OR {_DEAD})
RETURNING task_key, status"""

INSERT_TASK = """
INSERT INTO treadle_tasks (task_key, run_id, thread_id, graph_id, node, payload, max_attempts)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_key) DO NOTHING"""
# A failed task submitted again is retried from scratch, for the submitting run; a pending
# task of another (ended) run is adopted by the submitting run, so it can be claimed.
# ? = run_id, thread_id, graph_id, node, payload, max_attempts, task_key, run_id
RESET_FAILED_TASK = """
UPDATE treadle_tasks SET status = 'pending', run_id = ?, thread_id = ?, graph_id = ?, node = ?,
    payload = ?, max_attempts = ?, attempt = 0, worker = NULL, lease_expires_at = NULL,
    result = NULL, error = NULL, ended_at = NULL
WHERE task_key = ? AND (status = 'error' OR (status = 'pending' AND run_id IS NOT ?))"""
GET_TASK = f"SELECT {TASK_COLUMNS} FROM treadle_tasks WHERE task_key = ?"
# Up to ? pending tasks of running runs, oldest first. ? = worker, ? = lock, ? = ttl, graph filter,
# ? = limit. RETURNING has no order: seq comes last for sorting.
CLAIM_TASKS = f"""
UPDATE treadle_tasks SET
    status = 'running', worker = ?, worker_lock = ?, epoch = epoch + 1, attempt = attempt + 1,
    lease_expires_at = {NOW} + ?
WHERE seq IN (
    SELECT t.seq FROM treadle_tasks t
    WHERE t.status = 'pending' AND {_graph_filter('t')}
      AND EXISTS (SELECT 1 FROM treadle_runs r
                  WHERE r.run_id = t.run_id AND r.status = 'running')
    ORDER BY t.seq LIMIT ?)
RETURNING {TASK_COLUMNS}, seq"""
# ? = status, ? = result, ? = error, ? = task_key, ? = epoch
FINISH_TASK = f"""
UPDATE treadle_tasks SET status = ?, result = ?, error = ?, worker = NULL,
    lease_expires_at = NULL, ended_at = {NOW}
WHERE task_key = ? AND epoch = ? AND status = 'running'"""
GET_TASKS = f"""
SELECT {TASK_COLUMNS} FROM treadle_tasks
WHERE task_key IN (SELECT value FROM json_each(?)) ORDER BY seq"""
LIST_TASKS = f"SELECT {TASK_COLUMNS} FROM treadle_tasks WHERE run_id = ? ORDER BY seq"

RUN_EPOCH_STATUS = "SELECT epoch, status FROM treadle_runs WHERE run_id = ?"
# Completed by ``values(rows, 4)``; a seq already stored is kept as first written.
INSERT_EVENTS_HEAD = "INSERT OR IGNORE INTO treadle_events (run_id, seq, kind, data) VALUES "
READ_EVENTS = """
SELECT seq, kind, data FROM treadle_events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"""

PUT_GRAPH = "INSERT OR IGNORE INTO treadle_graphs (graph_id, blob) VALUES (?, ?)"
GET_GRAPH = "SELECT blob FROM treadle_graphs WHERE graph_id = ?"

# A pending run whose queue_timeout passed ends cancelled (left alone once claimed).
EXPIRE_PENDING_RUN = f"""
UPDATE treadle_runs SET status = 'cancelled', error = ?, ended_at = {NOW}
WHERE run_id = ? AND status = 'pending'"""

# --- workers (treadle_workers: who is alive, serving which graphs) --------------------
WORKER_COLUMNS = """worker_id, name, graph_ids, allow_pickled, slots, running, started_at,
    heartbeat_at, expires_at"""
FORGET_DEAD_WORKERS = f"DELETE FROM treadle_workers WHERE expires_at <= {NOW} AND worker_id <> ?"
REGISTER_WORKER = f"""
INSERT INTO treadle_workers (worker_id, name, graph_ids, allow_pickled, slots, running,
                             expires_at)
VALUES (?, ?, ?, ?, ?, ?, {NOW} + ?)
ON CONFLICT (worker_id) DO UPDATE SET
    name = excluded.name, graph_ids = excluded.graph_ids,
    allow_pickled = excluded.allow_pickled, slots = excluded.slots,
    running = excluded.running, heartbeat_at = {NOW}, expires_at = excluded.expires_at"""
REMOVE_WORKER = "DELETE FROM treadle_workers WHERE worker_id = ?"
LIVE_WORKERS = f"""
SELECT {WORKER_COLUMNS} FROM treadle_workers WHERE expires_at > {NOW}
ORDER BY started_at, worker_id"""
