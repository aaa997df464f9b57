-- treadle's named queries for postgres: one "-- name: <name>" block per query or fragment.
-- The other dialect's file defines the same names, taking the same parameters
-- (tests/unit/test_store_queries.py checks it). Placeholders are the driver's own.
-- Names starting with postgres_ are this dialect's own (a driver's hot path, not the logic's).

-- ==== clock and schema =======================================================

-- name: clock
-- The database's clock, Unix seconds.
SELECT extract(epoch FROM clock_timestamp())::float8;

-- name: migrations_create
CREATE TABLE IF NOT EXISTS treadle_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- name: migrations_table
-- One row when the migrations table exists.
SELECT 1 WHERE to_regclass('treadle_migrations') IS NOT NULL;

-- name: migrations_applied
SELECT version, name FROM treadle_migrations;

-- name: migration_record
INSERT INTO treadle_migrations (version, name) VALUES (%s, %s);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM treadle_migrations;

-- name: postgres_take_session_lock
-- A worker's session lock (drivers/postgres_session.py): held as long as its connection lives.
SELECT pg_try_advisory_lock(%s::bigint);

-- name: postgres_session_ping
-- Checks the session's connection (and keeps an idle_session_timeout away).
SELECT 1;

-- name: postgres_migration_lock
-- Concurrent migrations (several pods starting) queue here; the lock is released with
-- the transaction. The key is "treadle" in ASCII.
SELECT pg_advisory_xact_lock(32776877049670757);


-- ==== checkpoints and fencing ================================================

-- Reads go through the connector's read_checkpoints. A checkpoint comes back in one row
-- with the blobs it references and its pending writes as parallel arrays, so reading one
-- is one round trip, and so is a list: checkpoints_select, the filters, checkpoints_order,
-- checkpoints_limit select the checkpoints in an inner query; checkpoints_tail fetches
-- blobs and writes for the rows that survive. Thread and run ids of maintenance
-- statements are arrays.

-- name: checkpoints_select
SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, c.run_id, c.type,
       c.checkpoint, c.channel_versions::text, c.metadata_type, c.metadata_blob, c.metadata::text,
       bl.channels, bl.versions, bl.types, bl.blobs,
       wr.task_ids, wr.idxs, wr.channels, wr.types, wr.blobs, wr.task_paths
FROM (
    SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type,
        checkpoint, channel_versions, metadata_type, metadata_blob, metadata
    FROM treadle_checkpoints;

-- name: checkpoints_tail
) AS c
CROSS JOIN LATERAL (
    -- One primary-key probe per channel version: the LIMIT keeps the inner subquery from
    -- being flattened into a join that hashes every blob of the thread for each checkpoint
    -- (what PostgreSQL planned, cold statistics or not: 57 ms a page of 21 on a 3,000-step
    -- thread, 0.5 ms this way; bench/console_history.py).
    SELECT array_agg(b.channel) AS channels, array_agg(b.version) AS versions,
           array_agg(b.type) AS types, array_agg(b.blob) AS blobs
    FROM jsonb_each_text(c.channel_versions) AS v
    CROSS JOIN LATERAL (
        SELECT b.channel, b.version, b.type, b.blob FROM treadle_blobs b
        WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
          AND b.channel = v.key AND b.version = v.value
        LIMIT 1
    ) AS b
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
ORDER BY c.checkpoint_id DESC;

-- name: checkpoint_where_thread
thread_id = %s;

-- name: checkpoint_where_ns
checkpoint_ns = %s;

-- name: checkpoint_where_id
checkpoint_id = %s;

-- name: checkpoint_where_before
checkpoint_id < %s;

-- name: checkpoint_where_metadata
-- %s = key, %s = the value as JSON (containment: an index on metadata serves it).
metadata @> jsonb_build_object(%s::text, %s::jsonb);

-- name: checkpoint_where_metadata_null
-- %s = key: its value is null or missing, as with SQLite's json_extract.
coalesce(metadata -> %s::text, 'null'::jsonb) = 'null'::jsonb;

-- name: checkpoints_order
ORDER BY checkpoint_id DESC;

-- name: checkpoints_limit
LIMIT %s;

-- name: thread_epoch
SELECT epoch FROM treadle_threads WHERE thread_id = %s;

-- name: threads_list
SELECT t.thread_id, t.epoch,
       to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       (SELECT count(*) FROM treadle_checkpoints c WHERE c.thread_id = t.thread_id),
       (SELECT max(c.checkpoint_id) FROM treadle_checkpoints c
         WHERE c.thread_id = t.thread_id AND c.checkpoint_ns = '')
FROM treadle_threads t
WHERE EXISTS (SELECT 1 FROM treadle_checkpoints c WHERE c.thread_id = t.thread_id)
ORDER BY t.updated_at DESC LIMIT %s;

-- name: threads_fence
-- Deleting a thread also bumps its epoch and drops its owner, fencing any writer still
-- running on it, and its priority settings. %s = thread ids.
UPDATE treadle_threads SET epoch = epoch + 1, owner = NULL, priority = NULL, fair_group = NULL
WHERE thread_id = ANY(%s::text[]);

-- name: threads_delete_writes
DELETE FROM treadle_writes WHERE thread_id = ANY(%s::text[]);

-- name: threads_delete_blobs
DELETE FROM treadle_blobs WHERE thread_id = ANY(%s::text[]);

-- name: threads_delete_checkpoints
DELETE FROM treadle_checkpoints WHERE thread_id = ANY(%s::text[]);

-- name: runs_delete_writes
-- %s = run ids: the pending writes of their checkpoints.
DELETE FROM treadle_writes w USING treadle_checkpoints c
WHERE c.run_id = ANY(%s::text[]) AND c.thread_id = w.thread_id
  AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id;

-- name: runs_delete_checkpoints
DELETE FROM treadle_checkpoints WHERE run_id = ANY(%s::text[]);

-- name: thread_copy_row
-- %s = target thread.
INSERT INTO treadle_threads (thread_id, epoch) VALUES (%s, 0) ON CONFLICT (thread_id) DO NOTHING;

-- name: thread_copy_checkpoints
-- %s = target thread, source thread (the copy replaces what the target had).
INSERT INTO treadle_checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type, checkpoint,
     channel_versions, metadata_type, metadata_blob, metadata)
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
    metadata = EXCLUDED.metadata;

-- name: thread_copy_blobs
INSERT INTO treadle_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT %s, checkpoint_ns, channel, version, type, blob FROM treadle_blobs WHERE thread_id = %s
ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO UPDATE SET
    type = EXCLUDED.type,
    blob = EXCLUDED.blob;

-- name: thread_copy_writes
INSERT INTO treadle_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
SELECT %s, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path
FROM treadle_writes WHERE thread_id = %s
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET
    channel = EXCLUDED.channel,
    type = EXCLUDED.type,
    blob = EXCLUDED.blob,
    task_path = EXCLUDED.task_path;

-- name: threads_prune_checkpoints
-- keep_latest: the newest checkpoint of each (thread, namespace), its writes, and the
-- blobs it references survive. %s = thread ids.
DELETE FROM treadle_checkpoints c
WHERE c.thread_id = ANY(%s::text[]) AND c.checkpoint_id < (
    SELECT max(k.checkpoint_id) FROM treadle_checkpoints k
    WHERE k.thread_id = c.thread_id AND k.checkpoint_ns = c.checkpoint_ns);

-- name: threads_prune_writes
DELETE FROM treadle_writes w
WHERE w.thread_id = ANY(%s::text[]) AND NOT EXISTS (
    SELECT 1 FROM treadle_checkpoints c
    WHERE c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns
      AND c.checkpoint_id = w.checkpoint_id);

-- name: threads_prune_blobs
DELETE FROM treadle_blobs b
WHERE b.thread_id = ANY(%s::text[]) AND NOT EXISTS (
    SELECT 1 FROM treadle_checkpoints c, jsonb_each_text(c.channel_versions) AS v
    WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
      AND v.key = b.channel AND v.value = b.version)
  AND b.version NOT LIKE 'c:%%';

-- Chunked list values (store/chunked.py): a value's row names its chunk rows (version 'c:...',
-- same thread, namespace and channel) inside its bytes, so prune keeps every chunk row and
-- then drops, from Python, those no remaining value names.

-- name: checkpoint_chunks
SELECT version, type, blob FROM treadle_blobs
WHERE thread_id = %s AND checkpoint_ns = %s AND channel = %s AND version = ANY(%s::text[]);

