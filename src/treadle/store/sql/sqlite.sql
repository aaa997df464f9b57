-- treadle's named queries for sqlite: one "-- name: <name>" block per query or fragment.
-- The other dialect's file defines the same names, taking the same parameters
-- (tests/unit/test_store_queries.py checks it). Placeholders are the driver's own.
-- Names starting with sqlite_ are this dialect's own (a driver's hot path, not the logic's).

-- ==== clock and schema =======================================================

-- name: clock
-- The database's clock, Unix seconds.
SELECT (julianday('now') - 2440587.5) * 86400.0;

-- name: migrations_create
CREATE TABLE IF NOT EXISTS treadle_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- name: migrations_table
-- One row when the migrations table exists.
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'treadle_migrations';

-- name: migrations_applied
SELECT version, name FROM treadle_migrations;

-- name: migration_record
INSERT INTO treadle_migrations (version, name) VALUES (?, ?);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM treadle_migrations;


-- ==== checkpoints and fencing ================================================

-- Reads go through the connector's read_checkpoints: on SQLite a checkpoint row comes
-- alone, and its blobs and pending writes are read by sqlite_checkpoint_blobs /
-- sqlite_checkpoint_writes (blobs cannot travel inside an aggregate). Thread and run ids
-- of maintenance statements are JSON arrays (read with json_each).

-- name: checkpoints_select
SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type,
    checkpoint, channel_versions, metadata_type, metadata_blob, metadata
FROM treadle_checkpoints;

-- name: checkpoints_tail
-- (nothing: PostgreSQL attaches the blobs and writes here)

-- name: checkpoint_where_thread
thread_id = ?;

-- name: checkpoint_where_ns
checkpoint_ns = ?;

-- name: checkpoint_where_id
checkpoint_id = ?;

-- name: checkpoint_where_before
checkpoint_id < ?;

-- name: checkpoint_where_metadata
-- ? = key, ? = the value as JSON. A row whose metadata is not valid JSON (NaN) matches
-- nothing rather than failing the list.
json_extract(CASE WHEN json_valid(metadata) THEN metadata END, '$.' || json_quote(?))
    IS json_extract(?, '$');

-- name: checkpoint_where_metadata_null
-- ? = key: its value is null or missing.
json_extract(CASE WHEN json_valid(metadata) THEN metadata END, '$.' || json_quote(?)) IS NULL;

-- name: checkpoints_order
ORDER BY checkpoint_id DESC;

-- name: checkpoints_limit
LIMIT ?;

-- name: sqlite_checkpoint_blobs
-- ? = the checkpoint's channel_versions, thread_id, checkpoint_ns. CROSS JOIN keeps the
-- versions the outer loop: one primary-key probe per channel, whatever the thread's length
-- (SQLite otherwise may scan all of the thread's blobs for each checkpoint read).
SELECT b.channel, b.version, b.type, b.blob
FROM json_each(?) v CROSS JOIN treadle_blobs b
WHERE b.thread_id = ? AND b.checkpoint_ns = ? AND b.channel = v.key AND b.version = v.value;

-- name: sqlite_checkpoint_writes
SELECT task_id, idx, channel, type, blob, task_path FROM treadle_writes
WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?
ORDER BY task_id, idx;

-- name: thread_epoch
SELECT epoch FROM treadle_threads WHERE thread_id = ?;

-- name: threads_list
SELECT t.thread_id, t.epoch, t.created_at, t.updated_at,
       (SELECT count(*) FROM treadle_checkpoints c WHERE c.thread_id = t.thread_id),
       (SELECT max(checkpoint_id) FROM treadle_checkpoints c
         WHERE c.thread_id = t.thread_id AND c.checkpoint_ns = '')
FROM treadle_threads t
WHERE EXISTS (SELECT 1 FROM treadle_checkpoints c WHERE c.thread_id = t.thread_id)
ORDER BY t.updated_at DESC LIMIT ?;

-- name: threads_fence
-- Deleting a thread also bumps its epoch and drops its owner, fencing any writer still
-- running on it, and its priority settings. ? = thread ids.
UPDATE treadle_threads SET epoch = epoch + 1, owner = NULL, priority = NULL, fair_group = NULL
WHERE thread_id IN (SELECT value FROM json_each(?));

-- name: threads_delete_writes
DELETE FROM treadle_writes WHERE thread_id IN (SELECT value FROM json_each(?));

-- name: threads_delete_blobs
DELETE FROM treadle_blobs WHERE thread_id IN (SELECT value FROM json_each(?));

-- name: threads_delete_checkpoints
DELETE FROM treadle_checkpoints WHERE thread_id IN (SELECT value FROM json_each(?));

-- name: runs_delete_writes
-- ? = run ids: the pending writes of their checkpoints.
DELETE FROM treadle_writes WHERE EXISTS (
    SELECT 1 FROM treadle_checkpoints c
    WHERE c.run_id IN (SELECT value FROM json_each(?)) AND c.thread_id = treadle_writes.thread_id
      AND c.checkpoint_ns = treadle_writes.checkpoint_ns
      AND c.checkpoint_id = treadle_writes.checkpoint_id);

-- name: runs_delete_checkpoints
DELETE FROM treadle_checkpoints WHERE run_id IN (SELECT value FROM json_each(?));

-- name: thread_copy_row
-- ? = target thread.
INSERT INTO treadle_threads (thread_id, epoch) VALUES (?, 0) ON CONFLICT (thread_id) DO NOTHING;

-- name: thread_copy_checkpoints
-- ? = target thread, source thread (the copy replaces what the target had).
INSERT OR REPLACE INTO treadle_checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type, checkpoint,
     channel_versions, metadata_type, metadata_blob, metadata)
SELECT ?, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type, checkpoint,
       channel_versions, metadata_type, metadata_blob, metadata
FROM treadle_checkpoints WHERE thread_id = ?;

-- name: thread_copy_blobs
INSERT OR REPLACE INTO treadle_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT ?, checkpoint_ns, channel, version, type, blob FROM treadle_blobs WHERE thread_id = ?;

-- name: thread_copy_writes
INSERT OR REPLACE INTO treadle_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
SELECT ?, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path
FROM treadle_writes WHERE thread_id = ?;

-- name: threads_prune_checkpoints
-- keep_latest: the newest checkpoint of each (thread, namespace), its writes, and the
-- blobs it references survive. ? = thread ids.
DELETE FROM treadle_checkpoints
WHERE thread_id IN (SELECT value FROM json_each(?)) AND checkpoint_id < (
    SELECT max(c.checkpoint_id) FROM treadle_checkpoints c
    WHERE c.thread_id = treadle_checkpoints.thread_id
      AND c.checkpoint_ns = treadle_checkpoints.checkpoint_ns);

-- name: threads_prune_writes
DELETE FROM treadle_writes
WHERE thread_id IN (SELECT value FROM json_each(?)) AND NOT EXISTS (
    SELECT 1 FROM treadle_checkpoints c
    WHERE c.thread_id = treadle_writes.thread_id AND c.checkpoint_ns = treadle_writes.checkpoint_ns
      AND c.checkpoint_id = treadle_writes.checkpoint_id);

-- name: threads_prune_blobs
DELETE FROM treadle_blobs
WHERE thread_id IN (SELECT value FROM json_each(?)) AND NOT EXISTS (
    SELECT 1 FROM treadle_checkpoints c, json_each(c.channel_versions) v
    WHERE c.thread_id = treadle_blobs.thread_id AND c.checkpoint_ns = treadle_blobs.checkpoint_ns
      AND v.key = treadle_blobs.channel AND v.value = treadle_blobs.version)
  AND version NOT LIKE 'c:%';

-- The group committer's batch (drivers/sqlite_batch.py): fencing decided in Python per
-- operation, then the accepted rows written with one multi-row statement per kind.

