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
    SELECT array_agg(b.channel) AS channels, array_agg(b.version) AS versions,
           array_agg(b.type) AS types, array_agg(b.blob) AS blobs
    FROM jsonb_each_text(c.channel_versions) AS v
    JOIN treadle_blobs b
      ON b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
     AND b.channel = v.key AND b.version = v.value
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
-- running on it. %s = thread ids.
UPDATE treadle_threads SET epoch = epoch + 1, owner = NULL WHERE thread_id = ANY(%s::text[]);

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
      AND v.key = b.channel AND v.value = b.version);

-- name: postgres_apply_batch
-- The group committer's batch (claims, checkpoints, task writes) as one JSON document,
-- applied by treadle_apply (migrations 0002, 0003): one statement, so one transaction
-- under autocommit and one round trip. Fencing is checked inside it, per operation,
-- against the thread row read FOR SHARE.
SELECT treadle_apply(%s::jsonb);


-- ==== runs ===================================================================



-- ==== tasks, workers, events, shipped graphs ================================



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


-- ==== end ====================================================================