-- name: threads_chunked_values
SELECT thread_id, checkpoint_ns, channel, type, blob FROM treadle_blobs
WHERE thread_id = ANY(%s::text[]) AND type LIKE 'chunks/%%';

-- name: threads_chunk_rows
SELECT thread_id, checkpoint_ns, channel, version FROM treadle_blobs
WHERE thread_id = ANY(%s::text[]) AND version LIKE 'c:%%';

-- name: chunk_delete
DELETE FROM treadle_blobs
WHERE thread_id = %s AND checkpoint_ns = %s AND channel = %s AND version = %s;

-- name: postgres_apply_batch
-- The group committer's batch (claims, checkpoints, task writes) as one JSON document,
-- applied by treadle_apply (migrations 0002, 0003, 0012): one statement, so one transaction
-- under autocommit and one round trip. Fencing is checked inside it, per operation,
-- against the thread row read FOR SHARE.
SELECT treadle_apply(%s::jsonb);


-- ==== runs ===================================================================

-- Named parameters (positional only where noted). Times are timestamptz, returned as Unix
-- seconds (float8). Each statement is one transaction (autocommit) unless the store runs
-- several in one. Notifications (pg_notify) are sent in the statement that makes the
-- change, so they go out exactly when it commits; pg_notify's result comes back in extra
-- last columns, which the store ignores. Run rows are returned in the order of RunRow's
-- fields (from a relation aliased r), task rows in TaskRow's (aliased t).

-- name: run_enqueue
-- The multitask decision and the insert, atomically under the thread's row lock, with
-- the idempotency key's run returned instead when there is one (treadle_enqueue_run,
-- migrations 0003 and 0008): its stored request hash first. A 'reject' refused raises
-- SQLSTATE TRBSY, the active run ids (JSON) in DETAIL (drivers/postgres.py, enqueue_run).
SELECT r.request_hash, r.run_id, r.thread_id, r.graph_id, r.payload, r.status, r.attempt,
    r.max_attempts, r.epoch, r.worker, extract(epoch FROM r.lease_expires_at)::float8,
    r.timeout_s, r.stream, r.cancel, r.metadata, r.result, r.error,
    extract(epoch FROM r.created_at)::float8, extract(epoch FROM r.started_at)::float8,
    extract(epoch FROM r.ended_at)::float8, r.lost_count
FROM treadle_enqueue_run(
    %(run_id)s::text, %(thread_id)s::text, %(graph_id)s::text, %(payload)s::bytea,
    %(max_attempts)s::integer, %(timeout_s)s::float8, %(stream)s::boolean, %(metadata)s::text,
    %(multitask)s::text, %(idempotency_key)s::text, %(request_hash)s::text) AS r;

-- name: run_by_key
-- The run created under an idempotency key, its request hash first.
SELECT r.request_hash, r.run_id, r.thread_id, r.graph_id, r.payload, r.status, r.attempt,
    r.max_attempts, r.epoch, r.worker, extract(epoch FROM r.lease_expires_at)::float8,
    r.timeout_s, r.stream, r.cancel, r.metadata, r.result, r.error,
    extract(epoch FROM r.created_at)::float8, extract(epoch FROM r.started_at)::float8,
    extract(epoch FROM r.ended_at)::float8, r.lost_count
FROM treadle_runs AS r WHERE r.idempotency_key = %(idempotency_key)s;

-- name: run_claim
-- treadle_claim_run (migrations 0003, 0007, 0014): the lowest priority, then the group
-- claimed from least recently, then the oldest; candidates locked FOR UPDATE SKIP LOCKED; a
-- race lost for a thread (the partial unique index on running runs) means "look for
-- another run". A run's priority settings come from its thread's row (0014's trigger).
SELECT r.run_id, r.thread_id, r.graph_id, r.payload, r.status, r.attempt, r.max_attempts,
    r.epoch, r.worker, extract(epoch FROM r.lease_expires_at)::float8, r.timeout_s, r.stream,
    r.cancel, r.metadata, r.result, r.error, extract(epoch FROM r.created_at)::float8,
    extract(epoch FROM r.started_at)::float8, extract(epoch FROM r.ended_at)::float8,
    r.lost_count
FROM treadle_claim_run(%(worker)s::text, %(graph_ids)s::text[], %(allow_pickled)s::boolean,
                       %(ttl)s::float8, %(lock)s::bigint) AS r;

-- name: run_served
-- The claimed run's group was served last (run_claim's fairness), in the claim's transaction.
-- A group row another claim is marking right now (locked) is skipped, not waited for: that
-- claim marks it served at the same moment, and claims never queue behind each other here.
-- The group served last already comes last: it is left alone (nothing written, as with a
-- single group, first in first out).
UPDATE treadle_fair_groups f SET served = nextval('treadle_fair_served')
WHERE f.fair_group = (SELECT g.fair_group FROM treadle_fair_groups g
                      WHERE g.fair_group = (SELECT r.fair_group FROM treadle_runs r
                                            WHERE r.run_id = %(run_id)s)
                        AND (g.served IS NULL OR g.served < (SELECT max(m.served)
                                                             FROM treadle_fair_groups m))
                      FOR UPDATE SKIP LOCKED);

-- name: fair_group_add
-- A fairness group's row (never served yet), when a thread's settings name a new one.
INSERT INTO treadle_fair_groups (fair_group) VALUES (%(fair_group)s) ON CONFLICT DO NOTHING;

-- name: thread_priority
-- A thread's stored priority settings (priority, fair_group); none: not set yet.
SELECT priority, fair_group FROM treadle_threads
WHERE thread_id = %(thread_id)s AND priority IS NOT NULL;

-- name: thread_priority_set
-- Store a thread's priority settings unless it has some: the first stored wins. The
-- settings stored come back.
INSERT INTO treadle_threads (thread_id, epoch, priority, fair_group)
VALUES (%(thread_id)s, 0, %(priority)s, %(fair_group)s)
ON CONFLICT (thread_id) DO UPDATE SET
    priority = coalesce(treadle_threads.priority, excluded.priority),
    fair_group = coalesce(treadle_threads.fair_group, excluded.fair_group)
RETURNING priority, fair_group;

-- name: run_heartbeat
-- Extend the leases of the runs (%(run_ids)s, %(run_epochs)s, pairwise) still running
-- under that epoch and worker; (run_id, cancel) of each.
UPDATE treadle_runs r
SET lease_expires_at = clock_timestamp() + make_interval(secs => %(ttl)s::float8)
FROM unnest(%(run_ids)s::text[], %(run_epochs)s::bigint[]) AS h (run_id, epoch)
WHERE r.run_id = h.run_id AND r.epoch = h.epoch AND r.worker = %(worker)s
  AND r.status = 'running'
RETURNING r.run_id, r.cancel;

-- name: run_finish
-- One row when done (none when fenced); the thread's next run may now start.
WITH done AS (
    UPDATE treadle_runs SET status = %(status)s, result = %(result)s, error = %(error)s,
        worker = NULL, lease_expires_at = NULL, ended_at = clock_timestamp()
    WHERE run_id = %(run_id)s AND epoch = %(epoch)s AND status = 'running'
    RETURNING run_id, thread_id
)
SELECT d.run_id, pg_notify('treadle_run_done', d.run_id)::text,
    (SELECT pg_notify('treadle_runs', n.run_id)::text FROM (
        SELECT p.run_id FROM treadle_runs p
        WHERE p.thread_id = d.thread_id AND p.status = 'pending' AND p.run_id <> d.run_id
        ORDER BY p.seq LIMIT 1) AS n)
FROM done AS d;

-- name: run_release
-- One row when handed back (none when fenced).
WITH released AS (
    UPDATE treadle_runs SET status = 'pending', worker = NULL, lease_expires_at = NULL,
        attempt = greatest(attempt - 1, 0)
    WHERE run_id = %(run_id)s AND epoch = %(epoch)s AND status = 'running'
    RETURNING run_id
)
SELECT run_id, pg_notify('treadle_runs', run_id)::text FROM released;

