-- treadle schema v16 (PostgreSQL): the runs the sweeper took back from a lost worker,
-- newest first, without reading the whole runs table (GET /operations, run_failovers).
-- "pre": only adds an index. It holds the runs with lost_count > 0 alone (few: a run
-- enters it when a worker dies under it), so it is small and costs nothing to runs that
-- never fail over. Building it reads treadle_runs once, blocking its writes meanwhile,
-- as every index of earlier migrations did.
CREATE INDEX IF NOT EXISTS treadle_runs_lost ON treadle_runs (seq) WHERE lost_count > 0;
