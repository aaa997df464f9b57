-- treadle schema v9 (PostgreSQL): the audit log (treadle.store.audit_log).
-- "pre": only adds a table, a function and triggers.
--
-- One row per recorded action, numbered 1, 2, 3 ... (seq), each carrying the hash of the
-- row before it (prev_hash) and its own (hash: sha256 over a canonical encoding of the row
-- and prev_hash, computed by treadle): a chain that any edit breaks. detail is JSON kept as
-- the exact text that was hashed (jsonb would normalise it). Appends are serialised by a
-- transaction-level advisory lock (audit_lock). UPDATE, DELETE and TRUNCATE are refused by
-- the triggers below: the table is append-only for every role that cannot drop them.
CREATE TABLE IF NOT EXISTS treadle_audit (
    seq         BIGINT PRIMARY KEY,
    at          DOUBLE PRECISION NOT NULL,
    actor       TEXT NOT NULL,
    tenant      TEXT,
    action      TEXT NOT NULL,
    resource    TEXT,
    resource_id TEXT,
    request_id  TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}',
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS treadle_audit_actor ON treadle_audit (actor, seq);
CREATE INDEX IF NOT EXISTS treadle_audit_resource_id ON treadle_audit (resource_id, seq);

CREATE OR REPLACE FUNCTION treadle_audit_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'treadle_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER IF EXISTS treadle_audit_append_only ON treadle_audit;
CREATE TRIGGER treadle_audit_append_only BEFORE UPDATE OR DELETE ON treadle_audit
    FOR EACH ROW EXECUTE FUNCTION treadle_audit_refuse();
DROP TRIGGER IF EXISTS treadle_audit_no_truncate ON treadle_audit;
CREATE TRIGGER treadle_audit_no_truncate BEFORE TRUNCATE ON treadle_audit
    FOR EACH STATEMENT EXECUTE FUNCTION treadle_audit_refuse();