-- Chunked list values (store/chunked.py): a value's row names its chunk rows (version 'c:...',
-- same thread, namespace and channel) inside its bytes, so prune keeps every chunk row and
-- then drops, from Python, those no remaining value names.

-- name: checkpoint_chunks
-- ? = thread, namespace, channel, the chunk versions (JSON array).
SELECT version, type, blob FROM treadle_blobs
WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ?
  AND version IN (SELECT value FROM json_each(?));

-- name: threads_chunked_values
SELECT thread_id, checkpoint_ns, channel, type, blob FROM treadle_blobs
WHERE thread_id IN (SELECT value FROM json_each(?)) AND type LIKE 'chunks/%';

-- name: threads_chunk_rows
SELECT thread_id, checkpoint_ns, channel, version FROM treadle_blobs
WHERE thread_id IN (SELECT value FROM json_each(?)) AND version LIKE 'c:%';

-- name: chunk_delete
DELETE FROM treadle_blobs WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?;

-- name: sqlite_claim_thread
-- ? = thread, token: the thread's new owner; returns the new epoch.
INSERT INTO treadle_threads (thread_id, epoch, owner) VALUES (?, 1, ?)
ON CONFLICT (thread_id) DO UPDATE SET
    epoch = treadle_threads.epoch + 1,
    owner = excluded.owner,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
RETURNING epoch;

-- name: sqlite_thread_owner
SELECT epoch, owner FROM treadle_threads WHERE thread_id = ?;

-- name: sqlite_run_holds_claim
-- A cluster run's thread claim is refused unless the run still runs under its epoch.
SELECT 1 FROM treadle_runs WHERE run_id = ? AND status = 'running' AND epoch = ?;

-- Batch inserts: Tx.many sends them as multi-row statements (one per 500 rows).

-- name: sqlite_touch_threads
-- Only create a missing row; updated_at is stamped by each claim (one per execution).
INSERT OR IGNORE INTO treadle_threads (thread_id, epoch) VALUES (?, ?);

-- name: sqlite_put_checkpoints
INSERT OR REPLACE INTO treadle_checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type, checkpoint,
     channel_versions, metadata_type, metadata_blob, metadata)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: sqlite_put_blobs
INSERT OR IGNORE INTO treadle_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
VALUES (?, ?, ?, ?, ?, ?);

-- name: sqlite_put_writes_keep
INSERT OR IGNORE INTO treadle_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: sqlite_put_writes_replace
INSERT OR REPLACE INTO treadle_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);


-- ==== runs ===================================================================

-- Named parameters (positional only where noted). Times are REAL Unix seconds from
-- SQLite's clock, ((julianday('now') - 2440587.5) * 86400.0): one value per statement.
-- Run rows are returned in the order of RunRow's fields, task rows in TaskRow's.

-- name: run_enqueue
-- The run as queued, its stored request hash first. SQLite decides the multitask strategy
-- before this, in Python, under the write lock (drivers/sqlite.py, enqueue_run).
-- The run takes its thread's priority settings (thread_priority_set), or the defaults.
INSERT INTO treadle_runs
    (run_id, thread_id, graph_id, payload, max_attempts, timeout_s, stream, metadata,
     idempotency_key, request_hash, priority, fair_group)
VALUES (:run_id, :thread_id, :graph_id, :payload, :max_attempts, :timeout_s, :stream,
        :metadata, :idempotency_key, :request_hash,
        coalesce((SELECT priority FROM treadle_threads WHERE thread_id = :thread_id), 0),
        coalesce((SELECT fair_group FROM treadle_threads WHERE thread_id = :thread_id),
                 'default'))
RETURNING request_hash, run_id, thread_id, graph_id, payload, status, attempt, max_attempts,
    epoch, worker, lease_expires_at, timeout_s, stream, cancel, metadata, result, error,
    created_at, started_at, ended_at, lost_count;

-- name: sqlite_run_active
-- The thread's active runs, oldest first (the multitask decision of enqueue_run,
-- drivers/sqlite_queue.py; PostgreSQL takes it in treadle_enqueue_run).
SELECT run_id, status FROM treadle_runs
WHERE thread_id = :thread_id AND status IN ('pending', 'running') ORDER BY seq;

-- name: sqlite_run_stop_pending
-- multitask interrupt / rollback: the thread's pending runs end at once (CANCEL_STATUS).
UPDATE treadle_runs SET
    status = CASE :multitask WHEN 'interrupt' THEN 'interrupted' ELSE 'cancelled' END,
    cancel = :multitask, ended_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE thread_id = :thread_id AND status = 'pending';

-- name: sqlite_run_stop_running
-- multitask interrupt / rollback: the thread's running run is asked to stop.
UPDATE treadle_runs SET cancel = :multitask WHERE thread_id = :thread_id AND status = 'running';

-- name: run_by_key
-- The run created under an idempotency key, its request hash first.
SELECT request_hash, run_id, thread_id, graph_id, payload, status, attempt, max_attempts,
    epoch, worker, lease_expires_at, timeout_s, stream, cancel, metadata, result, error,
    created_at, started_at, ended_at, lost_count
FROM treadle_runs WHERE idempotency_key = :idempotency_key;

-- name: run_claim
-- Of the claimable runs (pending; an allowed graph, :graph_ids a JSON array, or a pickled
-- one with :allow_pickled; no running run and no older pending run on its thread): the
-- lowest priority, then the one of the group claimed from least recently (run_served),
-- then the oldest. Each group's best run comes from treadle_runs_pending_fair, walking the
-- groups with pending runs (migration 0012). Writers are serialised by BEGIN IMMEDIATE:
-- nobody writes between the read and the update.
UPDATE treadle_runs SET
    status = 'running', worker = :worker, worker_lock = :lock, epoch = epoch + 1,
    attempt = attempt + 1,
    lease_expires_at = ((julianday('now') - 2440587.5) * 86400.0) + :ttl,
    started_at = coalesce(started_at, ((julianday('now') - 2440587.5) * 86400.0))
WHERE seq = (
    WITH RECURSIVE groups(g) AS (
        SELECT (SELECT min(fair_group) FROM treadle_runs INDEXED BY treadle_runs_pending_fair
                WHERE status = 'pending')
        UNION ALL
        SELECT (SELECT min(fair_group) FROM treadle_runs INDEXED BY treadle_runs_pending_fair
                WHERE status = 'pending' AND fair_group > groups.g)
        FROM groups WHERE groups.g IS NOT NULL
    ), heads(seq) AS (
        SELECT (SELECT r.seq FROM treadle_runs r INDEXED BY treadle_runs_pending_fair
                WHERE r.status = 'pending' AND r.fair_group = groups.g
                  AND (r.graph_id IN (SELECT value FROM json_each(:graph_ids))
                       OR (:allow_pickled AND r.graph_id GLOB 'pickle:*'))
                  AND NOT EXISTS (SELECT 1 FROM treadle_runs o
                                  WHERE o.thread_id = r.thread_id AND o.status = 'running')
                  AND NOT EXISTS (SELECT 1 FROM treadle_runs o
                                  WHERE o.thread_id = r.thread_id AND o.status = 'pending'
                                    AND o.seq < r.seq)
                ORDER BY r.priority, r.seq LIMIT 1)
        FROM groups WHERE groups.g IS NOT NULL
    )
    SELECT r.seq FROM heads h JOIN treadle_runs r ON r.seq = h.seq
    LEFT JOIN treadle_fair_groups f ON f.fair_group = r.fair_group
    ORDER BY r.priority, f.served NULLS FIRST, r.seq LIMIT 1)
RETURNING run_id, thread_id, graph_id, payload, status, attempt, max_attempts, epoch, worker,
    lease_expires_at, timeout_s, stream, cancel, metadata, result, error, created_at,
    started_at, ended_at, lost_count;

