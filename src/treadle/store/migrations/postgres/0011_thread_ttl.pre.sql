-- treadle schema v11 (PostgreSQL): thread TTLs (langgraph.json checkpointer.ttl, a thread's
-- own ttl; treadle.store.retention). "pre": only adds nullable columns, a function and an index.
--
-- ttl_minutes / ttl_strategy: the thread's TTL (NULL: it never expires) and what its expiry
-- does (delete | keep_latest). A thread expires ttl_minutes after its updated_at (create,
-- patch, run start and end bump it). ttl_swept_at: when a sweep last claimed it; a thread
-- is due again only once updated after that (or, for delete, when a claim was abandoned).
ALTER TABLE treadle_thread_records ADD COLUMN IF NOT EXISTS ttl_minutes DOUBLE PRECISION;
ALTER TABLE treadle_thread_records ADD COLUMN IF NOT EXISTS ttl_strategy TEXT
    CHECK (ttl_strategy IN ('delete', 'keep_latest'));
ALTER TABLE treadle_thread_records ADD COLUMN IF NOT EXISTS ttl_swept_at TIMESTAMPTZ;
-- When a thread expires. Adding minutes to a timestamptz does not depend on the time zone
-- (only day and month units do), so it may be IMMUTABLE and indexed; plpgsql, so the
-- planner does not inline it into the (stable) operator.
CREATE OR REPLACE FUNCTION treadle_ttl_expiry(updated_at timestamptz, minutes double precision)
RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN updated_at + minutes * interval '1 minute';
END $$;
-- The sweep: threads with a TTL that are not claimed since their last update, by expiry
-- (a thread pruned to its latest checkpoint leaves it until it is updated again).
CREATE INDEX IF NOT EXISTS treadle_thread_records_ttl
    ON treadle_thread_records (treadle_ttl_expiry(updated_at, ttl_minutes))
    WHERE ttl_minutes IS NOT NULL AND (ttl_swept_at IS NULL OR ttl_swept_at <= updated_at);
-- Delete claims in flight, or abandoned by a sweeper that died (a deleted thread leaves it).
CREATE INDEX IF NOT EXISTS treadle_thread_records_ttl_claims
    ON treadle_thread_records (ttl_swept_at)
    WHERE ttl_strategy = 'delete' AND ttl_swept_at > updated_at;
