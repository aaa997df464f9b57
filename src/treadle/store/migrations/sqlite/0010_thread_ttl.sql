-- treadle schema v10 (SQLite): thread TTLs (langgraph.json checkpointer.ttl, a thread's own
-- ttl; treadle.store.retention). Times are REAL Unix seconds from SQLite's clock.
--
-- ttl_minutes / ttl_strategy: the thread's TTL (NULL: it never expires) and what its expiry
-- does (delete | keep_latest). A thread expires ttl_minutes after its updated_at (create,
-- patch, run start and end bump it). ttl_swept_at: when a sweep last claimed it; a thread
-- is due again only once updated after that (or, for delete, when a claim was abandoned).
ALTER TABLE treadle_thread_records ADD COLUMN ttl_minutes REAL;
ALTER TABLE treadle_thread_records ADD COLUMN ttl_strategy TEXT
    CHECK (ttl_strategy IN ('delete', 'keep_latest'));
ALTER TABLE treadle_thread_records ADD COLUMN ttl_swept_at REAL;
-- The sweep: threads with a TTL that are not claimed since their last update, by expiry
-- (a thread pruned to its latest checkpoint leaves it until it is updated again).
CREATE INDEX IF NOT EXISTS treadle_thread_records_ttl
    ON treadle_thread_records (updated_at + ttl_minutes * 60.0)
    WHERE ttl_minutes IS NOT NULL AND (ttl_swept_at IS NULL OR ttl_swept_at <= updated_at);
-- Delete claims in flight, or abandoned by a sweeper that died (a deleted thread leaves it).
CREATE INDEX IF NOT EXISTS treadle_thread_records_ttl_claims
    ON treadle_thread_records (ttl_swept_at)
    WHERE ttl_strategy = 'delete' AND ttl_swept_at > updated_at;