-- name: run_served
-- The claimed run's group was served last (run_claim's fairness), in the claim's transaction.
-- The group served last already comes last: it is left alone (nothing written).
UPDATE treadle_fair_groups
SET served = (SELECT coalesce(max(served), 0) + 1 FROM treadle_fair_groups)
WHERE fair_group = (SELECT fair_group FROM treadle_runs WHERE run_id = :run_id)
  AND (served IS NULL OR served < (SELECT max(served) FROM treadle_fair_groups));

-- name: fair_group_add
-- A fairness group's row (never served yet), when a thread's settings name a new one.
INSERT INTO treadle_fair_groups (fair_group) VALUES (:fair_group) ON CONFLICT DO NOTHING;

-- name: thread_priority
-- A thread's stored priority settings (priority, fair_group); none: not set yet.
SELECT priority, fair_group FROM treadle_threads
WHERE thread_id = :thread_id AND priority IS NOT NULL;

-- name: thread_priority_set
-- Store a thread's priority settings unless it has some: the first stored wins. The
-- settings stored come back.
INSERT INTO treadle_threads (thread_id, epoch, priority, fair_group)
VALUES (:thread_id, 0, :priority, :fair_group)
ON CONFLICT (thread_id) DO UPDATE SET
    priority = coalesce(treadle_threads.priority, excluded.priority),
    fair_group = coalesce(treadle_threads.fair_group, excluded.fair_group)
RETURNING priority, fair_group;

-- name: run_heartbeat
-- Extend the leases of the runs (:run_ids, :run_epochs: JSON arrays, pairwise) still
-- running under that epoch and :worker; (run_id, cancel) of each.
UPDATE treadle_runs SET lease_expires_at = ((julianday('now') - 2440587.5) * 86400.0) + :ttl
WHERE run_id IN (SELECT value FROM json_each(:run_ids)) AND worker = :worker
  AND status = 'running'
  AND EXISTS (SELECT 1 FROM json_each(:run_ids) i JOIN json_each(:run_epochs) e ON e.key = i.key
              WHERE i.value = treadle_runs.run_id AND e.value = treadle_runs.epoch)
RETURNING run_id, cancel;

-- name: run_finish
-- One row when done (none when fenced).
UPDATE treadle_runs SET status = :status, result = :result, error = :error, worker = NULL,
    lease_expires_at = NULL, ended_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE run_id = :run_id AND epoch = :epoch AND status = 'running'
RETURNING run_id;

-- name: run_release
-- One row when handed back (none when fenced).
UPDATE treadle_runs SET status = 'pending', worker = NULL, lease_expires_at = NULL,
    attempt = max(attempt - 1, 0)
WHERE run_id = :run_id AND epoch = :epoch AND status = 'running'
RETURNING run_id;

-- name: run_cancel
-- :final = CANCEL_STATUS[:action]. A pending run ends at once; a running one gets the
-- request. The row after the change; none for a terminal or unknown run.
UPDATE treadle_runs SET
    status = CASE WHEN status = 'pending' THEN :final ELSE status END,
    ended_at = CASE WHEN status = 'pending' THEN ((julianday('now') - 2440587.5) * 86400.0)
                    ELSE ended_at END,
    cancel = :action
WHERE run_id = :run_id AND status IN ('pending', 'running')
RETURNING run_id, thread_id, graph_id, payload, status, attempt, max_attempts, epoch, worker,
    lease_expires_at, timeout_s, stream, cancel, metadata, result, error, created_at,
    started_at, ended_at, lost_count;

-- name: run_expire_pending
-- A pending run whose queue_timeout passed ends cancelled (left alone once claimed).
UPDATE treadle_runs SET status = 'cancelled', error = :error,
    ended_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE run_id = :run_id AND status = 'pending'
RETURNING run_id, thread_id, graph_id, payload, status, attempt, max_attempts, epoch, worker,
    lease_expires_at, timeout_s, stream, cancel, metadata, result, error, created_at,
    started_at, ended_at, lost_count;

-- name: run_get
SELECT run_id, thread_id, graph_id, payload, status, attempt, max_attempts, epoch, worker,
    lease_expires_at, timeout_s, stream, cancel, metadata, result, error, created_at,
    started_at, ended_at, lost_count
FROM treadle_runs WHERE run_id = :run_id;

-- name: run_progress
-- Where each waited run stands, in one read for every waiter of a process
-- (treadle.cluster.waiters): its status and its last event's seq (0: none).
SELECT r.run_id, r.status,
    coalesce((SELECT max(e.seq) FROM treadle_events AS e WHERE e.run_id = r.run_id), 0)
FROM treadle_runs AS r WHERE r.run_id IN (SELECT value FROM json_each(:run_ids));

-- name: run_list
-- list_runs: this, the filters (run_where_*) joined by AND, then run_list_page.
SELECT run_id, thread_id, graph_id, payload, status, attempt, max_attempts, epoch, worker,
    lease_expires_at, timeout_s, stream, cancel, metadata, result, error, created_at,
    started_at, ended_at, lost_count
FROM treadle_runs;

-- name: run_where_thread
thread_id = :thread_id;

-- name: run_where_status
status = :status;

-- name: run_list_page
ORDER BY seq DESC LIMIT :limit OFFSET :offset;

-- name: run_delete
-- A finished run (active ones are kept); then its tasks and events.
DELETE FROM treadle_runs WHERE run_id = :run_id AND status NOT IN ('pending', 'running');

-- name: run_delete_tasks
DELETE FROM treadle_tasks WHERE run_id = :run_id;

-- name: run_delete_events
DELETE FROM treadle_events WHERE run_id = :run_id;

-- name: run_queue_stats
-- Pending, running, and the age of the oldest pending run (NULL: none).
SELECT count(CASE WHEN status = 'pending' THEN 1 END),
    count(CASE WHEN status = 'running' THEN 1 END),
    ((julianday('now') - 2440587.5) * 86400.0)
        - min(CASE WHEN status = 'pending' THEN created_at END)
FROM treadle_runs WHERE status IN ('pending', 'running');

-- name: run_status_counts
-- Runs per status, in one read (GET /operations). Counts the whole table.
SELECT status, count(*) FROM treadle_runs GROUP BY status;

-- name: run_failovers
-- Runs the sweeper took back from a lost worker (lost_count > 0), newest first, each with
-- how many there are in all: a backward scan of the partial index treadle_runs_lost
-- (migration 0013), which holds those runs only.
SELECT run_id, thread_id, graph_id, status, lost_count, worker, error, created_at,
    started_at, ended_at, count(*) OVER ()
FROM treadle_runs WHERE lost_count > 0 ORDER BY seq DESC LIMIT :limit;

-- name: sqlite_run_session_keys
-- The worker-session keys of running claims (the driver checks which sessions ended:
-- drivers/sqlite_queue.py, ended_sessions).
SELECT worker_lock FROM treadle_runs WHERE status = 'running' AND worker_lock IS NOT NULL
UNION SELECT worker_lock FROM treadle_tasks WHERE status = 'running' AND worker_lock IS NOT NULL;

