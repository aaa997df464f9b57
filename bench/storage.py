"""Storage of a long chat: bytes on disk and bytes stored per step, against LangGraph's savers.

The workload (issue 15): a 200-turn chat on one thread, a plain ``add_messages`` state, each
turn one ``invoke`` with a human message of 500 characters and a node answering with an AI
message of 500 characters (consecutive words of the docstrings of 20 standard-library modules:
real English prose, which compresses as such text does). The
same graph runs on LangGraph's ``PostgresSaver`` and on treadle with PostgreSQL, and on
LangGraph's ``SqliteSaver`` and on treadle with SQLite, each system on its own fresh database.

Figures per system:
- **total**: PostgreSQL, ``pg_total_relation_size`` (heap, TOAST and indexes) of the system's
  three checkpoint tables; SQLite, the file's size after ``wal_checkpoint(TRUNCATE)`` and
  ``VACUUM`` (the whole file: treadle's other, empty tables included).
- **values MB**: the byte length of every payload column of the three tables, summed (what
  the system asked the database to keep, before PostgreSQL's TOAST compression).
- **bytes/step**: the growth of the stored values (the byte length of every payload column of
  the three tables, summed) per checkpoint, over turns 1-20 and over the last 20 turns: a
  saver that stores each version's whole list grows with the thread; the target is that
  treadle's does not.
- **get_state**: the median time of ``get_state`` of the thread at its last turn.

Targets: treadle stores >= 10x fewer bytes than the LangGraph saver on the same database, and
its bytes/step over the last 20 turns is at most 1.5x that over the first 20.

    PYTHONPATH=src python -m bench.storage [--quick]
"""

from __future__ import annotations

import functools
import importlib
import inspect
import random
import sqlite3
import statistics
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph.message import add_messages

from bench._common import (
    TreadleLoader,
    close_quietly,
    fresh_pg_database,
    parse_args,
    pg_url_variant,
    progress,
    scratch_dir,
    sqlite_url,
)
from bench._report import Report

COLUMNS = ["system", "store", "turns", "checkpoints", "total MB", "values MB", "bytes/step 1-20",
           "bytes/step last 20", "growth", "get_state ms"]
TEXT = 500
WINDOW = 20

# The payload columns of each system's checkpoint tables: (table, expression of its bytes).
PAYLOAD = {
    "treadle_pg": [("treadle_checkpoints", "octet_length(checkpoint) + octet_length(metadata_blob)"
                    " + octet_length(metadata::text) + octet_length(channel_versions::text)"),
                   ("treadle_blobs", "coalesce(octet_length(blob), 0)"),
                   ("treadle_writes", "coalesce(octet_length(blob), 0)")],
    "treadle_sqlite": [("treadle_checkpoints", "length(checkpoint) + length(metadata_blob)"
                        " + length(metadata) + length(channel_versions)"),
                       ("treadle_blobs", "coalesce(length(blob), 0)"),
                       ("treadle_writes", "coalesce(length(blob), 0)")],
    "langgraph_pg": [("checkpoints", "octet_length(checkpoint::text) + octet_length(metadata::text)"),
                     ("checkpoint_blobs", "coalesce(octet_length(blob), 0)"),
                     ("checkpoint_writes", "octet_length(blob)")],
    "langgraph_sqlite": [("checkpoints", "length(checkpoint) + length(metadata)"),
                         ("writes", "length(value)")],
}


class State(TypedDict):
    messages: Annotated[list[Any], add_messages]


def build_chat(seed: int) -> Any:
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, StateGraph

    rng = random.Random(seed)

    def answer(_state: State) -> dict[str, Any]:
        return {"messages": [AIMessage(words(rng))]}

    builder = StateGraph(State)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder


