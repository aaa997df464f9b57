"""Durable steps/s of a 10-node linear chain, one client.

Every run invokes the chain on a fresh thread_id with ``durability="sync"``.
Systems: treadle on Postgres and on SQLite, LangGraph's PostgresSaver and
SqliteSaver, and the physical limit: the single-client commit rate of the same
Postgres (one-row INSERT + COMMIT per iteration over one connection).

Step = one checkpoint committed. The number of checkpoints a run writes is
measured from LangGraph's own state history for this graph (input checkpoint,
the ``__start__`` step, then one per node: 12 for 10 nodes) and the same
per-run figure is used for every system, so steps/s ratios equal runs/s ratios.

    PYTHONPATH=src python -m bench.chain [--quick]
"""

from __future__ import annotations

import sqlite3
import sys
import traceback
from typing import Any

from bench._common import (
    Report,
    TreadleLoader,
    chain_steps_per_run,
    close_quietly,
    commit_probe_setup,
    build_chain,
    fresh_pg_database,
    new_config,
    parse_args,
    pg_server_info,
    run_for,
    scratch_dir,
    sqlite_url,
)

N_NODES = 10
COLUMNS = ["system", "store", "runs", "seconds", "runs/s", "steps/s", "ms/step", "ckpts/run"]


def commit_rate(pg_url: str, seconds: float) -> tuple[int, float]:
    """Single-client commit rate: INSERT one row + COMMIT, over one connection."""
    import psycopg

    commit_probe_setup(pg_url)
    payload = b"x" * 128
    with psycopg.connect(pg_url) as conn:  # autocommit off: INSERT opens a tx, commit() ends it

        def one(i: int) -> None:
            conn.execute("INSERT INTO commit_probe VALUES (%s, 0, %s)", (i + 1_000_000 if i < 0 else i, payload))
            conn.commit()

        w = run_for(seconds, one, warmup=50)
    return w.count, w.seconds


def chain_loop(graph: Any, seconds: float) -> tuple[int, float]:
    def one(_: int) -> None:
        out = graph.invoke({"x": 0}, new_config(), durability="sync")
        if out["x"] != N_NODES:
            raise AssertionError(f"bad result {out!r}")

    w = run_for(seconds, one, warmup=3)
    return w.count, w.seconds


