-- treadle schema v12 (PostgreSQL): treadle_apply v4, leaner per batch (same operations,
-- same results, same fencing). "pre": only replaces a function; code of earlier versions keeps working.
--
-- What changed from v3 (migration 0003): a thread's ownership is checked once per batch
-- for a given token (a batch usually holds a step's task writes and its checkpoint, both
-- of one thread): the row stays locked FOR SHARE until the commit, so what was checked
-- holds for the rest of the batch; a claim in the batch re-decides it. A checkpoint whose
-- token was checked does not try to create its thread's row (the check found it). The
-- results are collected in an array and turned into JSON once.
--
-- Operations and results are those of v3 (migration 0003's header).
CREATE OR REPLACE FUNCTION treadle_apply(batch jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    op jsonb;
    results jsonb[] := '{}';
    cur_epoch bigint;
    cur_owner text;
    new_epoch bigint;
    op_thread text;
    op_token text;
    -- The (thread, token) pair last found owning its thread in this batch.
    ok_thread text;
    ok_token text;
BEGIN
    FOR op IN SELECT value FROM jsonb_array_elements(batch) LOOP
        op_thread := op->>'thread_id';
        op_token := op->>'token';
        IF op->>'k' = 'claim' THEN
            IF op->>'run_id' IS NOT NULL THEN
                INSERT INTO treadle_threads (thread_id, epoch) VALUES (op_thread, 0)
                ON CONFLICT (thread_id) DO NOTHING;
                SELECT epoch INTO cur_epoch FROM treadle_threads
                WHERE thread_id = op_thread FOR UPDATE;
                PERFORM 1 FROM treadle_runs
                WHERE run_id = op->>'run_id' AND status = 'running'
                  AND epoch = (op->>'run_epoch')::bigint;
                IF NOT FOUND THEN
                    results := results || jsonb_build_object('fenced', coalesce(cur_epoch, 0));
                    IF ok_thread = op_thread THEN
                        ok_thread := NULL;
                    END IF;
                    CONTINUE;
                END IF;
            END IF;
            INSERT INTO treadle_threads (thread_id, epoch, owner)
            VALUES (op_thread, 1, op_token)
            ON CONFLICT (thread_id) DO UPDATE SET
                epoch = treadle_threads.epoch + 1,
                owner = EXCLUDED.owner,
                updated_at = now()
            RETURNING epoch INTO new_epoch;
            results := results || to_jsonb(new_epoch);
            -- The claimer owns the thread now (the row is locked until the commit).
            ok_thread := op_thread;
            ok_token := op_token;
            CONTINUE;
        END IF;

        IF op_token IS NOT NULL AND (ok_thread IS DISTINCT FROM op_thread
                                     OR ok_token IS DISTINCT FROM op_token) THEN
            SELECT epoch, owner INTO cur_epoch, cur_owner
            FROM treadle_threads WHERE thread_id = op_thread FOR SHARE;
            IF NOT FOUND OR cur_owner IS DISTINCT FROM op_token THEN
                results := results || jsonb_build_object('fenced', coalesce(cur_epoch, 0));
                CONTINUE;
            END IF;
            ok_thread := op_thread;
            ok_token := op_token;
        END IF;

        IF op->>'k' = 'checkpoint' THEN
            IF op_token IS NULL THEN
                -- Only create a missing thread row: updated_at is stamped by each claim.
                -- (A checked token found the row already.)
                INSERT INTO treadle_threads (thread_id, epoch) VALUES (op_thread, 0)
                ON CONFLICT (thread_id) DO NOTHING;
            END IF;
            INSERT INTO treadle_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
            SELECT op_thread, op->>'ns', b.c, b.v, b.t, decode(b.b, 'base64')
            FROM jsonb_to_recordset(op->'blobs') AS b (c text, v text, t text, b text)
            ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING;
            INSERT INTO treadle_checkpoints
                (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type,
                 checkpoint, channel_versions, metadata_type, metadata_blob, metadata)
            VALUES (op_thread, op->>'ns', op->>'id', op->>'parent', op->>'run_id',
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
                SELECT op_thread, op->>'ns', op->>'id', w.k, w.i, w.c, w.t,
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
                SELECT op_thread, op->>'ns', op->>'id', w.k, w.i, w.c, w.t,
                       decode(w.b, 'base64'), w.p
                FROM jsonb_to_recordset(op->'rows')
                     AS w (k text, i int, c text, t text, b text, p text)
                ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING;
            END IF;
        ELSE
            RAISE EXCEPTION 'treadle_apply: unknown operation kind %', op->>'k';
        END IF;
        results := results || NULL::jsonb;
    END LOOP;
    RETURN to_jsonb(results);
END
$$;
