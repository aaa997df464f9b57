"""Durable steps/s of a 10-node linear chain, one client.

Every run invokes the chain on a fresh thread_id with ``durability="sync"``.
Systems: treadle on Postgres and on SQLite, LangGraph's PostgresSaver,
SqliteSaver and InMemorySaver, and the physical limits: the single-client commit
rate of the same Postgres (one-row INSERT + COMMIT per iteration over one
connection) and of a SQLite file in WAL mode with ``synchronous=FULL`` (one-row
INSERT + COMMIT, as treadle opens its files).

The target (issue 15): a sync-durable step cannot cost less than LangGraph's own
in-memory step plus one commit, so treadle's steps/s is compared with the bound
``1 / (in-memory step time + one commit)``, both measured in this run, on each
store; the target is >= 0.9 of that bound.

Step = one checkpoint committed. The number of checkpoints a run writes is
measured from LangGraph's own state history for this graph (input checkpoint,
the ``__start__`` step, then one per node: 12 for 10 nodes) and the same
per-run figure is used for every system, so steps/s ratios equal runs/s ratios.

Each system gets its own freshly created database (or SQLite file) and all
systems are measured in interleaved rounds, so other load on the machine
spreads over all of them.

    PYTHONPATH=src python -m bench.chain [--quick]
"""

from __future__ import annotations

import itertools
import sqlite3
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
    run_for,
    scratch_dir,
    sqlite_url,
)
from bench._report import Report

N_NODES = 10
COLUMNS = ["system", "store", "runs", "seconds", "runs/s", "steps/s", "ms/step", "ckpts/run"]


