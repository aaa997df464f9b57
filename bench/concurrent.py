"""Aggregate durable steps/s with 32 concurrent clients, PostgreSQL and SQLite.

32 Python threads each run the 10-node chain (``durability="sync"``) over and
over, every run on a fresh thread_id, for a fixed window. Systems:

* LangGraph with InMemorySaver, one compiled graph shared by 32 threads: the
  same process's in-memory rate, the reference of the target (issue 15: treadle's
  aggregate durable steps/s >= 0.8 of it, on each store: group commit should make
  durability nearly free under concurrency);
* treadle on SQLite (a file in WAL mode, ``synchronous=FULL``), one ``treadle.compile``
  object shared by all threads;

* PG commit rate: 32 connections, each committing one-row INSERTs (the
  database's multi-client commit rate as seen from this Python process);
* LangGraph PostgresSaver over a psycopg_pool ConnectionPool of 32, one saver
  and one compiled graph shared by all threads (the documented set-up);
* LangGraph PostgresSaver, one saver per thread over the same pool
  (informational: sidesteps the saver's internal per-instance lock);
* treadle on Postgres, one ``treadle.compile`` object shared by all threads.

Step = one checkpoint committed, 12 per run (measured; see bench/chain.py).
Each system has its own fresh database; systems are measured in interleaved
rounds, and connections are opened before (not during) each timed window.

    PYTHONPATH=src python -m bench.concurrent [--quick]
"""

from __future__ import annotations

import itertools
import threading
import traceback
from contextlib import ExitStack
from typing import Any

from bench._common import (
    TreadleLoader,
    Window,
    build_chain,
    chain_steps_per_run,
    close_quietly,
    commit_probe_setup,
    fresh_pg_database,
    interleaved,
    new_config,
    parse_args,
    pg_server_info,
    pg_url_variant,
    progress,
    run_threads_for,
    scratch_dir,
    sqlite_url,
)
from bench._report import Report

N_NODES = 10
N_THREADS = 32
COLUMNS = ["system", "clients", "runs", "seconds", "runs/s", "steps/s", "min/max per client"]