def treadle_history_len(graph: Any) -> int | str:
    """Checkpoints treadle exposes for one run, if it offers get_state_history."""
    if not hasattr(graph, "get_state_history"):
        return "n/a"
    try:
        return chain_steps_per_run(graph, N_NODES)
    except Exception as exc:  # noqa: BLE001
        return f"err: {type(exc).__name__}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    seconds = 1.0 if args.quick else 3.0
    pg_url = args.pg_url
    treadle = TreadleLoader(skip=args.skip_treadle)
    builder = build_chain(N_NODES)

    report = Report(
        bench="chain",
        title=f"chain: {N_NODES}-node linear StateGraph, durability='sync', fresh thread per run, 1 client",
        columns=COLUMNS,
        quick=args.quick,
        params={"nodes": N_NODES, "seconds_per_system": seconds},
    )
    fresh_pg_database(pg_url)
    report.env["postgres"] = pg_server_info(pg_url)
    rates: dict[str, float | None] = {}
    steps_per_run: int | None = None

    def record(key: str, system: str, store: str, runs: int, secs: float, per_run: int, ckpts: Any) -> None:
        steps = runs * per_run
        rate = steps / secs
        rates[key] = rate
        report.add(
            key=key,
            system=system,
            store=store,
            runs=runs,
            seconds=round(secs, 3),
            **{"runs/s": runs / secs, "steps/s": rate, "ms/step": 1000 / rate, "ckpts/run": ckpts},
        )

    def failed(key: str, system: str, store: str, why: str) -> None:
        rates[key] = None
        report.add(key=key, system=system, store=store, runs=None, error=why, **{"ckpts/run": "unavailable"})
        report.notes.append(f"{system}: {why}")

    # 1. physical limit -------------------------------------------------------
    print("measuring: Postgres single-client commit rate ...", file=sys.stderr)
    fresh_pg_database(pg_url)
    n, secs = commit_rate(pg_url, seconds)
    record("pg_commit_limit", "commit limit (INSERT+COMMIT)", "postgres", n, secs, 1, "1 row")

    # 2. LangGraph PostgresSaver ---------------------------------------------
    print("measuring: LangGraph PostgresSaver ...", file=sys.stderr)
    fresh_pg_database(pg_url)
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection
    from psycopg.rows import dict_row

    with Connection.connect(pg_url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        saver = PostgresSaver(conn)
        saver.setup()
        graph = builder.compile(checkpointer=saver)
        steps_per_run = chain_steps_per_run(graph, N_NODES)
        n, secs = chain_loop(graph, seconds)
        record("langgraph_pg", "LangGraph PostgresSaver", "postgres", n, secs, steps_per_run, steps_per_run)

    # 3. treadle on Postgres -------------------------------------------------
    if treadle.available:
        print("measuring: treadle on Postgres ...", file=sys.stderr)
        fresh_pg_database(pg_url)
        g = None
        try:
            g = treadle.compile(builder, pg_url)
            ckpts = treadle_history_len(g)
            n, secs = chain_loop(g, seconds)
            record("treadle_pg", "treadle", "postgres", n, secs, steps_per_run, ckpts)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            failed("treadle_pg", "treadle", "postgres", f"error: {type(exc).__name__}: {exc}")
        finally:
            close_quietly(g)
    else:
        failed("treadle_pg", "treadle", "postgres", treadle.reason or "unavailable")

    with scratch_dir() as tmp:
        # 4. LangGraph SqliteSaver -------------------------------------------
        print("measuring: LangGraph SqliteSaver ...", file=sys.stderr)
        from langgraph.checkpoint.sqlite import SqliteSaver

        sconn = sqlite3.connect(str(tmp / "langgraph.db"), check_same_thread=False)
        try:
            saver = SqliteSaver(sconn)
            saver.setup()
            sync_mode = sconn.execute("PRAGMA synchronous").fetchone()[0]
            journal = sconn.execute("PRAGMA journal_mode").fetchone()[0]
            report.env["sqlite_saver"] = {"journal_mode": journal, "synchronous": sync_mode}
            graph = builder.compile(checkpointer=saver)
            sq_steps = chain_steps_per_run(graph, N_NODES)
            n, secs = chain_loop(graph, seconds)
            record("langgraph_sqlite", "LangGraph SqliteSaver", "sqlite", n, secs, steps_per_run, sq_steps)
        finally:
            sconn.close()

        # 5. treadle on SQLite -----------------------------------------------
        if treadle.available:
            print("measuring: treadle on SQLite ...", file=sys.stderr)
            g = None
            try:
                g = treadle.compile(builder, sqlite_url(tmp / "treadle.db"))
                ckpts = treadle_history_len(g)
                n, secs = chain_loop(g, seconds)
                record("treadle_sqlite", "treadle", "sqlite", n, secs, steps_per_run, ckpts)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                failed("treadle_sqlite", "treadle", "sqlite", f"error: {type(exc).__name__}: {exc}")
            finally:
                close_quietly(g)
        else:
            failed("treadle_sqlite", "treadle", "sqlite", treadle.reason or "unavailable")

    report.ratio("treadle-PG / LangGraph-PostgresSaver", rates.get("treadle_pg"), rates.get("langgraph_pg"), ">= 2.5")
    report.ratio("treadle-PG / PG commit limit", rates.get("treadle_pg"), rates.get("pg_commit_limit"), ">= 0.5")
    report.ratio("treadle-SQLite / LangGraph-SqliteSaver", rates.get("treadle_sqlite"), rates.get("langgraph_sqlite"))
    report.ratio("LangGraph-PostgresSaver / PG commit limit", rates.get("langgraph_pg"), rates.get("pg_commit_limit"))
    report.params["steps_per_run"] = steps_per_run
    pg = report.env["postgres"]
    report.notes += [
        f"step = one checkpoint committed; a run writes {steps_per_run} (LangGraph's state history for this "
        f"graph: input + __start__ + {N_NODES} nodes); applied to every system",
        "commit limit: one connection, INSERT of one 128-byte row + COMMIT per step",
        f"postgres {pg['server_version']}: fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']} "
        f"wal_sync_method={pg['wal_sync_method']}",
        f"ckpts/run for treadle = len(get_state_history) on one run when treadle offers it",
    ]
    report.finish(args.no_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
