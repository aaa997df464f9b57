-- treadle schema v13 (SQLite): the runs the sweeper took back from a lost worker, newest
-- first, without reading the whole runs table (GET /operations, run_failovers). The index
-- holds the runs with lost_count > 0 alone (few: a run enters it when a worker dies under it).
CREATE INDEX IF NOT EXISTS treadle_runs_lost ON treadle_runs (seq) WHERE lost_count > 0;
