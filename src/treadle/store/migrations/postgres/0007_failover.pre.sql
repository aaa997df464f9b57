-- treadle schema v7 (PostgreSQL): failover that does not wait for the lease, and a budget of
-- worker losses separate from the run's attempts.
-- "pre": only adds columns and a function overload; the 4-argument claim old code calls keeps
-- working (it now records "no session lock", so its runs fall back to the lease).
--
-- worker_lock: the key of the session-level advisory lock (pg_advisory_lock(bigint)) the
-- claiming worker holds on a dedicated connection for its whole life. When that worker's
-- session ends (kill -9, OOM: the kernel closes its socket) the lock is released, and the
-- sweeper re-queues its running runs and tasks at once instead of waiting for the lease.
-- NULL: the claimer holds no such lock (old code; SQLite), the lease alone decides.
-- lost_count: how many times the sweeper took the run back from a lost worker (lock gone or
-- lease expired); the run errors once it reaches the sweeper's TREADLE_MAX_WORKER_LOSSES.
ALTER TABLE treadle_runs ADD COLUMN IF NOT EXISTS lost_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE treadle_runs ADD COLUMN IF NOT EXISTS worker_lock BIGINT;
ALTER TABLE treadle_tasks ADD COLUMN IF NOT EXISTS worker_lock BIGINT;

-- treadle_claim_run with the claimer's lock key (see 0003 for the claim itself).
CREATE OR REPLACE FUNCTION treadle_claim_run(
    p_worker text, p_graph_ids text[], p_allow_pickled boolean, p_ttl double precision,
    p_lock bigint
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
                status = 'running', worker = p_worker, worker_lock = p_lock,
                epoch = epoch + 1, attempt = attempt + 1,
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

-- The claim of code older than v7: no lock, so a stale key from an earlier claim never
-- makes the sweeper take an old worker's run away from it.
CREATE OR REPLACE FUNCTION treadle_claim_run(
    p_worker text, p_graph_ids text[], p_allow_pickled boolean, p_ttl double precision
) RETURNS SETOF treadle_runs
LANGUAGE sql AS $$
    SELECT * FROM treadle_claim_run(p_worker, p_graph_ids, p_allow_pickled, p_ttl, NULL::bigint)
$$;
