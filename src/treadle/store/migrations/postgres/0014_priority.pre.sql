-- treadle schema v14 (PostgreSQL): run priority and fair queuing between groups (langgraph.json
-- "priority", treadle.server.priority).
-- "pre": only adds columns, a table, a sequence, an index, a trigger and a new body for the
-- 5-argument claim; code older than v14 queues runs that take the defaults (priority 0,
-- group 'default'), and with no priority set the claim is the FIFO of v7.
--
-- A thread's settings (priority -5..5, lower first; fair_group) are stored once, at its
-- first run, on its treadle_threads row: the first stored wins (thread_priority_set). Its
-- runs copy them when inserted (the trigger below), so a claim reads runs alone.
-- treadle_fair_groups has a row per group (thread_priority_set adds it; 'default' is
-- here from the start); served numbers the claims: the group claimed from least recently
-- (or never) has the smallest (or no) number.
ALTER TABLE treadle_threads ADD COLUMN IF NOT EXISTS priority SMALLINT;
ALTER TABLE treadle_threads ADD COLUMN IF NOT EXISTS fair_group TEXT;
ALTER TABLE treadle_runs ADD COLUMN IF NOT EXISTS priority SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE treadle_runs ADD COLUMN IF NOT EXISTS fair_group TEXT NOT NULL DEFAULT 'default';
CREATE TABLE IF NOT EXISTS treadle_fair_groups (
    fair_group TEXT PRIMARY KEY,
    served     BIGINT  -- NULL: never claimed from
);
CREATE SEQUENCE IF NOT EXISTS treadle_fair_served;
INSERT INTO treadle_fair_groups (fair_group) VALUES ('default') ON CONFLICT DO NOTHING;
CREATE INDEX IF NOT EXISTS treadle_fair_groups_served ON treadle_fair_groups (served);  -- its max
-- Claims: each group's pending runs by priority then age; the claim also walks the groups
-- that have pending runs along it (a loose index scan).
CREATE INDEX IF NOT EXISTS treadle_runs_pending_fair
    ON treadle_runs (fair_group, priority, seq) WHERE status = 'pending';

CREATE OR REPLACE FUNCTION treadle_run_priority() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.priority := coalesce(
        (SELECT t.priority FROM treadle_threads t WHERE t.thread_id = NEW.thread_id), 0);
    NEW.fair_group := coalesce(
        (SELECT t.fair_group FROM treadle_threads t WHERE t.thread_id = NEW.thread_id),
        'default');
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS treadle_run_priority ON treadle_runs;
CREATE TRIGGER treadle_run_priority BEFORE INSERT ON treadle_runs
    FOR EACH ROW EXECUTE FUNCTION treadle_run_priority();

-- treadle_claim_run: of the claimable runs (pending, an allowed graph, no running run on its
-- thread, no older pending run on its thread), the lowest priority; among equals, the one
-- of the group claimed from least recently; then the oldest. Each group's best run is
-- found through treadle_runs_pending_fair, so a claim costs one probe per group with
-- pending runs, not one per pending run. The candidate is then locked FOR UPDATE SKIP
-- LOCKED: one another claimer holds is skipped (taken), as is a thread a concurrent claim
-- started meanwhile (busy: the partial unique index on running runs). The claimed run's
-- group is marked served by run_served, in the claim's transaction.
CREATE OR REPLACE FUNCTION treadle_claim_run(
    p_worker text, p_graph_ids text[], p_allow_pickled boolean, p_ttl double precision,
    p_lock bigint
) RETURNS SETOF treadle_runs
LANGUAGE plpgsql AS $$
DECLARE
    cand_run text;
    cand_thread text;
    busy text[] := '{}';
    taken text[] := '{}';
    claimed treadle_runs;
BEGIN
    LOOP
        WITH RECURSIVE groups(fair_group) AS (
            (SELECT r.fair_group FROM treadle_runs r WHERE r.status = 'pending'
             ORDER BY r.fair_group LIMIT 1)
            UNION ALL
            SELECT (SELECT r.fair_group FROM treadle_runs r
                    WHERE r.status = 'pending' AND r.fair_group > g.fair_group
                    ORDER BY r.fair_group LIMIT 1)
            FROM groups g WHERE g.fair_group IS NOT NULL
        )
        SELECT h.run_id, h.thread_id INTO cand_run, cand_thread
        FROM groups g
        CROSS JOIN LATERAL (
            SELECT r.run_id, r.thread_id, r.priority, r.seq FROM treadle_runs r
            WHERE r.status = 'pending' AND r.fair_group = g.fair_group
              AND (r.graph_id = ANY (p_graph_ids)
                   OR (p_allow_pickled AND starts_with(r.graph_id, 'pickle:')))
              AND r.thread_id <> ALL (busy)
              AND r.run_id <> ALL (taken)
              AND NOT EXISTS (SELECT 1 FROM treadle_runs o
                              WHERE o.thread_id = r.thread_id AND o.status = 'running')
              AND NOT EXISTS (SELECT 1 FROM treadle_runs o
                              WHERE o.thread_id = r.thread_id AND o.status = 'pending'
                                AND o.seq < r.seq)
            ORDER BY r.priority, r.seq
            LIMIT 1) h
        LEFT JOIN treadle_fair_groups f ON f.fair_group = g.fair_group
        WHERE g.fair_group IS NOT NULL
        ORDER BY h.priority, f.served NULLS FIRST, h.seq
        LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        PERFORM 1 FROM treadle_runs
        WHERE run_id = cand_run AND status = 'pending' FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            taken := taken || cand_run;
            CONTINUE;
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
