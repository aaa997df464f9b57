-- treadle schema v3 (PostgreSQL): the run queue (treadle.store.queue.RunQueue): runs, node
-- tasks, stream events, graphs shipped by value; and treadle_apply learns run-fenced claims.
-- "pre": only adds tables and functions (treadle_apply keeps accepting every v2 operation).
--
-- Times are timestamptz from the server's clock (clock_timestamp()); the store returns them
-- as Unix seconds. Runs and tasks carry an identity ``seq``: their queue order, strictly
-- increasing, so "oldest first" is exact. A thread's runs are queued under a lock on its
-- treadle_threads row, so its runs' seqs follow the order they were queued in.
CREATE TABLE IF NOT EXISTS treadle_runs (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY,
    run_id           TEXT PRIMARY KEY,
    thread_id        TEXT NOT NULL,
    graph_id         TEXT NOT NULL,
    payload          BYTEA NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                         ('pending', 'running', 'success', 'error', 'interrupted', 'cancelled',
                          'timeout')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3,
    epoch            BIGINT NOT NULL DEFAULT 0,
    worker           TEXT,
    lease_expires_at TIMESTAMPTZ,
    timeout_s        DOUBLE PRECISION,
    stream           BOOLEAN NOT NULL DEFAULT false,
    cancel           TEXT CHECK (cancel IN ('cancel', 'interrupt', 'rollback')),
    metadata         TEXT NOT NULL DEFAULT '{}',
    result           BYTEA,
    error            TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    started_at       TIMESTAMPTZ,
    ended_at         TIMESTAMPTZ
);
CREATE UNIQUE INDEX IF NOT EXISTS treadle_runs_seq ON treadle_runs (seq);
-- The hard guarantee: at most one running run per thread.
CREATE UNIQUE INDEX IF NOT EXISTS treadle_runs_one_running
    ON treadle_runs (thread_id) WHERE status = 'running';