#: Modules whose docstrings are the chat's text: real English prose (of a technical kind),
#: which compresses as such text does (zlib: 4.2x on 400 messages), shipped with every Python.
_CORPUS_MODULES = ("argparse", "collections", "json", "logging", "pathlib", "typing", "unittest",
                   "email.message", "http.client", "asyncio.events", "textwrap", "string",
                   "shutil", "subprocess", "functools", "itertools", "decimal", "fractions",
                   "datetime", "calendar")


@functools.cache
def _corpus() -> list[str]:
    found: list[str] = []
    for name in _CORPUS_MODULES:
        module = importlib.import_module(name)
        for _, obj in sorted(vars(module).items()):
            if inspect.isfunction(obj) or inspect.isclass(obj):
                found.extend((inspect.getdoc(obj) or "").split())
    return found


def words(rng: random.Random) -> str:
    """A message of ``TEXT`` characters: consecutive words of the corpus from a random place."""
    corpus = _corpus()
    i = rng.randrange(len(corpus) - 500)
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < TEXT:
        out.append(corpus[i])
        i += 1
    return " ".join(out)[:TEXT]


def chat(graph: Any, turns: int, payload: Callable[[], int], seed: int) -> dict[str, Any]:
    """Run the chat; the payload bytes and checkpoint count after each turn."""
    from langchain_core.messages import HumanMessage

    rng = random.Random(seed + 1)
    config = {"configurable": {"thread_id": "chat"}}
    sizes: list[int] = []
    counts: list[int] = []
    for turn in range(turns):
        graph.invoke({"messages": [HumanMessage(words(rng))]}, config)
        sizes.append(payload())
        if turn < 2:
            counts.append(len(list(graph.get_state_history(config))))
    counts.append(len(list(graph.get_state_history(config))))
    state = graph.get_state(config)
    if len(state.values["messages"]) != 2 * turns:
        raise AssertionError(f"the chat holds {len(state.values['messages'])} messages, not {2 * turns}")
    reads = []
    for _ in range(15):
        t0 = time.perf_counter()
        graph.get_state(config)
        reads.append(time.perf_counter() - t0)
    per_turn = counts[1] - counts[0]  # checkpoints per turn (the first turn also writes the input)
    first = (sizes[WINDOW - 1] - sizes[0]) / ((WINDOW - 1) * per_turn)
    last = (sizes[-1] - sizes[-WINDOW]) / ((WINDOW - 1) * per_turn)
    return {"checkpoints": counts[-1], "values MB": sizes[-1] / 1e6, "bytes/step 1-20": first, "bytes/step last 20": last,
            "growth": last / first if first else None, "get_state ms": statistics.median(reads) * 1000}


def _pg_payload(url: str, system: str) -> Callable[[], int]:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    query = " + ".join(f"(SELECT coalesce(sum({expr}), 0) FROM {table})"
                       for table, expr in PAYLOAD[system])
    return lambda: int(conn.execute(f"SELECT {query}").fetchone()[0])  # type: ignore[index]


def _pg_total(url: str, system: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM")
        tables = [t for t, _ in PAYLOAD[system]]
        row = conn.execute("SELECT sum(pg_total_relation_size(c::regclass)) FROM unnest(%s::text[]) c",
                           (tables,)).fetchone()
        return int(row[0])  # type: ignore[index]


def _sqlite_payload(path: Path, system: str) -> Callable[[], int]:
    query = " + ".join(f"(SELECT coalesce(sum({expr}), 0) FROM {table})"
                       for table, expr in PAYLOAD[system])

    def read() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute(f"SELECT {query}").fetchone()[0])

    return read