-- name: run_sweep
-- Lost runs: an expired lease, or a claim whose worker session ended (:dead, a JSON array
-- of keys; :check_sessions and :grace are PostgreSQL's). One statement, so 'now' is one
-- instant. A requested cancel ends the run (its CANCEL_STATUS); its :max_losses-th loss
-- errors; any other goes back to pending, epoch unchanged (the next claim raises it).
UPDATE treadle_runs SET
    status = CASE
        WHEN cancel IS NOT NULL THEN CASE cancel WHEN 'cancel' THEN 'cancelled'
            WHEN 'interrupt' THEN 'interrupted' WHEN 'rollback' THEN 'cancelled'
            ELSE 'cancelled' END
        WHEN cancel IS NULL AND lost_count + 1 >= :max_losses THEN 'error'
        ELSE 'pending' END,
    error = CASE
        WHEN cancel IS NOT NULL THEN error
        WHEN cancel IS NULL AND lost_count + 1 >= :max_losses THEN
            'the run''s worker died ' || (lost_count + 1)
            || ' times (killed, OOM or lost); giving up; last: '
            || CASE WHEN worker_lock IN (SELECT value FROM json_each(:dead))
                    THEN 'worker ' || coalesce(worker, '?') || ' died (its process is gone)'
                    ELSE 'lease of worker ' || coalesce(worker, '?') || ' expired' END
            || ' on attempt ' || attempt || coalesce('; previous error: ' || error, '')
        ELSE CASE WHEN worker_lock IN (SELECT value FROM json_each(:dead))
                  THEN 'worker ' || coalesce(worker, '?') || ' died (its process is gone)'
                  ELSE 'lease of worker ' || coalesce(worker, '?') || ' expired' END
            || ' on attempt ' || attempt || '; queued again' END,
    ended_at = CASE WHEN cancel IS NOT NULL OR cancel IS NULL AND lost_count + 1 >= :max_losses
                    THEN ((julianday('now') - 2440587.5) * 86400.0) END,
    lost_count = lost_count + 1,
    worker = NULL,
    worker_lock = NULL,
    lease_expires_at = NULL
WHERE status = 'running'
  AND (lease_expires_at < ((julianday('now') - 2440587.5) * 86400.0)
       OR worker_lock IN (SELECT value FROM json_each(:dead)))
RETURNING run_id, status, thread_id;


-- ==== tasks, workers, events, shipped graphs ================================

-- name: task_submit
-- A new key is inserted; an 'error' row is reset to pending for the submitting run (the
-- orchestrator retries it), and a pending row of another run is adopted by it. The row
-- when (re)queued; none otherwise (read it with task_get).
INSERT INTO treadle_tasks (task_key, run_id, thread_id, graph_id, node, payload, max_attempts)
VALUES (:task_key, :run_id, :thread_id, :graph_id, :node, :payload, :max_attempts)
ON CONFLICT (task_key) DO UPDATE SET
    status = 'pending', run_id = excluded.run_id, thread_id = excluded.thread_id,
    graph_id = excluded.graph_id, node = excluded.node, payload = excluded.payload,
    max_attempts = excluded.max_attempts, attempt = 0, worker = NULL,
    lease_expires_at = NULL, result = NULL, error = NULL, ended_at = NULL
WHERE treadle_tasks.status = 'error'
   OR (treadle_tasks.status = 'pending' AND treadle_tasks.run_id IS NOT excluded.run_id)
RETURNING task_key, run_id, thread_id, graph_id, node, payload, status, attempt,
    max_attempts, epoch, worker, lease_expires_at, result, error, created_at, ended_at;

-- name: task_get
SELECT task_key, run_id, thread_id, graph_id, node, payload, status, attempt,
    max_attempts, epoch, worker, lease_expires_at, result, error, created_at, ended_at
FROM treadle_tasks WHERE task_key = :task_key;

-- name: task_claim
-- Up to :limit pending tasks of running runs, oldest first (graph filter as run_claim).
-- The rows, each with its seq last (RETURNING has no order: sort by it).
UPDATE treadle_tasks SET
    status = 'running', worker = :worker, worker_lock = :lock, epoch = epoch + 1,
    attempt = attempt + 1,
    lease_expires_at = ((julianday('now') - 2440587.5) * 86400.0) + :ttl
WHERE seq IN (
    SELECT t.seq FROM treadle_tasks t
    WHERE t.status = 'pending'
      AND (t.graph_id IN (SELECT value FROM json_each(:graph_ids))
           OR (:allow_pickled AND t.graph_id GLOB 'pickle:*'))
      AND EXISTS (SELECT 1 FROM treadle_runs r
                  WHERE r.run_id = t.run_id AND r.status = 'running')
    ORDER BY t.seq LIMIT :limit)
RETURNING task_key, run_id, thread_id, graph_id, node, payload, status, attempt,
    max_attempts, epoch, worker, lease_expires_at, result, error, created_at, ended_at, seq;

-- name: task_heartbeat
-- As run_heartbeat, for tasks (:task_keys, :task_epochs); the task keys still held.
UPDATE treadle_tasks SET lease_expires_at = ((julianday('now') - 2440587.5) * 86400.0) + :ttl
WHERE task_key IN (SELECT value FROM json_each(:task_keys)) AND worker = :worker
  AND status = 'running'
  AND EXISTS (SELECT 1 FROM json_each(:task_keys) i JOIN json_each(:task_epochs) e ON e.key = i.key
              WHERE i.value = treadle_tasks.task_key AND e.value = treadle_tasks.epoch)
RETURNING task_key;

-- name: task_finish
-- One row when recorded (none when fenced).
UPDATE treadle_tasks SET status = :status, result = :result, error = :error, worker = NULL,
    worker_lock = NULL, lease_expires_at = NULL,
    ended_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE task_key = :task_key AND epoch = :epoch AND status = 'running'
RETURNING task_key;

-- name: task_get_many
SELECT task_key, run_id, thread_id, graph_id, node, payload, status, attempt,
    max_attempts, epoch, worker, lease_expires_at, result, error, created_at, ended_at
FROM treadle_tasks WHERE task_key IN (SELECT value FROM json_each(:task_keys)) ORDER BY seq;

-- name: task_list
SELECT task_key, run_id, thread_id, graph_id, node, payload, status, attempt,
    max_attempts, epoch, worker, lease_expires_at, result, error, created_at, ended_at
FROM treadle_tasks WHERE run_id = :run_id ORDER BY seq;

-- name: task_sweep
-- Lost tasks (as run_sweep): back to pending or, at their max_attempts, error.
UPDATE treadle_tasks SET
    status = CASE WHEN attempt >= max_attempts THEN 'error' ELSE 'pending' END,
    error = CASE WHEN worker_lock IN (SELECT value FROM json_each(:dead))
                 THEN 'worker ' || coalesce(worker, '?') || ' died (its process is gone)'
                 ELSE 'lease of worker ' || coalesce(worker, '?') || ' expired' END
        || ' on attempt ' || attempt || ' of ' || max_attempts
        || CASE WHEN attempt >= max_attempts THEN ': giving up' ELSE '; queued again' END,
    ended_at = CASE WHEN attempt >= max_attempts
                    THEN ((julianday('now') - 2440587.5) * 86400.0) END,
    worker = NULL,
    worker_lock = NULL,
    lease_expires_at = NULL
WHERE status = 'running'
  AND (lease_expires_at < ((julianday('now') - 2440587.5) * 86400.0)
       OR worker_lock IN (SELECT value FROM json_each(:dead)))
RETURNING task_key, status;

-- name: event_fence
-- A row while the run is running under :epoch (events are appended only then).
SELECT run_id FROM treadle_runs
WHERE run_id = :run_id AND epoch = :epoch AND status = 'running';

-- name: event_insert
-- Positional (run_id, seq, kind, data), for Tx.many; a seq already stored is kept as first
-- written.
INSERT OR IGNORE INTO treadle_events (run_id, seq, kind, data) VALUES (?, ?, ?, ?);

-- name: event_read
SELECT seq, kind, data FROM treadle_events
WHERE run_id = :run_id AND seq > :after_seq ORDER BY seq LIMIT :limit;

-- name: event_purge
-- The events of runs that ended more than :older_than seconds ago.
DELETE FROM treadle_events WHERE run_id IN (
    SELECT run_id FROM treadle_runs WHERE ended_at IS NOT NULL
    AND ended_at < ((julianday('now') - 2440587.5) * 86400.0) - :older_than);

-- name: graph_put
INSERT OR IGNORE INTO treadle_graphs (graph_id, blob) VALUES (:graph_id, :blob);

-- name: graph_get
SELECT blob FROM treadle_graphs WHERE graph_id = :graph_id;

-- name: worker_forget_dead
DELETE FROM treadle_workers
WHERE expires_at <= ((julianday('now') - 2440587.5) * 86400.0) AND worker_id <> :worker_id;

-- name: worker_register
-- :graph_ids is a JSON array (returned as JSON text by worker_list).
INSERT INTO treadle_workers (worker_id, name, graph_ids, allow_pickled, slots, running,
                             expires_at)
VALUES (:worker_id, :name, :graph_ids, :allow_pickled, :slots, :running,
        ((julianday('now') - 2440587.5) * 86400.0) + :ttl)
ON CONFLICT (worker_id) DO UPDATE SET
    name = excluded.name, graph_ids = excluded.graph_ids,
    allow_pickled = excluded.allow_pickled, slots = excluded.slots,
    running = excluded.running, heartbeat_at = ((julianday('now') - 2440587.5) * 86400.0),
    expires_at = excluded.expires_at;

-- name: worker_remove
DELETE FROM treadle_workers WHERE worker_id = :worker_id;

-- name: worker_list
-- Live workers, oldest first.
SELECT worker_id, name, graph_ids, allow_pickled, slots, running, started_at, heartbeat_at,
    expires_at
FROM treadle_workers WHERE expires_at > ((julianday('now') - 2440587.5) * 86400.0)
ORDER BY started_at, worker_id;


-- ==== threads, assistants, crons (API resources) =============================

-- Named parameters throughout. JSON parameters are JSON text with sorted keys (equal
-- objects, equal text: the JSON filters compare nested values as text); JSON columns are
-- returned as text; times are REAL Unix seconds from SQLite's clock.

-- name: assistant_insert
-- The new assistant as version 1, or no row when the id exists.
INSERT INTO treadle_assistants
    (assistant_id, graph_id, config, context, metadata, name, description)
VALUES (:assistant_id, :graph_id, :config, :context, :metadata, :name, :description)
ON CONFLICT (assistant_id) DO NOTHING
RETURNING assistant_id, graph_id, config, context, metadata, name, description, version,
    created_at, updated_at;

-- name: assistant_snapshot
-- The current record becomes the version it names (made at its updated_at).
INSERT INTO treadle_assistant_versions
    (assistant_id, version, graph_id, config, context, metadata, name, description, created_at)
SELECT assistant_id, version, graph_id, config, context, metadata, name, description, updated_at
FROM treadle_assistants WHERE assistant_id = :assistant_id;

-- name: assistant_get
SELECT assistant_id, graph_id, config, context, metadata, name, description, version,
    created_at, updated_at
FROM treadle_assistants WHERE assistant_id = :assistant_id;

-- name: assistant_lock
-- As assistant_get, inside a write transaction (which SQLite serialises already).
SELECT assistant_id, graph_id, config, context, metadata, name, description, version,
    created_at, updated_at
FROM treadle_assistants WHERE assistant_id = :assistant_id;

-- name: assistant_update
-- New fields and the next free version number (snapshot it with assistant_snapshot).
UPDATE treadle_assistants SET graph_id = :graph_id, config = :config, context = :context,
    metadata = :metadata, name = :name, description = :description,
    version = (SELECT coalesce(max(version), 0) + 1 FROM treadle_assistant_versions
               WHERE assistant_id = :assistant_id),
    updated_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE assistant_id = :assistant_id
RETURNING assistant_id, graph_id, config, context, metadata, name, description, version,
    created_at, updated_at;

-- name: assistant_restore
-- Stored :version becomes the current record; no row when either is unknown.
UPDATE treadle_assistants SET
    (graph_id, config, context, metadata, name, description, version) = (
        SELECT graph_id, config, context, metadata, name, description, version
        FROM treadle_assistant_versions v
        WHERE v.assistant_id = treadle_assistants.assistant_id AND v.version = :version),
    updated_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE assistant_id = :assistant_id AND EXISTS (
    SELECT 1 FROM treadle_assistant_versions
    WHERE assistant_id = :assistant_id AND version = :version)
RETURNING assistant_id, graph_id, config, context, metadata, name, description, version,
    created_at, updated_at;

-- name: assistant_delete_versions
DELETE FROM treadle_assistant_versions WHERE assistant_id = :assistant_id;

-- name: assistant_delete
DELETE FROM treadle_assistants WHERE assistant_id = :assistant_id;

-- name: assistant_search
SELECT assistant_id, graph_id, config, context, metadata, name, description, version,
    created_at, updated_at
FROM treadle_assistants;

-- name: assistant_count
SELECT count(*) FROM treadle_assistants;

-- name: assistant_versions
-- A version as an assistant record (its updated_at is its created_at).
SELECT assistant_id, graph_id, config, context, metadata, name, description, version,
    created_at, created_at
FROM treadle_assistant_versions;

-- name: assistant_versions_page
ORDER BY version DESC LIMIT :limit OFFSET :offset;

-- name: assistant_where_graph_id
graph_id = :graph_id;

-- name: assistant_where_name
-- Case-insensitive substring (lower() folds ASCII letters only).
instr(lower(name), lower(:name)) > 0;

-- name: resource_where_assistant_id
assistant_id = :assistant_id;

-- name: resource_where_metadata
-- The metadata object has every top-level key of :metadata with an equal value. Objects
-- and arrays compare as (sorted-key) text; a number equals a number of the same value,
-- integer or real. A row whose column is not valid JSON (NaN written before the HTTP API
-- refused it) matches nothing, and cannot make the search fail.
NOT EXISTS (SELECT 1 FROM json_each(:metadata) f WHERE NOT EXISTS (
    SELECT 1 FROM json_each(CASE WHEN json_valid(metadata) THEN metadata ELSE '{}' END) m
    WHERE m.key = f.key AND m.value IS f.value
      AND (m.type = f.type OR (m.type IN ('integer', 'real') AND f.type IN ('integer', 'real')))));

-- name: resource_collate
-- Text columns sort by code point.
COLLATE BINARY;

-- name: resource_page
LIMIT :limit OFFSET :offset;

-- name: thread_insert
INSERT INTO treadle_thread_records
    (thread_id, metadata, status, state_values, interrupts, config, error)
VALUES (:thread_id, :metadata, :status, :values, :interrupts, :config, :error)
ON CONFLICT (thread_id) DO NOTHING
RETURNING thread_id, metadata, status, state_values, interrupts, config, error, created_at,
    updated_at;

-- name: thread_get
SELECT thread_id, metadata, status, state_values, interrupts, config, error, created_at,
    updated_at
FROM treadle_thread_records WHERE thread_id = :thread_id;

-- name: thread_lock
-- As thread_get, inside a write transaction (which SQLite serialises already).
SELECT thread_id, metadata, status, state_values, interrupts, config, error, created_at,
    updated_at
FROM treadle_thread_records WHERE thread_id = :thread_id;

-- name: thread_update_metadata
UPDATE treadle_thread_records SET metadata = :metadata,
    updated_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE thread_id = :thread_id
RETURNING thread_id, metadata, status, state_values, interrupts, config, error, created_at,
    updated_at;

-- name: thread_state
-- Record a thread's state (set_thread_state; the run queue, in its own transaction, when a
-- run is claimed, finished or swept). Parameters (treadle.store.thread_records.thread_state_params):
-- :thread_id, :status (one of THREAD_STATUSES), :set_values (boolean: replace the values),
-- :values (JSON text or NULL), :interrupts (JSON text), :error (text or NULL).
UPDATE treadle_thread_records SET status = :status,
    state_values = CASE WHEN :set_values THEN :values ELSE state_values END,
    interrupts = :interrupts, error = :error,
    updated_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE thread_id = :thread_id;