def _chain_worker(graph: Any):
    def one(_: int) -> None:
        out = graph.invoke({"x": 0}, new_config(), durability="sync")
        if out["x"] != N_NODES:
            raise AssertionError(f"bad result {out!r}")

    return one


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    seconds, rounds = (2.0, 1) if args.quick else (7.0, 2)
    url_probe = args.pg_url
    url_lg = pg_url_variant(args.pg_url, "_langgraph")
    url_tr = pg_url_variant(args.pg_url, "_treadle")
    treadle = TreadleLoader(skip=args.skip_treadle)
    builder = build_chain(N_NODES)

    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    report = Report(
        bench="concurrent",
        title=f"concurrent: {N_THREADS} threads x {N_NODES}-node chain, durability='sync', PostgreSQL and SQLite",
        columns=COLUMNS,
        quick=args.quick,
        params={"threads": N_THREADS, "nodes": N_NODES, "seconds_per_system": seconds, "rounds": rounds},
    )
    fresh_pg_database(url_probe)
    report.env["postgres"] = pg_server_info(url_probe)
    labels = {
        "pg_commit_limit": "commit limit (INSERT+COMMIT)",
        "langgraph_pg_pool": "LangGraph PostgresSaver, pool, shared saver",
        "langgraph_pg_pool_per_thread": "LangGraph PostgresSaver, pool, saver per thread",
        "treadle_pg": "treadle (PostgreSQL)",
        "treadle_sqlite": "treadle (SQLite)",
        "langgraph_memory": "LangGraph InMemorySaver, shared graph (no I/O)",
    }
    per_run: dict[str, int] = {"pg_commit_limit": 1}
    errors: dict[str, str] = {}
    systems: list[tuple[str, Any]] = []
    payload = b"x" * 128
    pool_kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}

    # 1. multi-client commit rate: 32 connections, one-row INSERT + COMMIT each --
    progress("setup: Postgres commit probe")
    commit_probe_setup(url_probe)
    ids = itertools.count()

    def commit_measure(secs: float) -> Window:
        conns: list[psycopg.Connection] = []
        lock = threading.Lock()

        def worker(t: int):
            conn = psycopg.connect(url_probe)  # not autocommit: INSERT opens a tx
            with lock:
                conns.append(conn)

            def one(_: int) -> None:
                conn.execute("INSERT INTO commit_probe VALUES (%s, %s, %s)", (next(ids), t, payload))
                conn.commit()

            for _ in range(5):  # warm-up
                one(0)
            return one

        try:
            return run_threads_for(secs, N_THREADS, worker)
        finally:
            for c in conns:
                c.close()

    systems.append(("pg_commit_limit", commit_measure))

    # 2./3. LangGraph PostgresSaver over a ConnectionPool of 32 -----------------
    progress("setup: LangGraph PostgresSaver")
    fresh_pg_database(url_lg)
    with ConnectionPool(url_lg, min_size=1, max_size=1, kwargs=pool_kwargs) as pool:
        PostgresSaver(pool).setup()
        steps_per_run = chain_steps_per_run(builder.compile(checkpointer=PostgresSaver(pool)), N_NODES)

    def langgraph_measure(shared: bool):
        def measure(secs: float) -> Window:
            with ConnectionPool(url_lg, min_size=N_THREADS, max_size=N_THREADS, kwargs=pool_kwargs) as pool:
                pool.wait(timeout=60)
                graph = builder.compile(checkpointer=PostgresSaver(pool))

                def worker(t: int):
                    g = graph if shared else builder.compile(checkpointer=PostgresSaver(pool))
                    return _chain_worker(g)

                return run_threads_for(secs, N_THREADS, worker)

        return measure

    per_run["langgraph_pg_pool"] = per_run["langgraph_pg_pool_per_thread"] = steps_per_run
    systems.append(("langgraph_pg_pool", langgraph_measure(shared=True)))
    systems.append(("langgraph_pg_pool_per_thread", langgraph_measure(shared=False)))

    # 4. LangGraph in memory: the same process's in-memory rate (the target's reference)
    from langgraph.checkpoint.memory import InMemorySaver

    mgraph = builder.compile(checkpointer=InMemorySaver())
    per_run["langgraph_memory"] = steps_per_run

    def memory_measure(secs: float) -> Window:
        # A fresh saver each window: its dicts would otherwise grow with every run.
        mgraph.checkpointer = InMemorySaver()
        return run_threads_for(secs, N_THREADS, lambda t: _chain_worker(mgraph))

    systems.append(("langgraph_memory", memory_measure))

    # 5. treadle on Postgres and on SQLite: one compiled object shared by all threads
    with ExitStack() as stack:
        tmp = stack.enter_context(scratch_dir())
        if treadle.available:
            progress("setup: treadle on Postgres")
            fresh_pg_database(url_tr)
            try:
                g = treadle.compile(builder, url_tr)
                stack.callback(close_quietly, g)
                for _ in range(2):
                    _chain_worker(g)(0)  # create tables / warm up
                per_run["treadle_pg"] = steps_per_run
                systems.append(("treadle_pg", lambda secs: run_threads_for(secs, N_THREADS, lambda t: _chain_worker(g))))
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                errors["treadle_pg"] = f"error: {type(exc).__name__}: {exc}"
            progress("setup: treadle on SQLite")
            try:
                gs = treadle.compile(builder, sqlite_url(tmp / "treadle.db"))
                stack.callback(close_quietly, gs)
                for _ in range(2):
                    _chain_worker(gs)(0)
                per_run["treadle_sqlite"] = steps_per_run
                systems.append(("treadle_sqlite",
                                lambda secs: run_threads_for(secs, N_THREADS, lambda t: _chain_worker(gs))))
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                errors["treadle_sqlite"] = f"error: {type(exc).__name__}: {exc}"
        else:
            errors["treadle_pg"] = errors["treadle_sqlite"] = treadle.reason or "unavailable"

        windows, run_errors = interleaved(systems, seconds, rounds)
        errors.update(run_errors)

    rates: dict[str, float | None] = {}
    for key, system in labels.items():
        w = windows.get(key)
        if key in errors or w is None or not w.count:
            rates[key] = None
            why = errors.get(key, "not measured")
            report.add(key=key, system=system, error=why, **{"min/max per client": "unavailable"})
            report.notes.append(f"{system}: {why}")
            continue
        rate = w.count * per_run[key] / w.seconds
        rates[key] = rate
        pc = w.per_client or [0]
        report.add(
            key=key,
            system=system,
            clients=len(pc),
            runs=w.count,
            seconds=round(w.seconds, 3),
            **{"runs/s": w.rate, "steps/s": rate, "min/max per client": f"{min(pc)}/{max(pc)}"},
        )

    report.ratio("treadle-PG / in-memory (same process, 32 threads)", rates.get("treadle_pg"),
                 rates.get("langgraph_memory"), ">= 0.8")
    report.ratio("treadle-SQLite / in-memory (same process, 32 threads)", rates.get("treadle_sqlite"),
                 rates.get("langgraph_memory"), ">= 0.8")
    report.ratio("treadle-PG / PG commit rate (32 conns)", rates.get("treadle_pg"), rates.get("pg_commit_limit"))
    report.ratio(
        "treadle-PG / LangGraph PostgresSaver (pool, shared)", rates.get("treadle_pg"), rates.get("langgraph_pg_pool")
    )
    report.ratio(
        "treadle-PG / LangGraph PostgresSaver (pool, per thread)",
        rates.get("treadle_pg"),
        rates.get("langgraph_pg_pool_per_thread"),
    )
    report.ratio(
        "LangGraph (pool, shared) / PG commit rate", rates.get("langgraph_pg_pool"), rates.get("pg_commit_limit")
    )
    report.params["steps_per_run"] = steps_per_run
    pg = report.env["postgres"]
    report.notes += [
        f"step = one checkpoint committed, {steps_per_run} per run (measured from LangGraph's state history)",
        "steps/s = all runs completed by all threads in the window x steps per run / window",
        f"{rounds} interleaved round(s) of {seconds / rounds:.1f} s per system; each system has its own fresh database",
        "commit rate: each thread has its own connection and commits one 128-byte row per iteration; "
        "client (GIL, 2 cores) and server share the machine",
        "PostgresSaver holds a per-instance threading.Lock around every DB call, so one shared saver "
        "serialises its 32 threads; the per-thread row shows LangGraph without that lock",
        "in-memory: LangGraph's InMemorySaver, one compiled graph shared by the 32 threads; the target is "
        "treadle's durable rate >= 0.8 of it (same process, same window length)",
        "treadle (SQLite): a file in WAL mode, synchronous=FULL (treadle's default)",
        f"postgres {pg['server_version']}: fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']} "
        f"commit_delay={pg['commit_delay']}",
    ]
    report.finish(args.no_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
