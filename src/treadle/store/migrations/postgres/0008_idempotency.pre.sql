-- treadle schema v8 (PostgreSQL): idempotent run creation.
-- "pre": only adds columns, an index and a function overload; the 9-argument
-- treadle_enqueue_run old code calls keeps working (its runs have no key).
--
-- idempotency_key: the key a client created the run under (the HTTP API scopes it: see
-- treadle.server.idempotency); a second enqueue with the key returns this run instead of
-- queueing another. request_hash: a digest of the creating request, so the key reused for a
-- different request is refused rather than answered with the wrong run.
ALTER TABLE treadle_runs ADD COLUMN IF NOT EXISTS idempotency_key TEXT;
ALTER TABLE treadle_runs ADD COLUMN IF NOT EXISTS request_hash TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS treadle_runs_idempotency_key
    ON treadle_runs (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- treadle_enqueue_run with an idempotency key: under a transaction-level advisory lock on the
-- key (concurrent enqueues with one key are serialised; each statement of this function sees
-- what the previous holder committed), return the key's run if there is one, untouched;
-- otherwise queue the run as the 9-argument function does and record the key on it, in the
-- same transaction. The caller compares request_hash (a different request is refused).
CREATE OR REPLACE FUNCTION treadle_enqueue_run(
    p_run_id text, p_thread_id text, p_graph_id text, p_payload bytea, p_max_attempts integer,
    p_timeout_s double precision, p_stream boolean, p_metadata text, p_multitask text,
    p_idempotency_key text, p_request_hash text
) RETURNS SETOF treadle_runs
LANGUAGE plpgsql AS $$
DECLARE
    found_run treadle_runs;
BEGIN
    IF p_idempotency_key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(
            hashtextextended('treadle_runs.idempotency_key:' || p_idempotency_key, 0));
        SELECT * INTO found_run FROM treadle_runs WHERE idempotency_key = p_idempotency_key;
        IF FOUND THEN
            RETURN NEXT found_run;
            RETURN;
        END IF;
    END IF;
    PERFORM 1 FROM treadle_enqueue_run(p_run_id, p_thread_id, p_graph_id, p_payload,
                                       p_max_attempts, p_timeout_s, p_stream, p_metadata,
                                       p_multitask);
    RETURN QUERY
        UPDATE treadle_runs SET idempotency_key = p_idempotency_key, request_hash = p_request_hash
        WHERE run_id = p_run_id
        RETURNING *;
END
$$;
