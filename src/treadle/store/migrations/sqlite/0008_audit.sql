-- treadle schema v8 (SQLite): the audit log (treadle.store.audit_log).
-- One row per recorded action, numbered 1, 2, 3 ... (seq), each carrying the hash of the
-- row before it (prev_hash) and its own (hash: sha256 over a canonical encoding of the row
-- and prev_hash, computed by treadle): a chain that any edit breaks. Appends run under
-- SQLite's write lock (BEGIN IMMEDIATE), one at a time across processes. UPDATE and DELETE
-- are refused by the triggers below (anyone who can write the file can drop them: the
-- chain, not the triggers, is what makes an edit evident).
CREATE TABLE IF NOT EXISTS treadle_audit (
    seq         INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
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
CREATE TRIGGER IF NOT EXISTS treadle_audit_no_update BEFORE UPDATE ON treadle_audit
BEGIN
    SELECT RAISE(ABORT, 'treadle_audit is append-only: UPDATE refused');
END;
CREATE TRIGGER IF NOT EXISTS treadle_audit_no_delete BEFORE DELETE ON treadle_audit
BEGIN
    SELECT RAISE(ABORT, 'treadle_audit is append-only: DELETE refused');
END;
