-- treadle schema v12 (SQLite): run priority and fair queuing between groups (langgraph.json
-- "priority", treadle.server.priority). A thread's settings (priority -5..5, lower first;
-- fair_group) are stored once, at its first run, on its treadle_threads row: the first
-- stored wins (thread_priority_set). Its runs copy them when queued (run_enqueue), so a
-- claim (run_claim) reads runs alone. treadle_fair_groups has a row per group
-- (thread_priority_set adds it; 'default' is here from the start); served numbers the
-- claims: the group claimed from least recently (or never) has the smallest (or no) number.
ALTER TABLE treadle_threads ADD COLUMN priority INTEGER;
ALTER TABLE treadle_threads ADD COLUMN fair_group TEXT;
ALTER TABLE treadle_runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE treadle_runs ADD COLUMN fair_group TEXT NOT NULL DEFAULT 'default';
CREATE TABLE IF NOT EXISTS treadle_fair_groups (
    fair_group TEXT PRIMARY KEY,
    served     INTEGER  -- NULL: never claimed from
) WITHOUT ROWID;
INSERT INTO treadle_fair_groups (fair_group) VALUES ('default') ON CONFLICT DO NOTHING;
CREATE INDEX IF NOT EXISTS treadle_fair_groups_served ON treadle_fair_groups (served);  -- its max
CREATE INDEX IF NOT EXISTS treadle_runs_pending_fair
    ON treadle_runs (fair_group, priority, seq) WHERE status = 'pending';
