-- treadle schema v5 (SQLite): a budget of worker losses separate from the run's attempts.
-- lost_count: how many times the sweeper took the run back from a lost worker (its lease
-- expired); the run errors once it reaches the sweeper's TREADLE_MAX_WORKER_LOSSES.
ALTER TABLE treadle_runs ADD COLUMN lost_count INTEGER NOT NULL DEFAULT 0;