def chain_measure(graph: Any):
    def one(_: int) -> None:
        out = graph.invoke({"x": 0}, new_config(), durability="sync")
        if out["x"] != N_NODES:
            raise AssertionError(f"bad result {out!r}")

    def measure(seconds: float) -> Window:
        return run_for(seconds, one)

    for i in range(2):  # warm-up
        one(-1 - i)
    return measure


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
    seconds, rounds = (1.0, 1) if args.quick else (3.0, 3)
    treadle = TreadleLoader(skip=args.skip_treadle)
    builder = build_chain(N_NODES)

    import psycopg
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from psycopg.rows import dict_row

    url_probe = args.pg_url
    url_lg = pg_url_variant(args.pg_url, "_langgraph")
    url_tr = pg_url_variant(args.pg_url, "_treadle")

    report = Report(
        bench="chain",
        title=f"chain: {N_NODES}-node linear StateGraph, durability='sync', fresh thread per run, 1 client",
        columns=COLUMNS,
        quick=args.quick,
        params={"nodes": N_NODES, "seconds_per_system": seconds, "rounds": rounds},
    )
    fresh_pg_database(url_probe)
    report.env["postgres"] = pg_server_info(url_probe)

    labels = {
        "pg_commit_limit": ("commit limit (INSERT+COMMIT)", "postgres"),
        "langgraph_pg": ("LangGraph PostgresSaver", "postgres"),
        "treadle_pg": ("treadle", "postgres"),
        "langgraph_sqlite": ("LangGraph SqliteSaver", "sqlite"),
        "treadle_sqlite": ("treadle", "sqlite"),
        "sqlite_commit_limit": ("commit limit (INSERT+COMMIT)", "sqlite"),
        "langgraph_memory": ("LangGraph InMemorySaver (no I/O)", "memory"),
    }
    per_run = {"pg_commit_limit": 1, "sqlite_commit_limit": 1}
    ckpts: dict[str, Any] = {"pg_commit_limit": "1 row", "sqlite_commit_limit": "1 row"}
    errors: dict[str, str] = {}
    systems: list[tuple[str, Any]] = []

    with ExitStack() as stack:
        tmp = stack.enter_context(scratch_dir())

        # 1. physical limit: one connection, INSERT one row + COMMIT --------------
        progress("setup: Postgres commit probe")
        commit_probe_setup(url_probe)
        probe = stack.enter_context(psycopg.connect(url_probe))  # not autocommit: INSERT opens a tx
        ids = itertools.count()
        payload = b"x" * 128

        def commit_one(_: int) -> None:
            probe.execute("INSERT INTO commit_probe VALUES (%s, 0, %s)", (next(ids), payload))
            probe.commit()

        for _ in range(50):
            commit_one(0)
        systems.append(("pg_commit_limit", lambda s: run_for(s, commit_one)))

        # 2. LangGraph PostgresSaver ----------------------------------------------
        progress("setup: LangGraph PostgresSaver")
        fresh_pg_database(url_lg)
        conn = stack.enter_context(
            psycopg.Connection.connect(url_lg, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        )
        saver = PostgresSaver(conn)
        saver.setup()
        graph = builder.compile(checkpointer=saver)
        steps_per_run = chain_steps_per_run(graph, N_NODES)
        per_run["langgraph_pg"] = ckpts["langgraph_pg"] = steps_per_run
        systems.append(("langgraph_pg", chain_measure(graph)))

        # 3. treadle on Postgres --------------------------------------------------
        def add_treadle(key: str, store: str) -> None:
            if not treadle.available:
                errors[key] = treadle.reason or "unavailable"
                return
            progress(f"setup: {key}")
            try:
                g = treadle.compile(builder, store)
                stack.callback(close_quietly, g)
                ckpts[key] = treadle_history_len(g)
                per_run[key] = steps_per_run
                systems.append((key, chain_measure(g)))
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                errors[key] = f"error: {type(exc).__name__}: {exc}"

        if treadle.available:
            fresh_pg_database(url_tr)
        add_treadle("treadle_pg", url_tr)

        # 4. LangGraph SqliteSaver ------------------------------------------------
        progress("setup: LangGraph SqliteSaver")
        sconn = sqlite3.connect(str(tmp / "langgraph.db"), check_same_thread=False)
        stack.callback(sconn.close)
        ssaver = SqliteSaver(sconn)
        ssaver.setup()
        report.env["sqlite_saver"] = {
            "journal_mode": sconn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": sconn.execute("PRAGMA synchronous").fetchone()[0],
        }
        sgraph = builder.compile(checkpointer=ssaver)
        ckpts["langgraph_sqlite"] = chain_steps_per_run(sgraph, N_NODES)
        per_run["langgraph_sqlite"] = steps_per_run
        systems.append(("langgraph_sqlite", chain_measure(sgraph)))

        # 5. treadle on SQLite ----------------------------------------------------
        add_treadle("treadle_sqlite", sqlite_url(tmp / "treadle.db"))

        # 5b. SQLite's commit limit: WAL, synchronous=FULL (treadle's default), one
        # connection, BEGIN IMMEDIATE + one-row INSERT + COMMIT per step, as treadle writes.
        progress("setup: SQLite commit probe")
        qconn = sqlite3.connect(str(tmp / "commit_probe.db"), isolation_level=None, check_same_thread=False)
        stack.callback(qconn.close)
        qconn.execute("PRAGMA journal_mode=WAL")
        qconn.execute("PRAGMA synchronous=FULL")
        qconn.execute("CREATE TABLE commit_probe (id INTEGER PRIMARY KEY, client INTEGER, payload BLOB)")
        qids = itertools.count()

        def sqlite_commit_one(_: int) -> None:
            qconn.execute("BEGIN IMMEDIATE")
            qconn.execute("INSERT INTO commit_probe VALUES (?, 0, ?)", (next(qids), payload))
            qconn.execute("COMMIT")

        for _ in range(50):
            sqlite_commit_one(0)
        systems.append(("sqlite_commit_limit", lambda s: run_for(s, sqlite_commit_one)))

        # 6. LangGraph's own loop with no I/O: the ceiling for any sync-durable saver
        mgraph = builder.compile(checkpointer=InMemorySaver())
        ckpts["langgraph_memory"] = chain_steps_per_run(mgraph, N_NODES)
        per_run["langgraph_memory"] = steps_per_run
        systems.append(("langgraph_memory", chain_measure(mgraph)))

        windows, run_errors = interleaved(systems, seconds, rounds)
        errors.update(run_errors)

    rates: dict[str, float | None] = {}
    for key, (system, store) in labels.items():
        w = windows.get(key)
        if key in errors or w is None or not w.count:
            rates[key] = None
            why = errors.get(key, "not measured")
            report.add(key=key, system=system, store=store, error=why, **{"ckpts/run": "unavailable"})
            report.notes.append(f"{system} ({store}): {why}")
            continue
        rate = w.count * per_run[key] / w.seconds
        rates[key] = rate
        report.add(
            key=key,
            system=system,
            store=store,
            runs=w.count,
            seconds=round(w.seconds, 3),
            **{"runs/s": w.rate, "steps/s": rate, "ms/step": 1000 / rate, "ckpts/run": ckpts.get(key)},
        )

    report.ratio("treadle-PG / LangGraph-PostgresSaver", rates["treadle_pg"], rates["langgraph_pg"], ">= 2.5")
    report.ratio("treadle-PG / PG commit limit", rates["treadle_pg"], rates["pg_commit_limit"], ">= 0.5")
    report.ratio("treadle-SQLite / LangGraph-SqliteSaver", rates["treadle_sqlite"], rates["langgraph_sqlite"])
    report.ratio("LangGraph-PostgresSaver / PG commit limit", rates["langgraph_pg"], rates["pg_commit_limit"])
    # With durability="sync" LangGraph waits for each checkpoint before planning the next
    # step, so a step costs at least LangGraph's own loop time plus one commit: the bound
    # 1 / (in-memory step time + one commit), per store, from this run's figures.
    bounds = {
        store: 1 / (1 / rates[mem] + 1 / rates[commit])
        if rates.get(mem) and rates.get(commit) else None
        for store, mem, commit in (("pg", "langgraph_memory", "pg_commit_limit"),
                                   ("sqlite", "langgraph_memory", "sqlite_commit_limit"))
    }
    report.ratio("bound(PG): 1/(loop + 1 commit) / PostgresSaver", bounds["pg"], rates["langgraph_pg"])
    report.ratio("treadle-PG / bound(PG)", rates["treadle_pg"], bounds["pg"], ">= 0.9")
    report.ratio("bound(SQLite): 1/(loop + 1 commit) / SqliteSaver", bounds["sqlite"],
                 rates["langgraph_sqlite"])
    report.ratio("treadle-SQLite / bound(SQLite)", rates["treadle_sqlite"], bounds["sqlite"], ">= 0.9")
    report.params["bound_steps_per_s"] = {k: round(v, 1) if v else None for k, v in bounds.items()}
    report.params["steps_per_run"] = steps_per_run
    pg = report.env["postgres"]
    sq = report.env["sqlite_saver"]
    report.notes += [
        f"step = one checkpoint committed; a run writes {steps_per_run} (LangGraph's state history for this "
        f"graph: input + __start__ + {N_NODES} nodes); applied to every system",
        "commit limit: one connection, INSERT of one 128-byte row + COMMIT per step (SQLite: WAL, "
        "synchronous=FULL, BEGIN IMMEDIATE + INSERT + COMMIT, as treadle opens and writes its files)",
        "bound(store) = 1 / (1/InMemorySaver steps/s + 1/commit limit of the store): LangGraph's own step "
        "plus one commit, the least a sync-durable step can cost; target >= 0.9 of it",
        f"{rounds} interleaved round(s) of {seconds / rounds:.1f} s per system; each system has its own fresh "
        "database / SQLite file",
        f"postgres {pg['server_version']}: fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']} "
        f"wal_sync_method={pg['wal_sync_method']}; SqliteSaver: journal_mode={sq['journal_mode']} "
        f"synchronous={sq['synchronous']}",
        "ckpts/run for treadle = len(get_state_history) after one run",
    ]
    report.finish(args.no_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