-- name: run_cancel
-- %(final)s = CANCEL_STATUS[action]. A pending run ends at once (its thread's next run may
-- now start); a running one gets the request and its worker is told. The row after the
-- change; none for a terminal or unknown run.
WITH upd AS (
    UPDATE treadle_runs SET
        status = CASE WHEN status = 'pending' THEN %(final)s ELSE status END,
        ended_at = CASE WHEN status = 'pending' THEN clock_timestamp() ELSE ended_at END,
        cancel = %(action)s
    WHERE run_id = %(run_id)s AND status IN ('pending', 'running')
    RETURNING *
)
SELECT r.run_id, r.thread_id, r.graph_id, r.payload, r.status, r.attempt, r.max_attempts,
    r.epoch, r.worker, extract(epoch FROM r.lease_expires_at)::float8, r.timeout_s, r.stream,
    r.cancel, r.metadata, r.result, r.error, extract(epoch FROM r.created_at)::float8,
    extract(epoch FROM r.started_at)::float8, extract(epoch FROM r.ended_at)::float8,
    r.lost_count,
    CASE WHEN r.status = 'running' THEN pg_notify('treadle_cancel', r.run_id)::text
         ELSE pg_notify('treadle_run_done', r.run_id)::text || coalesce((
            SELECT pg_notify('treadle_runs', n.run_id)::text FROM (
                SELECT p.run_id FROM treadle_runs p
                WHERE p.thread_id = r.thread_id AND p.status = 'pending'
                  AND p.run_id <> r.run_id
                ORDER BY p.seq LIMIT 1) AS n), '')
    END
FROM upd AS r;

-- name: run_expire_pending
-- A pending run whose queue_timeout passed ends cancelled (left alone once claimed); its
-- thread's next run may now start.
WITH upd AS (
    UPDATE treadle_runs SET status = 'cancelled', error = %(error)s,
        ended_at = clock_timestamp()
    WHERE run_id = %(run_id)s AND status = 'pending'
    RETURNING *
)
SELECT r.run_id, r.thread_id, r.graph_id, r.payload, r.status, r.attempt, r.max_attempts,
    r.epoch, r.worker, extract(epoch FROM r.lease_expires_at)::float8, r.timeout_s, r.stream,
    r.cancel, r.metadata, r.result, r.error, extract(epoch FROM r.created_at)::float8,
    extract(epoch FROM r.started_at)::float8, extract(epoch FROM r.ended_at)::float8,
    r.lost_count, pg_notify('treadle_run_done', r.run_id)::text,
    (SELECT pg_notify('treadle_runs', n.run_id)::text FROM (
        SELECT p.run_id FROM treadle_runs p
        WHERE p.thread_id = r.thread_id AND p.status = 'pending' AND p.run_id <> r.run_id
        ORDER BY p.seq LIMIT 1) AS n)
FROM upd AS r;

-- name: run_get
SELECT r.run_id, r.thread_id, r.graph_id, r.payload, r.status, r.attempt, r.max_attempts,
    r.epoch, r.worker, extract(epoch FROM r.lease_expires_at)::float8, r.timeout_s, r.stream,
    r.cancel, r.metadata, r.result, r.error, extract(epoch FROM r.created_at)::float8,
    extract(epoch FROM r.started_at)::float8, extract(epoch FROM r.ended_at)::float8,
    r.lost_count
FROM treadle_runs AS r WHERE r.run_id = %(run_id)s;

-- name: run_progress
-- Where each waited run stands, in one read for every waiter of a process
-- (treadle.cluster.waiters): its status and its last event's seq (0: none).
SELECT r.run_id, r.status,
    coalesce((SELECT max(e.seq) FROM treadle_events AS e WHERE e.run_id = r.run_id), 0)
FROM treadle_runs AS r WHERE r.run_id = ANY(%(run_ids)s::text[]);

-- name: run_list
-- list_runs: this, the filters (run_where_*) joined by AND, then run_list_page.
SELECT r.run_id, r.thread_id, r.graph_id, r.payload, r.status, r.attempt, r.max_attempts,
    r.epoch, r.worker, extract(epoch FROM r.lease_expires_at)::float8, r.timeout_s, r.stream,
    r.cancel, r.metadata, r.result, r.error, extract(epoch FROM r.created_at)::float8,
    extract(epoch FROM r.started_at)::float8, extract(epoch FROM r.ended_at)::float8,
    r.lost_count
FROM treadle_runs AS r;

-- name: run_where_thread
r.thread_id = %(thread_id)s;

-- name: run_where_status
r.status = %(status)s;

-- name: run_list_page
ORDER BY r.seq DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: run_delete
-- A finished run (active ones are kept); then its tasks and events.
DELETE FROM treadle_runs WHERE run_id = %(run_id)s AND status NOT IN ('pending', 'running');

-- name: run_delete_tasks
DELETE FROM treadle_tasks WHERE run_id = %(run_id)s;

-- name: run_delete_events
DELETE FROM treadle_events WHERE run_id = %(run_id)s;

-- name: run_queue_stats
-- pending is what a KEDA postgresql scaler counts:
-- SELECT count(*) FROM treadle_runs WHERE status = 'pending'
SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'running'),
    extract(epoch FROM clock_timestamp()
        - min(created_at) FILTER (WHERE status = 'pending'))::float8
FROM treadle_runs WHERE status IN ('pending', 'running');

-- name: run_status_counts
-- Runs per status, in one read (GET /operations). Counts the whole table.
SELECT status, count(*) FROM treadle_runs GROUP BY status;

-- name: run_failovers
-- Runs the sweeper took back from a lost worker (lost_count > 0), newest first, each with
-- how many there are in all: a backward scan of the partial index treadle_runs_lost
-- (migration 0016), which holds those runs only.
SELECT r.run_id, r.thread_id, r.graph_id, r.status, r.lost_count, r.worker, r.error,
    extract(epoch FROM r.created_at)::float8, extract(epoch FROM r.started_at)::float8,
    extract(epoch FROM r.ended_at)::float8, count(*) OVER ()
FROM treadle_runs AS r WHERE r.lost_count > 0 ORDER BY r.seq DESC LIMIT %(limit)s;