-- name: thread_delete
DELETE FROM treadle_thread_records WHERE thread_id = :thread_id;

-- name: thread_search
SELECT thread_id, metadata, status, state_values, interrupts, config, error, created_at,
    updated_at
FROM treadle_thread_records;

-- name: thread_count
SELECT count(*) FROM treadle_thread_records;

-- name: thread_where_values
-- As resource_where_metadata, over the state values.
NOT EXISTS (SELECT 1 FROM json_each(:values) f WHERE NOT EXISTS (
    SELECT 1 FROM json_each(CASE WHEN json_valid(state_values) AND json_type(state_values) = 'object'
                                 THEN state_values ELSE '{}' END) m
    WHERE m.key = f.key AND m.value IS f.value
      AND (m.type = f.type OR (m.type IN ('integer', 'real') AND f.type IN ('integer', 'real')))));

-- name: thread_where_status
status = :status;

-- name: thread_where_ids
thread_id IN (SELECT value FROM json_each(:ids));

-- ==== thread TTLs and storage (treadle.store.retention) =======================

-- name: thread_ttl_set
-- A thread's TTL (minutes; NULL: none) and strategy; a new TTL makes it due again.
UPDATE treadle_thread_records SET ttl_minutes = :minutes, ttl_strategy = :strategy,
    ttl_swept_at = NULL
