-- treadle's named queries for sqlite: one "-- name: <name>" block per query or fragment.
-- The other dialect's file defines the same names, taking the same parameters
-- (tests/unit/test_store_queries.py checks it). Placeholders are the driver's own.

-- ==== clock and schema =======================================================

-- name: clock
-- The database's clock, Unix seconds.
SELECT (julianday('now') - 2440587.5) * 86400.0;


-- ==== checkpoints and fencing ================================================



-- ==== runs ===================================================================



-- ==== tasks, workers, events, shipped graphs ================================



-- ==== threads, assistants, crons (API resources) =============================



-- ==== memory items ===========================================================



-- ==== end ====================================================================