-- name: run_sweep
-- Lost claims: an expired lease or, with %(check_sessions)s, a claimer's session lock
-- (migration 0007) no longer held by any session: its worker died. pg_locks shows a
-- pg_advisory_lock(bigint) key as classid (high 32 bits) and objid (low 32 bits),
-- objsubid 1. Not within %(grace)s s (SESSION_GRACE) of the server's start: workers are
-- taking their locks again after a restart. Rows another transaction holds are skipped
-- (caught by the next sweep), so the sweeper never waits nor deadlocks. A run with a
-- cancel request ends (its CANCEL_STATUS); its %(max_losses)s-th loss errors; any other
-- goes back to pending, epoch unchanged (the next claim raises it). (%(dead)s is SQLite's.)
WITH lost AS (
    SELECT run_id, lease_expires_at >= clock_timestamp() AS died FROM treadle_runs r
    WHERE status = 'running'
      AND (lease_expires_at < clock_timestamp() OR (
           %(check_sessions)s::boolean AND r.worker_lock IS NOT NULL
           AND pg_postmaster_start_time()
               < clock_timestamp() - make_interval(secs => %(grace)s::float8)
           AND NOT EXISTS (
               SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                 AND l.database = (SELECT oid FROM pg_database
                                   WHERE datname = current_database())
                 AND ((l.classid::bigint << 32) | l.objid::bigint) = r.worker_lock)))
    FOR UPDATE SKIP LOCKED
), swept AS (
    UPDATE treadle_runs r SET
        status = CASE
            WHEN r.cancel IS NOT NULL THEN CASE r.cancel WHEN 'cancel' THEN 'cancelled'
                WHEN 'interrupt' THEN 'interrupted' WHEN 'rollback' THEN 'cancelled'
                ELSE 'cancelled' END
            WHEN r.cancel IS NULL AND r.lost_count + 1 >= %(max_losses)s::integer THEN 'error'
            ELSE 'pending' END,
        error = CASE
            WHEN r.cancel IS NOT NULL THEN r.error
            WHEN r.cancel IS NULL AND r.lost_count + 1 >= %(max_losses)s::integer THEN
                'the run''s worker died ' || (r.lost_count + 1)
                || ' times (killed, OOM or lost); giving up; last: '
                || CASE WHEN l.died
                        THEN 'worker ' || coalesce(r.worker, '?')
                             || ' died (its database session ended)'
                        ELSE 'lease of worker ' || coalesce(r.worker, '?') || ' expired' END
                || ' on attempt ' || r.attempt || coalesce('; previous error: ' || r.error, '')
            ELSE CASE WHEN l.died
                      THEN 'worker ' || coalesce(r.worker, '?')
                           || ' died (its database session ended)'
                      ELSE 'lease of worker ' || coalesce(r.worker, '?') || ' expired' END
                || ' on attempt ' || r.attempt || '; queued again' END,
        ended_at = CASE WHEN r.cancel IS NOT NULL
                              OR r.cancel IS NULL AND r.lost_count + 1 >= %(max_losses)s::integer
                        THEN clock_timestamp() END,
        lost_count = r.lost_count + 1,
        worker = NULL,
        worker_lock = NULL,
        lease_expires_at = NULL
    FROM lost AS l
    WHERE r.run_id = l.run_id
    RETURNING r.run_id, r.thread_id, r.status
)
SELECT s.run_id, s.status, s.thread_id,
    CASE WHEN s.status = 'pending' THEN pg_notify('treadle_runs', s.run_id)::text
         ELSE pg_notify('treadle_run_done', s.run_id)::text || coalesce((
            SELECT pg_notify('treadle_runs', n.run_id)::text FROM (
                SELECT p.run_id FROM treadle_runs p
                WHERE p.thread_id = s.thread_id AND p.status = 'pending'
                  AND p.run_id <> s.run_id
                ORDER BY p.seq LIMIT 1) AS n), '')
    END
FROM swept AS s;


-- ==== tasks, workers, events, shipped graphs ================================

-- name: task_submit
-- A new key is inserted; an 'error' row is reset to pending for the submitting run (the
-- orchestrator retries it), and a pending row of another run is adopted by it; the row
-- (re)queued comes back (and is announced). When none does, task_get reads the existing
-- row in a second statement: a fresh snapshot, which sees a row a concurrent submit just
-- committed.
WITH queued AS (
    INSERT INTO treadle_tasks AS t
        (task_key, run_id, thread_id, graph_id, node, payload, max_attempts)
    VALUES (%(task_key)s, %(run_id)s, %(thread_id)s, %(graph_id)s, %(node)s, %(payload)s,
            %(max_attempts)s)
    ON CONFLICT (task_key) DO UPDATE SET
        status = 'pending', run_id = EXCLUDED.run_id, thread_id = EXCLUDED.thread_id,
        graph_id = EXCLUDED.graph_id, node = EXCLUDED.node, payload = EXCLUDED.payload,
        max_attempts = EXCLUDED.max_attempts, attempt = 0, worker = NULL,
        lease_expires_at = NULL, result = NULL, error = NULL, ended_at = NULL
    WHERE t.status = 'error'
       OR (t.status = 'pending' AND t.run_id IS DISTINCT FROM EXCLUDED.run_id)
    RETURNING *
)
SELECT t.task_key, t.run_id, t.thread_id, t.graph_id, t.node, t.payload, t.status,
    t.attempt, t.max_attempts, t.epoch, t.worker, extract(epoch FROM t.lease_expires_at)::float8,
    t.result, t.error, extract(epoch FROM t.created_at)::float8,
    extract(epoch FROM t.ended_at)::float8, pg_notify('treadle_tasks', t.task_key)::text
FROM queued AS t;

-- name: task_get
SELECT t.task_key, t.run_id, t.thread_id, t.graph_id, t.node, t.payload, t.status,
    t.attempt, t.max_attempts, t.epoch, t.worker, extract(epoch FROM t.lease_expires_at)::float8,
    t.result, t.error, extract(epoch FROM t.created_at)::float8,
    extract(epoch FROM t.ended_at)::float8
FROM treadle_tasks AS t WHERE t.task_key = %(task_key)s;

-- name: task_claim
-- Up to %(limit)s pending tasks of running runs, oldest first (graph filter as run_claim),
-- each with its seq last. Concurrent claimers skip each other's (FOR UPDATE SKIP LOCKED).
WITH picked AS (
    SELECT t.task_key FROM treadle_tasks t
    WHERE t.status = 'pending'
      AND (t.graph_id = ANY (%(graph_ids)s::text[])
           OR (%(allow_pickled)s::boolean AND starts_with(t.graph_id, 'pickle:')))
      AND EXISTS (SELECT 1 FROM treadle_runs r
                  WHERE r.run_id = t.run_id AND r.status = 'running')
    ORDER BY t.seq
    LIMIT %(limit)s
    FOR UPDATE OF t SKIP LOCKED
), claimed AS (
    UPDATE treadle_tasks t SET
        status = 'running', worker = %(worker)s, worker_lock = %(lock)s::bigint,
        epoch = t.epoch + 1, attempt = t.attempt + 1,
        lease_expires_at = clock_timestamp() + make_interval(secs => %(ttl)s::float8)
    FROM picked AS p
    WHERE t.task_key = p.task_key
    RETURNING t.*
)
SELECT t.task_key, t.run_id, t.thread_id, t.graph_id, t.node, t.payload, t.status,
    t.attempt, t.max_attempts, t.epoch, t.worker, extract(epoch FROM t.lease_expires_at)::float8,
    t.result, t.error, extract(epoch FROM t.created_at)::float8,
    extract(epoch FROM t.ended_at)::float8, t.seq
FROM claimed AS t ORDER BY t.seq;

-- name: task_heartbeat
-- As run_heartbeat, for tasks (%(task_keys)s, %(task_epochs)s); the task keys still held.
UPDATE treadle_tasks t
SET lease_expires_at = clock_timestamp() + make_interval(secs => %(ttl)s::float8)
FROM unnest(%(task_keys)s::text[], %(task_epochs)s::bigint[]) AS h (task_key, epoch)
WHERE t.task_key = h.task_key AND t.epoch = h.epoch AND t.worker = %(worker)s
  AND t.status = 'running'
RETURNING t.task_key;

-- name: task_finish
-- One row when recorded (none when fenced).
WITH done AS (
    UPDATE treadle_tasks SET status = %(status)s, result = %(result)s, error = %(error)s,
        worker = NULL, worker_lock = NULL, lease_expires_at = NULL,
        ended_at = clock_timestamp()
    WHERE task_key = %(task_key)s AND epoch = %(epoch)s AND status = 'running'
    RETURNING task_key
)
SELECT task_key, pg_notify('treadle_task_done', task_key)::text FROM done;

-- name: task_get_many
SELECT t.task_key, t.run_id, t.thread_id, t.graph_id, t.node, t.payload, t.status,
    t.attempt, t.max_attempts, t.epoch, t.worker, extract(epoch FROM t.lease_expires_at)::float8,
    t.result, t.error, extract(epoch FROM t.created_at)::float8,
    extract(epoch FROM t.ended_at)::float8
FROM treadle_tasks AS t WHERE t.task_key = ANY (%(task_keys)s::text[]) ORDER BY t.seq;

-- name: task_list
SELECT t.task_key, t.run_id, t.thread_id, t.graph_id, t.node, t.payload, t.status,
    t.attempt, t.max_attempts, t.epoch, t.worker, extract(epoch FROM t.lease_expires_at)::float8,
    t.result, t.error, extract(epoch FROM t.created_at)::float8,
    extract(epoch FROM t.ended_at)::float8
FROM treadle_tasks AS t WHERE t.run_id = %(run_id)s ORDER BY t.seq;

-- name: task_sweep
-- Lost tasks (as run_sweep): back to pending or, at their max_attempts, error.
WITH lost AS (
    SELECT task_key, lease_expires_at >= clock_timestamp() AS died FROM treadle_tasks t
    WHERE status = 'running'
      AND (lease_expires_at < clock_timestamp() OR (
           %(check_sessions)s::boolean AND t.worker_lock IS NOT NULL
           AND pg_postmaster_start_time()
               < clock_timestamp() - make_interval(secs => %(grace)s::float8)
           AND NOT EXISTS (
               SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                 AND l.database = (SELECT oid FROM pg_database
                                   WHERE datname = current_database())
                 AND ((l.classid::bigint << 32) | l.objid::bigint) = t.worker_lock)))
    FOR UPDATE SKIP LOCKED
), swept AS (
    UPDATE treadle_tasks t SET
        status = CASE WHEN t.attempt >= t.max_attempts THEN 'error' ELSE 'pending' END,
        error = CASE WHEN l.died
                     THEN 'worker ' || coalesce(t.worker, '?')
                          || ' died (its database session ended)'
                     ELSE 'lease of worker ' || coalesce(t.worker, '?') || ' expired' END
            || ' on attempt ' || t.attempt || ' of ' || t.max_attempts
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
    pg_notify(CASE WHEN s.status = 'pending' THEN 'treadle_tasks' ELSE 'treadle_task_done' END,
              s.task_key)::text
FROM swept AS s;

-- name: event_fence
-- A row while the run is running under %(epoch)s; read FOR SHARE, so a claim raising the
-- epoch waits for this transaction (and then fences the next one). Announces the events
-- inserted after it in the same transaction.
SELECT run_id, pg_notify('treadle_events', run_id)::text FROM treadle_runs
WHERE run_id = %(run_id)s AND epoch = %(epoch)s AND status = 'running'
FOR SHARE;

-- name: event_insert
-- Positional (run_id, seq, kind, data), for Tx.many; a seq already stored is kept as first
-- written.
INSERT INTO treadle_events (run_id, seq, kind, data) VALUES (%s, %s, %s, %s)
ON CONFLICT (run_id, seq) DO NOTHING;

-- name: event_read
SELECT seq, kind, data FROM treadle_events
WHERE run_id = %(run_id)s AND seq > %(after_seq)s ORDER BY seq LIMIT %(limit)s;

-- name: event_purge
-- The events of runs that ended more than %(older_than)s seconds ago.
DELETE FROM treadle_events WHERE run_id IN (
    SELECT run_id FROM treadle_runs WHERE ended_at IS NOT NULL
    AND ended_at < clock_timestamp() - make_interval(secs => %(older_than)s::float8));

-- name: graph_put
INSERT INTO treadle_graphs (graph_id, blob) VALUES (%(graph_id)s, %(blob)s)
ON CONFLICT (graph_id) DO NOTHING;

-- name: graph_get
SELECT blob FROM treadle_graphs WHERE graph_id = %(graph_id)s;

-- name: worker_forget_dead
DELETE FROM treadle_workers
WHERE expires_at <= clock_timestamp() AND worker_id <> %(worker_id)s;

-- name: worker_register
INSERT INTO treadle_workers (worker_id, name, graph_ids, allow_pickled, slots, running,
                             expires_at)
VALUES (%(worker_id)s, %(name)s, %(graph_ids)s::text[], %(allow_pickled)s::boolean,
        %(slots)s::integer, %(running)s::integer,
        clock_timestamp() + make_interval(secs => %(ttl)s::float8))
ON CONFLICT (worker_id) DO UPDATE SET
    name = excluded.name, graph_ids = excluded.graph_ids,
    allow_pickled = excluded.allow_pickled, slots = excluded.slots,
    running = excluded.running, heartbeat_at = clock_timestamp(),
    expires_at = excluded.expires_at;

-- name: worker_remove
DELETE FROM treadle_workers WHERE worker_id = %(worker_id)s;

-- name: worker_list
-- Live workers, oldest first; graph_ids as JSON text (as SQLite stores them).
SELECT w.worker_id, w.name, array_to_json(w.graph_ids)::text, w.allow_pickled, w.slots,
    w.running, extract(epoch FROM w.started_at)::float8,
    extract(epoch FROM w.heartbeat_at)::float8, extract(epoch FROM w.expires_at)::float8
FROM treadle_workers AS w WHERE w.expires_at > clock_timestamp()
ORDER BY w.started_at, w.worker_id;


-- ==== threads, assistants, crons (API resources) =============================

-- Named parameters throughout. JSON parameters are JSON text (cast to jsonb here); JSON
-- columns are returned as text; times as Unix seconds. statement_timestamp() is one value
-- per statement, so a new row's created_at equals its updated_at. A patch locks the row
-- (*_lock, FOR UPDATE) so concurrent patches queue instead of losing each other's changes.

-- name: assistant_insert
-- The new assistant as version 1, or no row when the id exists.
INSERT INTO treadle_assistants
    (assistant_id, graph_id, config, context, metadata, name, description, created_at,
     updated_at)
VALUES (%(assistant_id)s, %(graph_id)s, %(config)s::jsonb, %(context)s::jsonb,
        %(metadata)s::jsonb, %(name)s, %(description)s, statement_timestamp(),
        statement_timestamp())
ON CONFLICT (assistant_id) DO NOTHING
RETURNING assistant_id, graph_id, config::text, context::text, metadata::text, name,
    description, version, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8;

-- name: assistant_snapshot
-- The current record becomes the version it names (made at its updated_at).
INSERT INTO treadle_assistant_versions
    (assistant_id, version, graph_id, config, context, metadata, name, description, created_at)
SELECT assistant_id, version, graph_id, config, context, metadata, name, description, updated_at
FROM treadle_assistants WHERE assistant_id = %(assistant_id)s;

-- name: assistant_get
SELECT assistant_id, graph_id, config::text, context::text, metadata::text, name,
    description, version, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8
FROM treadle_assistants WHERE assistant_id = %(assistant_id)s;

-- name: assistant_lock
SELECT assistant_id, graph_id, config::text, context::text, metadata::text, name,
    description, version, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8
FROM treadle_assistants WHERE assistant_id = %(assistant_id)s FOR UPDATE;

-- name: assistant_update
-- Run after assistant_lock in the same transaction: this statement's snapshot sees every
-- version committed before the lock was granted, so max(version) + 1 is free.
UPDATE treadle_assistants SET graph_id = %(graph_id)s, config = %(config)s::jsonb,
    context = %(context)s::jsonb, metadata = %(metadata)s::jsonb, name = %(name)s,
    description = %(description)s,
    version = (SELECT coalesce(max(version), 0) + 1 FROM treadle_assistant_versions
               WHERE assistant_id = %(assistant_id)s),
    updated_at = statement_timestamp()
WHERE assistant_id = %(assistant_id)s
RETURNING assistant_id, graph_id, config::text, context::text, metadata::text, name,
    description, version, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8;

-- name: assistant_restore
-- Stored version becomes the current record; no row when either is unknown.
UPDATE treadle_assistants a SET graph_id = v.graph_id, config = v.config, context = v.context,
    metadata = v.metadata, name = v.name, description = v.description, version = v.version,
    updated_at = statement_timestamp()
FROM treadle_assistant_versions v
WHERE a.assistant_id = %(assistant_id)s AND v.assistant_id = a.assistant_id
  AND v.version = %(version)s
RETURNING a.assistant_id, a.graph_id, a.config::text, a.context::text, a.metadata::text,
    a.name, a.description, a.version, extract(epoch FROM a.created_at)::float8,
    extract(epoch FROM a.updated_at)::float8;

-- name: assistant_delete_versions
DELETE FROM treadle_assistant_versions WHERE assistant_id = %(assistant_id)s;

-- name: assistant_delete
DELETE FROM treadle_assistants WHERE assistant_id = %(assistant_id)s;

-- name: assistant_search
SELECT assistant_id, graph_id, config::text, context::text, metadata::text, name,
    description, version, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8
FROM treadle_assistants;

-- name: assistant_count
SELECT count(*) FROM treadle_assistants;

-- name: assistant_versions
-- A version as an assistant record (its updated_at is its created_at).
SELECT assistant_id, graph_id, config::text, context::text, metadata::text, name,
    description, version, extract(epoch FROM created_at)::float8,
    extract(epoch FROM created_at)::float8
FROM treadle_assistant_versions;

-- name: assistant_versions_page
ORDER BY version DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: assistant_where_graph_id
graph_id = %(graph_id)s;

-- name: assistant_where_name
-- Case-insensitive substring.
strpos(lower(name), lower(%(name)s)) > 0;

-- name: resource_where_assistant_id
assistant_id = %(assistant_id)s;

-- name: resource_where_metadata
-- The metadata object has every top-level key of the given object with an equal value:
-- @> finds candidates (through the GIN index); the second test turns containment into
-- equality for nested values ({"a": [1, 2]} contains {"a": [1]}).
(metadata @> %(metadata)s::jsonb AND NOT EXISTS (
    SELECT 1 FROM jsonb_each(%(metadata)s::jsonb) f
    WHERE metadata -> f.key IS DISTINCT FROM f.value));

-- name: resource_collate
-- Text columns sort by code point, as on SQLite, whatever the database's collation.
COLLATE "C";

-- name: resource_page
LIMIT %(limit)s OFFSET %(offset)s;

-- name: thread_insert
INSERT INTO treadle_thread_records
    (thread_id, metadata, status, state_values, interrupts, config, error, created_at,
     updated_at)
VALUES (%(thread_id)s, %(metadata)s::jsonb, %(status)s, %(values)s::jsonb,
        %(interrupts)s::jsonb, %(config)s::jsonb, %(error)s, statement_timestamp(),
        statement_timestamp())
ON CONFLICT (thread_id) DO NOTHING
RETURNING thread_id, metadata::text, status, state_values::text, interrupts::text,
    config::text, error, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8;

-- name: thread_get
SELECT thread_id, metadata::text, status, state_values::text, interrupts::text,
    config::text, error, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8
FROM treadle_thread_records WHERE thread_id = %(thread_id)s;

-- name: thread_lock
SELECT thread_id, metadata::text, status, state_values::text, interrupts::text,
    config::text, error, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8
FROM treadle_thread_records WHERE thread_id = %(thread_id)s FOR UPDATE;

-- name: thread_update_metadata
UPDATE treadle_thread_records SET metadata = %(metadata)s::jsonb,
    updated_at = statement_timestamp()
WHERE thread_id = %(thread_id)s
RETURNING thread_id, metadata::text, status, state_values::text, interrupts::text,
    config::text, error, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8;

-- name: thread_state
-- Record a thread's state (set_thread_state; the run queue, in its own transaction, when a
-- run is claimed, finished or swept). Parameters (treadle.store.thread_records.thread_state_params):
-- thread_id, status (one of THREAD_STATUSES), set_values (boolean: replace the values),
-- values (JSON text or NULL), interrupts (JSON text), error (text or NULL).
UPDATE treadle_thread_records SET status = %(status)s,
    state_values = CASE WHEN %(set_values)s THEN %(values)s::jsonb ELSE state_values END,
    interrupts = %(interrupts)s::jsonb, error = %(error)s, updated_at = statement_timestamp()
WHERE thread_id = %(thread_id)s;

-- name: thread_delete
DELETE FROM treadle_thread_records WHERE thread_id = %(thread_id)s;

-- name: thread_search
SELECT thread_id, metadata::text, status, state_values::text, interrupts::text,
    config::text, error, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8
FROM treadle_thread_records;

-- name: thread_count
SELECT count(*) FROM treadle_thread_records;

-- name: thread_where_values
-- As resource_where_metadata, over the state values.
(state_values @> %(values)s::jsonb AND NOT EXISTS (
    SELECT 1 FROM jsonb_each(%(values)s::jsonb) f
    WHERE state_values -> f.key IS DISTINCT FROM f.value));

-- name: thread_where_status
status = %(status)s;

-- name: thread_where_ids
thread_id = ANY(%(ids)s::text[]);

-- ==== thread TTLs and storage (treadle.store.retention) =======================

-- name: thread_ttl_set
-- A thread's TTL (minutes; NULL: none) and strategy; a new TTL makes it due again.
UPDATE treadle_thread_records SET ttl_minutes = %(minutes)s, ttl_strategy = %(strategy)s,
    ttl_swept_at = NULL
WHERE thread_id = %(thread_id)s;

-- name: thread_ttl_get
-- (minutes, strategy, expires_at as Unix seconds), or no row for an unknown thread.
SELECT ttl_minutes, ttl_strategy, extract(epoch FROM
    treadle_ttl_expiry(updated_at, ttl_minutes))::float8
FROM treadle_thread_records WHERE thread_id = %(thread_id)s;

-- name: threads_ttl_claim
-- Claim up to %(limit)s expired threads with no pending or running run, not claimed since
-- their last update (by expiry, through the index treadle_thread_records_ttl; rows another
-- replica's sweep holds are skipped): stamp ttl_swept_at, return (thread_id, strategy).
WITH due AS (
    SELECT r.thread_id FROM treadle_thread_records r
    WHERE r.ttl_minutes IS NOT NULL AND (r.ttl_swept_at IS NULL OR r.ttl_swept_at <= r.updated_at)
      AND treadle_ttl_expiry(r.updated_at, r.ttl_minutes) <= statement_timestamp()
      AND r.updated_at < statement_timestamp()
      AND NOT EXISTS (SELECT 1 FROM treadle_runs q WHERE q.thread_id = r.thread_id
                      AND q.status IN ('pending', 'running'))
    ORDER BY treadle_ttl_expiry(r.updated_at, r.ttl_minutes) LIMIT %(limit)s
    FOR UPDATE OF r SKIP LOCKED)
UPDATE treadle_thread_records t SET ttl_swept_at = clock_timestamp()
FROM due WHERE t.thread_id = due.thread_id
RETURNING t.thread_id, coalesce(t.ttl_strategy, 'delete');

-- name: threads_ttl_release
-- Delete claims older than %(retry)s seconds whose thread is still there (their sweeper
-- died): claimable again.
UPDATE treadle_thread_records SET ttl_swept_at = NULL
WHERE ttl_strategy = 'delete' AND ttl_swept_at > updated_at
  AND ttl_swept_at < clock_timestamp() - make_interval(secs => %(retry)s);

-- name: thread_ttl_still_due
-- (ttl_swept_at is strictly after the updated_at it claimed; an update in the same clock
-- tick as the claim makes them equal, and voids the claim.)
-- The claimed thread, if it was not updated since its claim and has no pending or running
-- run: what makes acting on the claim safe.
SELECT r.thread_id FROM treadle_thread_records r
WHERE r.thread_id = %(thread_id)s AND r.ttl_swept_at > r.updated_at
  AND NOT EXISTS (SELECT 1 FROM treadle_runs q WHERE q.thread_id = r.thread_id
                  AND q.status IN ('pending', 'running'));

-- name: thread_ttl_delete_record
-- As thread_ttl_still_due, deleting the record (the rest goes as DELETE /threads/{id}).
DELETE FROM treadle_thread_records r
WHERE r.thread_id = %(thread_id)s AND r.ttl_swept_at > r.updated_at
  AND NOT EXISTS (SELECT 1 FROM treadle_runs q WHERE q.thread_id = r.thread_id
                  AND q.status IN ('pending', 'running'))
RETURNING r.thread_id;

-- name: thread_storage
-- (part, rows, bytes) of every table holding a thread's rows: the bytes of their stored
-- text, JSON and binary values (octet_length; numbers, times and the database's row and
-- index overhead are not counted). One arm per table: a new table is one more arm.
SELECT 'thread', count(*), coalesce(sum(octet_length(thread_id) + octet_length(metadata::text)
    + coalesce(octet_length(state_values::text), 0) + octet_length(interrupts::text)
    + octet_length(config::text) + coalesce(octet_length(error), 0) + coalesce(octet_length(
    ttl_strategy), 0)), 0) FROM treadle_thread_records WHERE thread_id = %(thread_id)s
UNION ALL SELECT 'fence', count(*), coalesce(sum(octet_length(thread_id) + coalesce(
    octet_length(owner), 0)), 0) FROM treadle_threads WHERE thread_id = %(thread_id)s
UNION ALL SELECT 'checkpoints', count(*), coalesce(sum(octet_length(thread_id)
    + octet_length(checkpoint_ns) + octet_length(checkpoint_id) + coalesce(octet_length(
    parent_checkpoint_id), 0) + coalesce(octet_length(run_id), 0) + octet_length(type)
    + octet_length(checkpoint) + octet_length(channel_versions::text)
    + octet_length(metadata_type) + octet_length(metadata_blob) + octet_length(metadata::text)
    ), 0) FROM treadle_checkpoints WHERE thread_id = %(thread_id)s
UNION ALL SELECT 'blobs', count(*), coalesce(sum(octet_length(thread_id)
    + octet_length(checkpoint_ns) + octet_length(channel) + octet_length(version)
    + octet_length(type) + coalesce(octet_length(blob), 0)), 0)
    FROM treadle_blobs WHERE thread_id = %(thread_id)s
UNION ALL SELECT 'writes', count(*), coalesce(sum(octet_length(thread_id)
    + octet_length(checkpoint_ns) + octet_length(checkpoint_id) + octet_length(task_id)
    + octet_length(channel) + coalesce(octet_length(type), 0) + coalesce(octet_length(blob), 0)
    + octet_length(task_path)), 0) FROM treadle_writes WHERE thread_id = %(thread_id)s
UNION ALL SELECT 'runs', count(*), coalesce(sum(octet_length(run_id) + octet_length(thread_id)
    + octet_length(graph_id) + octet_length(payload) + coalesce(octet_length(worker), 0)
    + octet_length(metadata) + coalesce(octet_length(result), 0) + coalesce(octet_length(
    error), 0) + coalesce(octet_length(idempotency_key), 0) + coalesce(octet_length(
    request_hash), 0)), 0) FROM treadle_runs WHERE thread_id = %(thread_id)s
UNION ALL SELECT 'tasks', count(*), coalesce(sum(octet_length(task_key) + octet_length(run_id)
    + octet_length(thread_id) + octet_length(graph_id) + octet_length(node)
    + octet_length(payload) + coalesce(octet_length(worker), 0) + coalesce(octet_length(
    result), 0) + coalesce(octet_length(error), 0)), 0) FROM treadle_tasks
    WHERE run_id IN (SELECT run_id FROM treadle_runs WHERE thread_id = %(thread_id)s)
UNION ALL SELECT 'events', count(*), coalesce(sum(octet_length(run_id) + octet_length(kind)
    + octet_length(data)), 0) FROM treadle_events
    WHERE run_id IN (SELECT run_id FROM treadle_runs WHERE thread_id = %(thread_id)s);

-- name: cron_insert
INSERT INTO treadle_crons
    (cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time, next_run_at,
     enabled, user_id, created_at, updated_at)
VALUES (%(cron_id)s, %(assistant_id)s, %(thread_id)s, %(schedule)s, %(payload)s::jsonb,
        %(metadata)s::jsonb, %(end_time)s::float8, %(next_run_at)s::float8, %(enabled)s,
        %(user_id)s, statement_timestamp(), statement_timestamp())
ON CONFLICT (cron_id) DO NOTHING
RETURNING cron_id, assistant_id, thread_id, schedule, payload::text, metadata::text,
    end_time, next_run_at, enabled, user_id, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8;

-- name: cron_get
SELECT cron_id, assistant_id, thread_id, schedule, payload::text, metadata::text, end_time,
    next_run_at, enabled, user_id, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8
FROM treadle_crons WHERE cron_id = %(cron_id)s;

-- name: cron_lock
SELECT cron_id, assistant_id, thread_id, schedule, payload::text, metadata::text, end_time,
    next_run_at, enabled, user_id, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8
FROM treadle_crons WHERE cron_id = %(cron_id)s FOR UPDATE;

-- name: cron_update
UPDATE treadle_crons SET schedule = %(schedule)s, payload = %(payload)s::jsonb,
    metadata = %(metadata)s::jsonb, end_time = %(end_time)s::float8, enabled = %(enabled)s,
    next_run_at = %(next_run_at)s::float8, updated_at = statement_timestamp()
WHERE cron_id = %(cron_id)s
RETURNING cron_id, assistant_id, thread_id, schedule, payload::text, metadata::text,
    end_time, next_run_at, enabled, user_id, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8;

-- name: cron_delete
DELETE FROM treadle_crons WHERE cron_id = %(cron_id)s;

-- name: cron_delete_of_thread
DELETE FROM treadle_crons WHERE thread_id = %(thread_id)s;

-- name: cron_search
SELECT cron_id, assistant_id, thread_id, schedule, payload::text, metadata::text, end_time,
    next_run_at, enabled, user_id, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8
FROM treadle_crons;

-- name: cron_count
SELECT count(*) FROM treadle_crons;

-- name: cron_where_thread_id
thread_id = %(thread_id)s;

-- name: cron_where_enabled
enabled = %(enabled)s;

-- name: cron_due
SELECT cron_id, assistant_id, thread_id, schedule, payload::text, metadata::text, end_time,
    next_run_at, enabled, user_id, extract(epoch FROM created_at)::float8,
    extract(epoch FROM updated_at)::float8
FROM treadle_crons
WHERE enabled AND next_run_at <= %(now)s::float8
ORDER BY next_run_at, seq LIMIT %(limit)s;

-- name: cron_advance
-- Compare-and-set: a concurrent advance waits for the row lock, then re-checks the WHERE
-- clause against the row it committed, so only one caller moves a tick.
UPDATE treadle_crons SET next_run_at = %(next_run_at)s::float8, enabled = %(enabled)s,
    updated_at = statement_timestamp()
WHERE cron_id = %(cron_id)s AND enabled AND next_run_at = %(expected)s::float8;


-- ==== API keys (the built-in auth) ===========================================

-- Columns of a key as read back: key_id, tenant_id, role, name, created_at, revoked_at
-- (never its hash, except api_key_hash, which verification alone reads).

-- name: api_key_insert
INSERT INTO treadle_api_keys (key_id, tenant_id, role, name, hash)
VALUES (%(key_id)s, %(tenant_id)s, %(role)s, %(name)s, %(hash)s)
ON CONFLICT (key_id) DO NOTHING
RETURNING key_id, tenant_id, role, name, extract(epoch FROM created_at)::float8,
    extract(epoch FROM revoked_at)::float8;

-- name: api_key_hash
SELECT hash, key_id, tenant_id, role, name, extract(epoch FROM created_at)::float8,
    extract(epoch FROM revoked_at)::float8
FROM treadle_api_keys WHERE key_id = %(key_id)s;

-- name: api_key_list
-- Every key (or a tenant's), in creation order.
SELECT key_id, tenant_id, role, name, extract(epoch FROM created_at)::float8,
    extract(epoch FROM revoked_at)::float8
FROM treadle_api_keys
WHERE %(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s::text
ORDER BY seq;

-- name: api_key_revoke
-- A key revoked twice keeps its first revocation time.
UPDATE treadle_api_keys SET revoked_at = coalesce(revoked_at, clock_timestamp())
WHERE key_id = %(key_id)s
RETURNING key_id, tenant_id, role, name, extract(epoch FROM created_at)::float8,
    extract(epoch FROM revoked_at)::float8;


-- ==== memory items ===========================================================

-- Positional parameters (searches repeat fragments). Sets of keys travel as two text
-- arrays (namespaces, keys); a batch of puts as one JSON array of {"ns", "labels", "k",
-- "v" (the value's JSON text), "ttl"}. Values are jsonb, returned as text; times as Unix
-- seconds. Namespaces are COLLATE "C" text, so a prefix is a bytewise range and listings
-- sort as on SQLite.

-- name: items_get
-- The live items at the (namespace, key) pairs of the two arrays.
SELECT i.namespace, i.key, i.value::text, extract(epoch FROM i.created_at)::float8,
       extract(epoch FROM i.updated_at)::float8, i.ttl_minutes,
       extract(epoch FROM i.expires_at)::float8
FROM unnest(%s::text[], %s::text[]) AS w (namespace, key)
JOIN treadle_items i ON i.namespace = w.namespace AND i.key = w.key
WHERE (i.expires_at IS NULL OR i.expires_at > now());

-- name: items_refresh
-- Extend the TTLs of the live items at the pairs that have one.
UPDATE treadle_items i SET expires_at = now() + make_interval(secs => i.ttl_minutes * 60)
FROM unnest(%s::text[], %s::text[]) AS w (namespace, key)
WHERE i.namespace = w.namespace AND i.key = w.key AND i.ttl_minutes IS NOT NULL
  AND (i.expires_at IS NULL OR i.expires_at > now())
RETURNING i.namespace, i.key, extract(epoch FROM i.expires_at)::float8;

-- name: items_delete
DELETE FROM treadle_items i USING unnest(%s::text[], %s::text[]) AS w (namespace, key)
WHERE i.namespace = w.namespace AND i.key = w.key;

-- name: items_put
-- A write over an expired item creates it anew.
INSERT INTO treadle_items AS i
    (namespace, key, value, created_at, updated_at, ttl_minutes, expires_at)
SELECT w.ns, w.k, w.v::jsonb, now(), now(), w.ttl, now() + make_interval(secs => w.ttl * 60)
FROM jsonb_to_recordset(%s::jsonb) AS w (ns text, k text, v text, ttl float8)
ON CONFLICT (namespace, key) DO UPDATE SET
    value = EXCLUDED.value,
    updated_at = EXCLUDED.updated_at,
    created_at = CASE WHEN i.expires_at <= now() THEN EXCLUDED.created_at ELSE i.created_at END,
    ttl_minutes = EXCLUDED.ttl_minutes,
    expires_at = EXCLUDED.expires_at;

-- name: items_sweep
DELETE FROM treadle_items WHERE expires_at <= now();

-- name: items_search
-- Followed by "AND" filters, then items_search_page.
SELECT i.namespace, i.key, i.value::text, extract(epoch FROM i.created_at)::float8,
       extract(epoch FROM i.updated_at)::float8, i.ttl_minutes,
       extract(epoch FROM i.expires_at)::float8
FROM treadle_items i
WHERE (i.expires_at IS NULL OR i.expires_at > now());

-- name: items_search_page
ORDER BY i.updated_at DESC, i.namespace, i.key LIMIT %s OFFSET %s;

-- name: items_where_prefix
-- The namespace, or one under it: the namespace, its text + '.', its text + '/'
-- ('/' follows '.').
AND (i.namespace = %s OR (i.namespace >= %s AND i.namespace < %s));

-- name: item_vectors_delete
-- The vectors of the (namespace, key) pairs of the two arrays.
DELETE FROM treadle_item_vectors v USING unnest(%s::text[], %s::text[]) AS w (namespace, key)
WHERE v.namespace = w.namespace AND v.key = w.key;

-- name: item_vectors_put
INSERT INTO treadle_item_vectors (namespace, key, field, n, embedding) VALUES (%s, %s, %s, %s, %s);

-- name: items_search_vectors
-- Every live item (then items_where_prefix and "AND" filters, then items_search_vectors_order)
-- with one of its vectors per row (NULL: none); last, its components (migration 0015).
SELECT i.namespace, i.key, i.value::text AS value,
       extract(epoch FROM i.created_at)::float8 AS created_at,
       extract(epoch FROM i.updated_at)::float8 AS updated_at, i.ttl_minutes,
       extract(epoch FROM i.expires_at)::float8 AS expires_at, v.embedding, v.components
FROM treadle_items i
LEFT JOIN treadle_item_vectors v ON v.namespace = i.namespace AND v.key = i.key
WHERE (i.expires_at IS NULL OR i.expires_at > now());

-- name: items_search_vectors_order
ORDER BY i.updated_at DESC, i.namespace, i.key;

-- name: postgres_pgvector_installed
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector');

-- name: postgres_items_pgvector_ranked
-- With pgvector installed: the items of the items_search_vectors query that follows (closed
-- by postgres_items_pgvector_page), each once with its best vector's cosine similarity to %s
-- (the query, real[]) computed by pgvector, ranked and paged in SQL as
-- treadle.store.vectors.rank does it: best first, ties and items without vectors (NULL) in
-- the search's order. A zero vector scores 0. A row written before pgvector was installed
-- has no components: its bytes are decoded here (treadle_f32le).
SELECT s.namespace, s.key, s.value, s.created_at, s.updated_at, s.ttl_minutes, s.expires_at,
       max(s.score)
FROM (SELECT c.namespace, c.key, c.value, c.created_at, c.updated_at, c.ttl_minutes,
             c.expires_at,
             CASE WHEN c.embedding IS NULL THEN NULL
                  ELSE coalesce(nullif(1.0 - (coalesce(c.components, treadle_f32le(c.embedding))
                                              ::vector <=> %s::real[]::vector), 'NaN'::float8),
                                0.0) END AS score
      FROM (

-- name: postgres_items_pgvector_page
) AS c) AS s
GROUP BY 1, 2, 3, 4, 5, 6, 7
ORDER BY 8 DESC NULLS LAST, 5 DESC, 1, 2 LIMIT %s OFFSET %s;

-- name: items_namespaces
-- Distinct live namespaces cut to %s labels (NULL: whole); followed by items_where_prefix,
-- then items_namespaces_filter, its filters and items_namespaces_page.
SELECT DISTINCT (CASE WHEN n.depth IS NULL THEN n.namespace
                      ELSE array_to_string(n.labels[1:n.depth], '.') END) COLLATE "C" AS ns
FROM (SELECT i.namespace, string_to_array(i.namespace, '.') AS labels, %s::int AS depth
      FROM treadle_items i WHERE (i.expires_at IS NULL OR i.expires_at > now());

-- name: items_namespaces_filter
) AS n WHERE true;

-- name: items_where_min_depth
AND cardinality(n.labels) >= %s::int;

-- name: items_where_label
-- The label at position %s (0 = the first) is %s.
AND n.labels[%s::int + 1] = %s;

-- name: items_where_label_from_end
-- The label at position %s from the end (-1 = the last) is %s.
AND n.labels[cardinality(n.labels) + 1 + %s::int] = %s;

-- name: items_namespaces_page
ORDER BY ns LIMIT %s OFFSET %s;

-- Conditions on a top-level field of the value (parameters: the key, then the operand as
-- JSON text, except item_eq_null: the key only, and item_compare_text: the operand as
-- text). Each is true or false, never NULL, so NOT negates it. jsonb equality compares
-- numbers by value, so the four typed equalities are one test here. In the comparisons,
-- {op} stands for one of > >= < <=.

-- name: item_eq_null
coalesce(i.value -> %s, 'null'::jsonb) = 'null'::jsonb;

-- name: item_eq_bool
coalesce(i.value -> %s, 'null'::jsonb) = %s::jsonb;

-- name: item_eq_number
coalesce(i.value -> %s, 'null'::jsonb) = %s::jsonb;

-- name: item_eq_text
coalesce(i.value -> %s, 'null'::jsonb) = %s::jsonb;

-- name: item_eq_json
coalesce(i.value -> %s, 'null'::jsonb) = %s::jsonb;

-- name: item_compare_number
EXISTS (SELECT 1 FROM jsonb_each(i.value) AS j WHERE j.key = %s
        AND jsonb_typeof(j.value) = 'number' AND j.value {op} %s::jsonb);

-- name: item_compare_text
EXISTS (SELECT 1 FROM jsonb_each(i.value) AS j WHERE j.key = %s
        AND jsonb_typeof(j.value) = 'string' AND (j.value #>> '{}') COLLATE "C" {op} %s);


-- ==== audit log (treadle.store.audit_log) =====================================

-- name: audit_lock
-- Appends take turns: a transaction-level advisory lock, released by the commit; the
-- statements after it see what the previous holder committed (READ COMMITTED).
SELECT pg_advisory_xact_lock(hashtextextended('treadle_audit.append', 0));

-- name: audit_head
-- The last record's seq and hash (none: an empty log).
SELECT seq, hash FROM treadle_audit ORDER BY seq DESC LIMIT 1;

-- name: audit_insert
INSERT INTO treadle_audit (seq, at, actor, tenant, action, resource, resource_id, request_id, outcome, detail, prev_hash, hash)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: audit_list
-- Records after %(after_seq)s, oldest first; a NULL filter matches every record.
SELECT seq, at, actor, tenant, action, resource, resource_id, request_id, outcome, detail, prev_hash, hash
FROM treadle_audit
WHERE seq > %(after_seq)s
  AND (%(actor)s::text IS NULL OR actor = %(actor)s::text)
  AND (%(action)s::text IS NULL OR action = %(action)s::text)
  AND (%(resource_id)s::text IS NULL OR resource_id = %(resource_id)s::text)
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
ORDER BY seq LIMIT %(limit)s;

-- name: audit_list_newest
-- The newest records before %(before_seq)s, newest first; a NULL filter matches every record.
SELECT seq, at, actor, tenant, action, resource, resource_id, request_id, outcome, detail, prev_hash, hash
FROM treadle_audit
WHERE seq < %(before_seq)s
  AND (%(actor)s::text IS NULL OR actor = %(actor)s::text)
  AND (%(action)s::text IS NULL OR action = %(action)s::text)
  AND (%(resource_id)s::text IS NULL OR resource_id = %(resource_id)s::text)
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
ORDER BY seq DESC LIMIT %(limit)s;


-- ==== end ====================================================================


-- ==== access filters (treadle.store.access) ===================================
-- Fragments an authorization filter compiles to, over a resource's `metadata` column.
-- Each binds one parameter, %(access)s (renamed per use), a JSON object {key: value}.

-- name: access_eq
-- metadata[key] equals value (as resource_where_metadata, for one key).
EXISTS (SELECT 1 FROM jsonb_each(%(access)s::jsonb) f WHERE metadata -> f.key = f.value);

-- name: access_contains
-- metadata[key] is an array with an element equal to value.
EXISTS (SELECT 1 FROM jsonb_each(%(access)s::jsonb) f WHERE EXISTS (
    SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(metadata -> f.key) = 'array'
        THEN metadata -> f.key ELSE '[]'::jsonb END) e WHERE e = f.value));

-- name: access_all
1 = 1;

-- name: access_none
1 = 0;