WHERE thread_id = :thread_id;

-- name: thread_ttl_get
-- (minutes, strategy, expires_at as Unix seconds), or no row for an unknown thread.
SELECT ttl_minutes, ttl_strategy, updated_at + ttl_minutes * 60.0
FROM treadle_thread_records WHERE thread_id = :thread_id;

-- name: threads_ttl_claim
-- Claim up to :limit expired threads with no pending or running run, not claimed since their
-- last update (by expiry, through the index treadle_thread_records_ttl; SQLite has one writer
-- at a time, so two sweeps never claim the same thread): stamp ttl_swept_at, return
-- (thread_id, strategy).
UPDATE treadle_thread_records SET ttl_swept_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE thread_id IN (
    SELECT r.thread_id FROM treadle_thread_records r
    WHERE r.ttl_minutes IS NOT NULL AND (r.ttl_swept_at IS NULL OR r.ttl_swept_at <= r.updated_at)
      AND r.updated_at + r.ttl_minutes * 60.0 <= ((julianday('now') - 2440587.5) * 86400.0)
      AND r.updated_at < ((julianday('now') - 2440587.5) * 86400.0)
      AND NOT EXISTS (SELECT 1 FROM treadle_runs q WHERE q.thread_id = r.thread_id
                      AND q.status IN ('pending', 'running'))
    ORDER BY r.updated_at + r.ttl_minutes * 60.0 LIMIT :limit)
RETURNING thread_id, coalesce(ttl_strategy, 'delete');

-- name: threads_ttl_release
-- Delete claims older than :retry seconds whose thread is still there (their sweeper died):
-- claimable again.
UPDATE treadle_thread_records SET ttl_swept_at = NULL
WHERE ttl_strategy = 'delete' AND ttl_swept_at > updated_at
  AND ttl_swept_at < ((julianday('now') - 2440587.5) * 86400.0) - :retry;

-- name: thread_ttl_still_due
-- (ttl_swept_at is strictly after the updated_at it claimed; an update in the same clock
-- tick as the claim makes them equal, and voids the claim.)
-- The claimed thread, if it was not updated since its claim and has no pending or running
-- run: what makes acting on the claim safe.
SELECT r.thread_id FROM treadle_thread_records r
WHERE r.thread_id = :thread_id AND r.ttl_swept_at > r.updated_at
  AND NOT EXISTS (SELECT 1 FROM treadle_runs q WHERE q.thread_id = r.thread_id
                  AND q.status IN ('pending', 'running'));

-- name: thread_ttl_delete_record
-- As thread_ttl_still_due, deleting the record (the rest goes as DELETE /threads/{id}).
DELETE FROM treadle_thread_records
WHERE thread_id = :thread_id AND ttl_swept_at > updated_at
  AND NOT EXISTS (SELECT 1 FROM treadle_runs q
                  WHERE q.thread_id = treadle_thread_records.thread_id
                  AND q.status IN ('pending', 'running'))
RETURNING thread_id;