def _sqlite_total(path: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path.stat().st_size


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    turns = 60 if args.quick else 200
    report = Report("storage", f"Storage of a {turns}-turn chat ({TEXT}-character messages, "
                    "add_messages), one thread", COLUMNS, args.quick, params={"turns": turns})
    loader = TreadleLoader(args.skip_treadle)
    totals: dict[str, float | None] = {}
    growth: dict[str, float | None] = {}
    values: dict[str, float | None] = {}
    with ExitStack() as stack:
        tmp = stack.enter_context(scratch_dir())
        systems: list[tuple[str, str, str]] = [("LangGraph PostgresSaver", "PostgreSQL", "langgraph_pg"),
                                              ("treadle", "PostgreSQL", "treadle_pg"),
                                              ("LangGraph SqliteSaver", "SQLite", "langgraph_sqlite"),
                                              ("treadle", "SQLite", "treadle_sqlite")]
        for system, store, key in systems:
            progress(f"{system} ({store}): {turns} turns")
            builder = build_chat(seed=7)
            try:
                if key == "langgraph_pg":
                    from langgraph.checkpoint.postgres import PostgresSaver

                    url = fresh_pg_database(pg_url_variant(args.pg_url, "_storage_langgraph"))
                    saver_cm = PostgresSaver.from_conn_string(url)
                    saver = stack.enter_context(saver_cm)
                    saver.setup()
                    graph = builder.compile(checkpointer=saver)
                    figures = chat(graph, turns, _pg_payload(url, key), seed=7)
                    total = _pg_total(url, key)
                elif key == "langgraph_sqlite":
                    from langgraph.checkpoint.sqlite import SqliteSaver

                    path = tmp / "langgraph.db"
                    conn = sqlite3.connect(path, check_same_thread=False)
                    conn.execute("PRAGMA journal_mode=WAL")
                    graph = builder.compile(checkpointer=SqliteSaver(conn))
                    figures = chat(graph, turns, _sqlite_payload(path, key), seed=7)
                    conn.close()
                    total = _sqlite_total(path)
                else:
                    if not loader.available:
                        raise RuntimeError(loader.reason)
                    if key == "treadle_pg":
                        url = fresh_pg_database(pg_url_variant(args.pg_url, "_storage_treadle"))
                        graph = loader.compile(builder, url)
                        figures = chat(graph, turns, _pg_payload(url, key), seed=7)
                        close_quietly(graph)
                        total = _pg_total(url, key)
                    else:
                        path = tmp / "treadle.db"
                        graph = loader.compile(builder, sqlite_url(path))
                        figures = chat(graph, turns, _sqlite_payload(path, key), seed=7)
                        close_quietly(graph)
                        total = _sqlite_total(path)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                report.add(system=system, store=store, turns="unavailable")
                report.notes.append(f"{system} ({store}): {type(exc).__name__}: {exc}")
                totals[key] = None
                continue
            totals[key] = total
            growth[key] = figures["growth"]
            values[key] = figures["values MB"]
            report.add(system=system, store=store, turns=turns, **{"total MB": total / 1e6}, **figures)
    report.ratio("PostgresSaver total / treadle-PG total", totals.get("langgraph_pg"),
                 totals.get("treadle_pg"), ">= 10")
    report.ratio("SqliteSaver total / treadle-SQLite total", totals.get("langgraph_sqlite"),
                 totals.get("treadle_sqlite"), ">= 10")
    report.ratio("PostgresSaver values / treadle-PG values (before TOAST compression)",
                 values.get("langgraph_pg"), values.get("treadle_pg"))
    report.ratio("SqliteSaver values / treadle-SQLite values", values.get("langgraph_sqlite"),
                 values.get("treadle_sqlite"))
    for key, name in (("treadle_pg", "treadle-PG"), ("treadle_sqlite", "treadle-SQLite")):
        report.ratio(f"{name} bytes/step: last 20 turns / first 20", growth.get(key), 1.0, "<= 1.5")
    for key, name in (("langgraph_pg", "PostgresSaver"), ("langgraph_sqlite", "SqliteSaver")):
        report.ratio(f"{name} bytes/step: last 20 turns / first 20 (reference)", growth.get(key), 1.0)
    report.notes.append("treadle stores a list channel of >= 8 elements as chunks shared between versions: a step "
                        "writes what it added (store/chunked.py); LangGraph's savers store each version whole")
    report.finish(args.no_json)


if __name__ == "__main__":
    main()
