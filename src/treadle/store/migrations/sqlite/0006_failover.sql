-- treadle schema v6 (SQLite): failover on a dead worker's process, and a budget of worker
-- losses separate from the run's attempts.
-- lost_count: how many times the sweeper took the run back from a lost worker (its process
-- is gone or its lease expired); the run errors once it reaches the sweeper's TREADLE_MAX_WORKER_LOSSES.
ALTER TABLE treadle_runs ADD COLUMN lost_count INTEGER NOT NULL DEFAULT 0;
-- worker_lock: the key of the claiming worker's file lock (treadle.store.sqlite_session),
-- released by the kernel when its process dies: its runs and tasks are re-queued at once.
ALTER TABLE treadle_runs ADD COLUMN worker_lock INTEGER;
ALTER TABLE treadle_tasks ADD COLUMN worker_lock INTEGER;