-- name: thread_storage
-- (part, rows, bytes) of every table holding a thread's rows: the bytes of their stored
-- text, JSON and binary values (length of the value as a blob; numbers, times and the
-- database's page and index overhead are not counted). One arm per table: a new table is
-- one more arm.
SELECT 'thread', count(*), coalesce(sum(length(CAST(thread_id AS BLOB))
    + length(CAST(metadata AS BLOB)) + coalesce(length(CAST(state_values AS BLOB)), 0)
    + length(CAST(interrupts AS BLOB)) + length(CAST(config AS BLOB))
    + coalesce(length(CAST(error AS BLOB)), 0) + coalesce(length(CAST(ttl_strategy AS BLOB)),
    0)), 0) FROM treadle_thread_records WHERE thread_id = :thread_id
UNION ALL SELECT 'fence', count(*), coalesce(sum(length(CAST(thread_id AS BLOB))
    + coalesce(length(CAST(owner AS BLOB)), 0)), 0) FROM treadle_threads
    WHERE thread_id = :thread_id
UNION ALL SELECT 'checkpoints', count(*), coalesce(sum(length(CAST(thread_id AS BLOB))
    + length(CAST(checkpoint_ns AS BLOB)) + length(CAST(checkpoint_id AS BLOB))
    + coalesce(length(CAST(parent_checkpoint_id AS BLOB)), 0)
    + coalesce(length(CAST(run_id AS BLOB)), 0) + length(CAST(type AS BLOB))
    + length(checkpoint) + length(CAST(channel_versions AS BLOB))
    + length(CAST(metadata_type AS BLOB)) + length(metadata_blob)
    + length(CAST(metadata AS BLOB))), 0) FROM treadle_checkpoints WHERE thread_id = :thread_id
UNION ALL SELECT 'blobs', count(*), coalesce(sum(length(CAST(thread_id AS BLOB))
    + length(CAST(checkpoint_ns AS BLOB)) + length(CAST(channel AS BLOB))
    + length(CAST(version AS BLOB)) + length(CAST(type AS BLOB)) + coalesce(length(blob), 0)),
    0) FROM treadle_blobs WHERE thread_id = :thread_id
UNION ALL SELECT 'writes', count(*), coalesce(sum(length(CAST(thread_id AS BLOB))
    + length(CAST(checkpoint_ns AS BLOB)) + length(CAST(checkpoint_id AS BLOB))
    + length(CAST(task_id AS BLOB)) + length(CAST(channel AS BLOB))
    + coalesce(length(CAST(type AS BLOB)), 0) + coalesce(length(blob), 0)
    + length(CAST(task_path AS BLOB))), 0) FROM treadle_writes WHERE thread_id = :thread_id
UNION ALL SELECT 'runs', count(*), coalesce(sum(length(CAST(run_id AS BLOB))
    + length(CAST(thread_id AS BLOB)) + length(CAST(graph_id AS BLOB)) + length(payload)
    + coalesce(length(CAST(worker AS BLOB)), 0) + length(CAST(metadata AS BLOB))
    + coalesce(length(result), 0) + coalesce(length(CAST(error AS BLOB)), 0)
    + coalesce(length(CAST(idempotency_key AS BLOB)), 0)
    + coalesce(length(CAST(request_hash AS BLOB)), 0)), 0) FROM treadle_runs
    WHERE thread_id = :thread_id
UNION ALL SELECT 'tasks', count(*), coalesce(sum(length(CAST(task_key AS BLOB))
    + length(CAST(run_id AS BLOB)) + length(CAST(thread_id AS BLOB))
    + length(CAST(graph_id AS BLOB)) + length(CAST(node AS BLOB)) + length(payload)
    + coalesce(length(CAST(worker AS BLOB)), 0) + coalesce(length(result), 0)
    + coalesce(length(CAST(error AS BLOB)), 0)), 0) FROM treadle_tasks
    WHERE run_id IN (SELECT run_id FROM treadle_runs WHERE thread_id = :thread_id)
UNION ALL SELECT 'events', count(*), coalesce(sum(length(CAST(run_id AS BLOB))
    + length(CAST(kind AS BLOB)) + length(data)), 0) FROM treadle_events
    WHERE run_id IN (SELECT run_id FROM treadle_runs WHERE thread_id = :thread_id);

-- name: cron_insert
INSERT INTO treadle_crons
    (cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time, next_run_at,
     enabled, user_id)
VALUES (:cron_id, :assistant_id, :thread_id, :schedule, :payload, :metadata, :end_time,
        :next_run_at, :enabled, :user_id)
ON CONFLICT (cron_id) DO NOTHING
RETURNING cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time, next_run_at,
    enabled, user_id, created_at, updated_at;

-- name: cron_get
SELECT cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time, next_run_at,
    enabled, user_id, created_at, updated_at
FROM treadle_crons WHERE cron_id = :cron_id;

-- name: cron_lock
-- As cron_get, inside a write transaction (which SQLite serialises already).
SELECT cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time, next_run_at,
    enabled, user_id, created_at, updated_at
FROM treadle_crons WHERE cron_id = :cron_id;

-- name: cron_update
UPDATE treadle_crons SET schedule = :schedule, payload = :payload, metadata = :metadata,
    end_time = :end_time, enabled = :enabled, next_run_at = :next_run_at,
    updated_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE cron_id = :cron_id
RETURNING cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time, next_run_at,
    enabled, user_id, created_at, updated_at;

-- name: cron_delete
DELETE FROM treadle_crons WHERE cron_id = :cron_id;

-- name: cron_delete_of_thread
DELETE FROM treadle_crons WHERE thread_id = :thread_id;

-- name: cron_search
SELECT cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time, next_run_at,
    enabled, user_id, created_at, updated_at
FROM treadle_crons;

-- name: cron_count
SELECT count(*) FROM treadle_crons;

-- name: cron_where_thread_id
thread_id = :thread_id;

-- name: cron_where_enabled
enabled = :enabled;

-- name: cron_due
SELECT cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time, next_run_at,
    enabled, user_id, created_at, updated_at
FROM treadle_crons
WHERE enabled AND next_run_at <= :now
ORDER BY next_run_at, seq LIMIT :limit;

-- name: cron_advance
-- Compare-and-set of the next tick (SQLite serialises writers).
UPDATE treadle_crons SET next_run_at = :next_run_at, enabled = :enabled,
    updated_at = ((julianday('now') - 2440587.5) * 86400.0)
WHERE cron_id = :cron_id AND enabled AND next_run_at = :expected;


-- ==== API keys (the built-in auth) ===========================================

-- Columns of a key as read back: key_id, tenant_id, role, name, created_at, revoked_at
-- (never its hash, except api_key_hash, which verification alone reads).

-- name: api_key_insert
INSERT INTO treadle_api_keys (key_id, tenant_id, role, name, hash)
VALUES (:key_id, :tenant_id, :role, :name, :hash)
ON CONFLICT (key_id) DO NOTHING
RETURNING key_id, tenant_id, role, name, created_at, revoked_at;

-- name: api_key_hash
SELECT hash, key_id, tenant_id, role, name, created_at, revoked_at
FROM treadle_api_keys WHERE key_id = :key_id;

-- name: api_key_list
-- Every key (or a tenant's), in creation order.
SELECT key_id, tenant_id, role, name, created_at, revoked_at
FROM treadle_api_keys
WHERE :tenant_id IS NULL OR tenant_id = :tenant_id
ORDER BY seq;

-- name: api_key_revoke
-- A key revoked twice keeps its first revocation time.
UPDATE treadle_api_keys
SET revoked_at = coalesce(revoked_at, ((julianday('now') - 2440587.5) * 86400.0))
WHERE key_id = :key_id
RETURNING key_id, tenant_id, role, name, created_at, revoked_at;


-- ==== memory items ===========================================================

-- Positional parameters (searches repeat fragments). Sets of keys travel as two arrays
-- (namespaces, keys: JSON text, read with json_each); a batch of puts as one JSON array of
-- {"ns", "labels", "k", "v" (the value's JSON text), "ttl"}. Values are JSON object text
-- with sorted keys; times are REAL Unix seconds from SQLite's clock.

-- name: items_get
-- The live items at the (namespace, key) pairs of the two arrays.
SELECT namespace, key, value, created_at, updated_at, ttl_minutes, expires_at
FROM treadle_items
WHERE (namespace, key) IN (SELECT n.value, k.value FROM json_each(?) AS n
                           JOIN json_each(?) AS k ON k.key = n.key)
  AND (expires_at IS NULL OR expires_at > ((julianday('now') - 2440587.5) * 86400.0));

-- name: items_refresh
-- Extend the TTLs of the live items at the pairs that have one.
UPDATE treadle_items
SET expires_at = ((julianday('now') - 2440587.5) * 86400.0) + ttl_minutes * 60.0
WHERE (namespace, key) IN (SELECT n.value, k.value FROM json_each(?) AS n
                           JOIN json_each(?) AS k ON k.key = n.key)
  AND ttl_minutes IS NOT NULL
  AND (expires_at IS NULL OR expires_at > ((julianday('now') - 2440587.5) * 86400.0))
RETURNING namespace, key, expires_at;

-- name: items_delete
DELETE FROM treadle_items
WHERE (namespace, key) IN (SELECT n.value, k.value FROM json_each(?) AS n
                           JOIN json_each(?) AS k ON k.key = n.key);

-- name: items_put
-- A write over an expired item creates it anew. ("WHERE true" lets SQLite parse
-- ON CONFLICT after INSERT ... SELECT.)
INSERT INTO treadle_items
    (namespace, labels, key, value, created_at, updated_at, ttl_minutes, expires_at)
SELECT json_extract(w.value, '$.ns'), json_extract(w.value, '$.labels'),
       json_extract(w.value, '$.k'), json_extract(w.value, '$.v'),
       ((julianday('now') - 2440587.5) * 86400.0), ((julianday('now') - 2440587.5) * 86400.0),
       json_extract(w.value, '$.ttl'),
       ((julianday('now') - 2440587.5) * 86400.0) + json_extract(w.value, '$.ttl') * 60.0
FROM json_each(?) AS w WHERE true
ON CONFLICT (namespace, key) DO UPDATE SET
    value = excluded.value,
    updated_at = excluded.updated_at,
    created_at = CASE WHEN treadle_items.expires_at <= excluded.updated_at
                      THEN excluded.created_at ELSE treadle_items.created_at END,
    ttl_minutes = excluded.ttl_minutes,
    expires_at = excluded.expires_at;

-- name: items_sweep
DELETE FROM treadle_items WHERE expires_at <= ((julianday('now') - 2440587.5) * 86400.0);

-- name: items_search
-- Followed by "AND" filters, then items_search_page.
SELECT i.namespace, i.key, i.value, i.created_at, i.updated_at, i.ttl_minutes, i.expires_at
FROM treadle_items AS i
WHERE (i.expires_at IS NULL OR i.expires_at > ((julianday('now') - 2440587.5) * 86400.0));

-- name: items_search_page
ORDER BY i.updated_at DESC, i.namespace, i.key LIMIT ? OFFSET ?;

-- name: items_where_prefix
-- The namespace, or one under it: ? = the namespace, its text + '.', its text + '/'
-- ('/' follows '.').
AND (i.namespace = ? OR (i.namespace >= ? AND i.namespace < ?));

-- name: item_vectors_delete
-- The vectors of the (namespace, key) pairs of the two JSON arrays.
DELETE FROM treadle_item_vectors
WHERE (namespace, key) IN (SELECT n.value, k.value FROM json_each(?) AS n
                           JOIN json_each(?) AS k ON k.key = n.key);

-- name: item_vectors_put
INSERT INTO treadle_item_vectors (namespace, key, field, n, embedding) VALUES (?, ?, ?, ?, ?);

-- name: items_search_vectors
-- Every live item (then items_where_prefix and "AND" filters, then items_search_vectors_order)
-- with one of its vectors per row (NULL: none).
SELECT i.namespace, i.key, i.value, i.created_at, i.updated_at, i.ttl_minutes, i.expires_at,
       v.embedding
FROM treadle_items AS i
LEFT JOIN treadle_item_vectors AS v ON v.namespace = i.namespace AND v.key = i.key
WHERE (i.expires_at IS NULL OR i.expires_at > ((julianday('now') - 2440587.5) * 86400.0));

-- name: items_search_vectors_order
ORDER BY i.updated_at DESC, i.namespace, i.key;

-- name: sqlite_items_vec_scored
-- With sqlite-vec loaded: the rows of the items_search_vectors query that follows (closed by
-- ") AS c"), each with its vector's cosine similarity to ? (float32 bytes) computed in SQL (NULL:
-- no vector; 0 for a zero vector, as treadle.store.vectors.rank scores it).
SELECT c.namespace, c.key, c.value, c.created_at, c.updated_at, c.ttl_minutes, c.expires_at,
       CASE WHEN c.embedding IS NULL THEN NULL
            ELSE coalesce(1.0 - vec_distance_cosine(c.embedding, ?), 0.0) END
FROM (

-- name: sqlite_vec_version
SELECT vec_version();

-- name: items_namespaces
-- Distinct live namespaces cut to ? labels (NULL: whole); followed by items_where_prefix,
-- then items_namespaces_filter, its filters and items_namespaces_page.
SELECT DISTINCT CASE WHEN n.depth IS NULL OR json_array_length(n.labels) <= n.depth
                     THEN n.namespace
    ELSE substr(n.namespace, 1, (SELECT sum(length(j.value)) + count(*) - 1
                                 FROM json_each(n.labels) AS j WHERE j.key < n.depth)) END AS ns
FROM (SELECT i.namespace, i.labels, ? AS depth FROM treadle_items AS i
      WHERE (i.expires_at IS NULL OR i.expires_at > ((julianday('now') - 2440587.5) * 86400.0));

-- name: items_namespaces_filter
) AS n WHERE true;

-- name: items_where_min_depth
AND json_array_length(n.labels) >= ?;

-- name: items_where_label
-- The label at position ? (0 = the first) is ?.
AND json_extract(n.labels, '$[' || ? || ']') = ?;

-- name: items_where_label_from_end
-- The label at position ? from the end (-1 = the last) is ?.
AND json_extract(n.labels, '$[#' || ? || ']') = ?;

-- name: items_namespaces_page
ORDER BY ns LIMIT ? OFFSET ?;

-- Conditions on a top-level field of the value (parameters: the key, then the operand as
-- JSON text, except item_eq_null: the key only, and item_compare_text: the operand as
-- text). Each is true or false, never NULL, so NOT negates it. In the comparisons, {op}
-- stands for one of > >= < <=.

-- name: item_eq_null
NOT EXISTS (SELECT 1 FROM json_each(i.value) AS j WHERE j.key = ? AND j.type <> 'null');

-- name: item_eq_bool
EXISTS (SELECT 1 FROM json_each(i.value) AS j WHERE j.key = ? AND j.type = ?);

-- name: item_eq_number
EXISTS (SELECT 1 FROM json_each(i.value) AS j WHERE j.key = ?
        AND j.type IN ('integer', 'real') AND j.value = json_extract(?, '$'));

-- name: item_eq_text
EXISTS (SELECT 1 FROM json_each(i.value) AS j WHERE j.key = ?
        AND j.type = 'text' AND j.value = json_extract(?, '$'));

-- name: item_eq_json
EXISTS (SELECT 1 FROM json_each(i.value) AS j WHERE j.key = ?
        AND j.type IN ('object', 'array') AND j.value = ?);

-- name: item_compare_number
EXISTS (SELECT 1 FROM json_each(i.value) AS j WHERE j.key = ?
        AND j.type IN ('integer', 'real') AND j.value {op} json_extract(?, '$'));

-- name: item_compare_text
EXISTS (SELECT 1 FROM json_each(i.value) AS j WHERE j.key = ?
        AND j.type = 'text' AND j.value {op} ?);


-- ==== audit log (treadle.store.audit_log) =====================================

-- name: audit_lock
-- Appends take turns: BEGIN IMMEDIATE (the write lock) already serialises them on SQLite.
SELECT 1;

-- name: audit_head
-- The last record's seq and hash (none: an empty log).
SELECT seq, hash FROM treadle_audit ORDER BY seq DESC LIMIT 1;

-- name: audit_insert
INSERT INTO treadle_audit (seq, at, actor, tenant, action, resource, resource_id, request_id, outcome, detail, prev_hash, hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: audit_list
-- Records after :after_seq, oldest first; a NULL filter matches every record.
SELECT seq, at, actor, tenant, action, resource, resource_id, request_id, outcome, detail, prev_hash, hash
FROM treadle_audit
WHERE seq > :after_seq
  AND (:actor IS NULL OR actor = :actor)
  AND (:action IS NULL OR action = :action)
  AND (:resource_id IS NULL OR resource_id = :resource_id)
  AND (:tenant IS NULL OR tenant = :tenant)
ORDER BY seq LIMIT :limit;

-- name: audit_list_newest
-- The newest records before :before_seq, newest first; a NULL filter matches every record.
SELECT seq, at, actor, tenant, action, resource, resource_id, request_id, outcome, detail, prev_hash, hash
FROM treadle_audit
WHERE seq < :before_seq
  AND (:actor IS NULL OR actor = :actor)
  AND (:action IS NULL OR action = :action)
  AND (:resource_id IS NULL OR resource_id = :resource_id)
  AND (:tenant IS NULL OR tenant = :tenant)
ORDER BY seq DESC LIMIT :limit;


-- ==== end ====================================================================


-- ==== access filters (treadle.store.access) ===================================
-- Fragments an authorization filter compiles to, over a resource's `metadata` column.
-- Each binds one parameter, :access (renamed per use), a JSON object {key: value}.

-- name: access_eq
-- metadata[key] equals value (as resource_where_metadata, for one key).
EXISTS (SELECT 1 FROM json_each(:access) f, json_each(CASE WHEN json_valid(metadata)
        THEN metadata ELSE '{}' END) m
    WHERE m.key = f.key AND m.value IS f.value
      AND (m.type = f.type OR (m.type IN ('integer', 'real') AND f.type IN ('integer', 'real'))));

-- name: access_contains
-- metadata[key] is an array with an element equal to value.
EXISTS (SELECT 1 FROM json_each(:access) f, json_each(CASE WHEN json_valid(metadata)
        THEN metadata ELSE '{}' END) m, json_each(m.value) e
    WHERE m.key = f.key AND m.type = 'array' AND e.value IS f.value
      AND (e.type = f.type OR (e.type IN ('integer', 'real') AND f.type IN ('integer', 'real'))));

-- name: access_all
1 = 1;

-- name: access_none
1 = 0;