-- Claims: pending runs, oldest first.
CREATE INDEX IF NOT EXISTS treadle_runs_pending ON treadle_runs (seq) WHERE status = 'pending';
-- A thread's active runs; "an older pending run on this thread" (claims).
CREATE INDEX IF NOT EXISTS treadle_runs_thread ON treadle_runs (thread_id, status, seq);
-- The sweeper: running runs by lease expiry.
CREATE INDEX IF NOT EXISTS treadle_runs_lease
    ON treadle_runs (lease_expires_at) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS treadle_tasks (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY,
    task_key         TEXT PRIMARY KEY,
    run_id           TEXT NOT NULL,
    thread_id        TEXT NOT NULL,
    graph_id         TEXT NOT NULL,
    node             TEXT NOT NULL,
    payload          BYTEA NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                         ('pending', 'running', 'success', 'error')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3,
    epoch            BIGINT NOT NULL DEFAULT 0,
    worker           TEXT,
    lease_expires_at TIMESTAMPTZ,
    result           BYTEA,
    error            TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    ended_at         TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS treadle_tasks_pending ON treadle_tasks (seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS treadle_tasks_run_id ON treadle_tasks (run_id, seq);
CREATE INDEX IF NOT EXISTS treadle_tasks_lease
    ON treadle_tasks (lease_expires_at) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS treadle_events (
    run_id     TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    data       BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE IF NOT EXISTS treadle_graphs (
    graph_id   TEXT PRIMARY KEY,
    blob       BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- treadle_enqueue_run: queue a run under a lock on its thread's row, so the multitask
-- decision and the insert are atomic (enqueue_run). 'reject' on a busy thread raises
-- SQLSTATE TRBSY with the active run ids as a JSON array in DETAIL (nothing is written);
-- 'interrupt' / 'rollback' end the pending runs at once and ask the running one to stop.
-- Notifies treadle_runs [run_id], treadle_run_done / treadle_cancel for the runs it stops.
CREATE OR REPLACE FUNCTION treadle_enqueue_run(
    p_run_id text, p_thread_id text, p_graph_id text, p_payload bytea, p_max_attempts integer,
    p_timeout_s double precision, p_stream boolean, p_metadata text, p_multitask text
) RETURNS SETOF treadle_runs
LANGUAGE plpgsql AS $$
DECLARE
    active text[];
    stopped text;
BEGIN
    INSERT INTO treadle_threads (thread_id, epoch) VALUES (p_thread_id, 0)
    ON CONFLICT (thread_id) DO NOTHING;
    PERFORM 1 FROM treadle_threads WHERE thread_id = p_thread_id FOR UPDATE;
    SELECT array_agg(run_id ORDER BY seq) INTO active FROM treadle_runs
    WHERE thread_id = p_thread_id AND status IN ('pending', 'running');
    IF active IS NOT NULL THEN
        IF p_multitask = 'reject' THEN
            RAISE EXCEPTION 'thread % is busy', p_thread_id
                USING ERRCODE = 'TRBSY', DETAIL = array_to_json(active)::text;
        ELSIF p_multitask IN ('interrupt', 'rollback') THEN
            -- Pending ones first: one a claimer holds is then seen running below.
            FOR stopped IN
                UPDATE treadle_runs SET
                    status = CASE p_multitask WHEN 'interrupt' THEN 'interrupted' ELSE 'cancelled' END,
                    cancel = p_multitask, ended_at = clock_timestamp()
                WHERE thread_id = p_thread_id AND status = 'pending'
                RETURNING run_id
            LOOP
                PERFORM pg_notify('treadle_run_done', stopped);
            END LOOP;
            FOR stopped IN
                UPDATE treadle_runs SET cancel = p_multitask
                WHERE thread_id = p_thread_id AND status = 'running'
                RETURNING run_id
            LOOP
                PERFORM pg_notify('treadle_cancel', stopped);
            END LOOP;
        END IF;
    END IF;
    RETURN QUERY
        INSERT INTO treadle_runs
            (run_id, thread_id, graph_id, payload, max_attempts, timeout_s, stream, metadata)
        VALUES (p_run_id, p_thread_id, p_graph_id, p_payload, p_max_attempts, p_timeout_s,
                p_stream, p_metadata)
        RETURNING *;
    PERFORM pg_notify('treadle_runs', p_run_id);
END
$$;

-- treadle_claim_run: claim the oldest claimable run (claim_run). Candidates are locked
-- FOR UPDATE SKIP LOCKED, so concurrent claimers never get the same run. Two claimers can
-- still pick two runs of one thread (each saw the thread idle in its snapshot); the
-- partial unique index treadle_runs_one_running stops the second, which skips that thread
-- and looks again (each statement in the loop takes a fresh snapshot) instead of failing.
CREATE OR REPLACE FUNCTION treadle_claim_run(
    p_worker text, p_graph_ids text[], p_allow_pickled boolean, p_ttl double precision
) RETURNS SETOF treadle_runs
LANGUAGE plpgsql AS $$
DECLARE
    cand_run text;
    cand_thread text;
    busy text[] := '{}';
    claimed treadle_runs;
BEGIN
    LOOP
        SELECT r.run_id, r.thread_id INTO cand_run, cand_thread
        FROM treadle_runs r
        WHERE r.status = 'pending'
          AND (r.graph_id = ANY (p_graph_ids)
               OR (p_allow_pickled AND starts_with(r.graph_id, 'pickle:')))
          AND r.thread_id <> ALL (busy)
          AND NOT EXISTS (SELECT 1 FROM treadle_runs o
                          WHERE o.thread_id = r.thread_id AND o.status = 'running')
          AND NOT EXISTS (SELECT 1 FROM treadle_runs o
                          WHERE o.thread_id = r.thread_id AND o.status = 'pending'
                            AND o.seq < r.seq)
        ORDER BY r.seq
        LIMIT 1
        FOR UPDATE OF r SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        BEGIN
            UPDATE treadle_runs SET
                status = 'running', worker = p_worker, epoch = epoch + 1, attempt = attempt + 1,
                lease_expires_at = clock_timestamp() + make_interval(secs => p_ttl),
                started_at = coalesce(started_at, clock_timestamp())
            WHERE run_id = cand_run AND status = 'pending'
            RETURNING * INTO claimed;
            IF FOUND THEN
                RETURN NEXT claimed;
                RETURN;
            END IF;
        EXCEPTION WHEN unique_violation THEN
            -- Another claimer started a run of this thread meanwhile.
            NULL;
        END;
        busy := busy || cand_thread;
    END LOOP;
END
$$;

-- v3 of treadle_apply (first defined by migration 0002). New: a claim may name a cluster
-- run, {"k": "claim", "thread_id", "token", "run_id", "run_epoch"}; it is applied only while
-- treadle_runs holds that run 'running' under run_epoch, else its result is
-- {"fenced": <the thread's epoch or 0>} and the thread keeps its owner. The thread's row
-- is locked (created first if missing) before the run is read, with a fresh snapshot: a
-- stale claim either sees the raised run epoch, or commits before the claim of the run's
-- new execution, which then takes the thread over. Locking the thread row first, as
-- enqueue does, means no run row is locked here (heartbeats and claims never wait for a
-- write batch, and there is no lock-order cycle with them).
CREATE OR REPLACE FUNCTION treadle_apply(batch jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    op jsonb;
    results jsonb := '[]'::jsonb;
    cur_epoch bigint;
    cur_owner text;
    new_epoch bigint;
BEGIN
    FOR op IN SELECT value FROM jsonb_array_elements(batch) LOOP
        IF op->>'k' = 'claim' THEN
            IF op->>'run_id' IS NOT NULL THEN
                INSERT INTO treadle_threads (thread_id, epoch) VALUES (op->>'thread_id', 0)
                ON CONFLICT (thread_id) DO NOTHING;
                SELECT epoch INTO cur_epoch FROM treadle_threads
                WHERE thread_id = op->>'thread_id' FOR UPDATE;
                PERFORM 1 FROM treadle_runs
                WHERE run_id = op->>'run_id' AND status = 'running'
                  AND epoch = (op->>'run_epoch')::bigint;
                IF NOT FOUND THEN
                    results := results || jsonb_build_array(
                        jsonb_build_object('fenced', coalesce(cur_epoch, 0)));
                    CONTINUE;
                END IF;
            END IF;
            INSERT INTO treadle_threads (thread_id, epoch, owner)
            VALUES (op->>'thread_id', 1, op->>'token')
            ON CONFLICT (thread_id) DO UPDATE SET
                epoch = treadle_threads.epoch + 1,
                owner = EXCLUDED.owner,
                updated_at = now()
            RETURNING epoch INTO new_epoch;
            results := results || to_jsonb(new_epoch);
            CONTINUE;
        END IF;

        IF op ? 'token' THEN
            SELECT epoch, owner INTO cur_epoch, cur_owner
            FROM treadle_threads WHERE thread_id = op->>'thread_id' FOR SHARE;
            IF NOT FOUND OR cur_owner IS DISTINCT FROM op->>'token' THEN
                results := results || jsonb_build_array(
                    jsonb_build_object('fenced', coalesce(cur_epoch, 0)));
                CONTINUE;
            END IF;
        END IF;

        IF op->>'k' = 'checkpoint' THEN
            -- Only create a missing thread row: updated_at is stamped by each claim.
            INSERT INTO treadle_threads (thread_id, epoch) VALUES (op->>'thread_id', 0)
            ON CONFLICT (thread_id) DO NOTHING;
            INSERT INTO treadle_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
            SELECT op->>'thread_id', op->>'ns', b.c, b.v, b.t, decode(b.b, 'base64')
            FROM jsonb_to_recordset(op->'blobs') AS b (c text, v text, t text, b text)
            ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING;
            INSERT INTO treadle_checkpoints
                (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type,
                 checkpoint, channel_versions, metadata_type, metadata_blob, metadata)
            VALUES (op->>'thread_id', op->>'ns', op->>'id', op->>'parent', op->>'run_id',
                    op->>'type', decode(op->>'checkpoint', 'base64'),
                    (op->>'versions')::jsonb, op->>'metadata_type',
                    decode(op->>'metadata_blob', 'base64'), (op->>'metadata')::jsonb)
            ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET
                parent_checkpoint_id = EXCLUDED.parent_checkpoint_id,
                run_id = EXCLUDED.run_id,
                type = EXCLUDED.type,
                checkpoint = EXCLUDED.checkpoint,
                channel_versions = EXCLUDED.channel_versions,
                metadata_type = EXCLUDED.metadata_type,
                metadata_blob = EXCLUDED.metadata_blob,
                metadata = EXCLUDED.metadata;
        ELSIF op->>'k' = 'writes' THEN
            IF (op->>'upsert')::boolean THEN
                -- Special channels (errors, interrupts, ...) replace what is there.
                INSERT INTO treadle_writes
                    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type,
                     blob, task_path)
                SELECT op->>'thread_id', op->>'ns', op->>'id', w.k, w.i, w.c, w.t,
                       decode(w.b, 'base64'), w.p
                FROM jsonb_to_recordset(op->'rows')
                     AS w (k text, i int, c text, t text, b text, p text)
                ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET
                    channel = EXCLUDED.channel,
                    type = EXCLUDED.type,
                    blob = EXCLUDED.blob,
                    task_path = EXCLUDED.task_path;
            ELSE
                -- Regular writes are kept as first written (a retried task rewrites them).
                INSERT INTO treadle_writes
                    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type,
                     blob, task_path)
                SELECT op->>'thread_id', op->>'ns', op->>'id', w.k, w.i, w.c, w.t,
                       decode(w.b, 'base64'), w.p
                FROM jsonb_to_recordset(op->'rows')
                     AS w (k text, i int, c text, t text, b text, p text)
                ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING;
            END IF;
        ELSE
            RAISE EXCEPTION 'treadle_apply: unknown operation kind %', op->>'k';
        END IF;
        results := results || jsonb_build_array(NULL::jsonb);
    END LOOP;
    RETURN results;
END
$$;
