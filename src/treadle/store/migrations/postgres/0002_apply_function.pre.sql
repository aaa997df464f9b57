-- treadle schema v2 (PostgreSQL): treadle_apply(batch), the group committer's write path.
-- "pre": only adds a function; code of v1 keeps working beside it.
--
-- One call applies a whole batch of write operations in one statement, hence one
-- transaction under autocommit and one round trip. Each operation is a JSON object:
--   {"k": "claim", "thread_id", "token"}                      -> new epoch
--   {"k": "checkpoint", "thread_id", "ns", "id", "parent", "run_id", "type", "checkpoint"(b64),
--    "versions"(json text), "metadata_type", "metadata_blob"(b64), "metadata"(json text),
--    "blobs": [{"c","v","t","b"(b64|null)}], "token"?}       -> null
--   {"k": "writes", "thread_id", "ns", "id", "upsert", "rows": [{"k","i","c","t","b","p"}],
--    "token"?}                                                 -> null
-- An operation carrying a token is applied only while that token owns the thread (read
-- FOR SHARE, so a concurrent claim waits for this transaction); otherwise it is skipped
-- and its result is {"fenced": <the thread's epoch>}. Later operations see earlier ones.
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
