"""Shared helpers for the treadle benchmark suite (``make bench``).

Everything a benchmark needs that is not the benchmark itself lives here:
command-line flags, the Postgres scratch database, timing loops, the reference
graphs, treadle loading, table printing and the JSON-lines results file.

Benchmarks are *not* tests: they print figures and ratios against references
measured in the same run, and record them under ``bench/results/`` (gitignored).
A missed target is reported as ``MISS`` but does not fail the run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

__all__ = [
    "BENCH_DIR",
    "RESULTS_DIR",
    "TreadleLoader",
    "Window",
    "build_chain",
    "call_with_timeout",
    "chain_steps_per_run",
    "close_quietly",
    "commit_probe_setup",
    "fresh_pg_database",
    "new_config",
    "parse_args",
    "progress",
    "interleaved",
    "load_average",
    "pg_server_info",
    "pg_url_variant",
    "process_cpu_seconds",
    "run_for",
    "run_threads_for",
    "scratch_dir",
    "sqlite_url",
]

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/treadle_bench"


# --------------------------------------------------------------------------- CLI


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """Flags shared by every benchmark script."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller sizes / shorter windows")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("TREADLE_BENCH_PG", DEFAULT_PG_URL),
        help="scratch Postgres database (dropped and recreated!); its name must "
        "contain 'bench'. Env: TREADLE_BENCH_PG. Default: %(default)s",
    )
    p.add_argument("--skip-treadle", action="store_true", help="measure only the references")
    p.add_argument("--no-json", action="store_true", help="do not append to bench/results/")
    return p.parse_args(argv)


# ---------------------------------------------------------------- Postgres setup


def _dbname(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(url).get("dbname") or "")


def _admin_connect(url: str):
    """An autocommit connection to a maintenance database of the same server."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    last: Exception | None = None
    for maint in ("postgres", "template1"):
        try:
            return psycopg.connect(make_conninfo(url, dbname=maint), autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:  # pragma: no cover - depends on server
            last = exc
    raise RuntimeError(f"cannot reach a maintenance database next to {url!r}: {last}")


def fresh_pg_database(url: str) -> str:
    """Drop and recreate the scratch database named in ``url``; returns ``url``.

    Called before every system measured so no system inherits another's tables,
    bloat or cache state. Refuses database names without 'bench' in them.
    """
    from psycopg import sql

    name = _dbname(url)
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: scratch database name must contain 'bench'")
    with _admin_connect(url) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url


def pg_url_variant(url: str, suffix: str) -> str:
    """``url`` with ``suffix`` appended to its database name (one scratch DB per system)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise SystemExit(f"--pg-url must be a postgresql:// URL, got {url!r}")
    return urlunsplit(parts._replace(path="/" + _dbname(url) + suffix))


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return None


def process_cpu_seconds(pids: list[int] | None = None, *, name_prefix: str | None = None) -> float:
    """CPU seconds (user + system) used so far by ``pids``, or by every process whose
    name starts with ``name_prefix`` (Linux /proc; processes gone meanwhile are skipped)."""
    tick = os.sysconf("SC_CLK_TCK")
    if pids is None:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        if name_prefix is not None and not raw[raw.index("(") + 1 : raw.rindex(")")].startswith(name_prefix):
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime stime
    return total


class ForeignCpu:
    """CPU used on this machine by *other* work while a benchmark runs (Linux).

    Machine-wide busy time from /proc/stat, minus this process's CPU time,
    minus every ``postgres`` process's CPU time (our server's backends; other
    clients of the same server are counted as ours, so this undercounts).
    """

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            tick = os.sysconf("SC_CLK_TCK")
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
            busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / tick  # user nice system irq softirq steal
            pg = process_cpu_seconds(name_prefix="postgres")
            t = os.times()
            return busy, pg, t.user + t.system + t.children_user + t.children_system
        except (OSError, ValueError):
            return None

    def cores(self) -> float | None:
        """Average number of cores used by other work since construction."""
        end = self._sample()
        wall = time.perf_counter() - self.t0
        if self.start is None or end is None or wall <= 0:
            return None
        other = (end[0] - self.start[0]) - (end[1] - self.start[1]) - (end[2] - self.start[2])
        return round(max(0.0, other) / wall, 2)


def pg_server_info(url: str) -> dict[str, str]:
    """Durability-relevant server settings, recorded with every result."""
    import psycopg

    out: dict[str, str] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        out["server_version"] = str(conn.execute("SHOW server_version").fetchone()[0])
        for name in ("fsync", "synchronous_commit", "wal_sync_method", "commit_delay", "max_connections"):
            out[name] = str(conn.execute(f"SHOW {name}").fetchone()[0])
    return out


def commit_probe_setup(url: str) -> None:
    """(Re)create the table used to measure the raw commit rate."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS commit_probe")
        conn.execute("CREATE TABLE commit_probe (id bigint PRIMARY KEY, client int NOT NULL, payload bytea NOT NULL)")


# ------------------------------------------------------------------------ timing


@dataclass
class Window:
    """Result of a timed loop: ``count`` units of work in ``seconds``."""

    count: int = 0
    seconds: float = 0.0
    per_client: list[int] | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def __add__(self, other: Window) -> Window:
        pc = None
        if self.per_client is not None or other.per_client is not None:
            a, b = self.per_client or [], other.per_client or []
            pc = [x + y for x, y in zip(a, b, strict=False)] if a and b else list(a or b)
        return Window(self.count + other.count, self.seconds + other.seconds, pc)


def interleaved(
    systems: list[tuple[str, Callable[[float], Window]]], seconds: float, rounds: int
) -> tuple[dict[str, Window], dict[str, str]]:
    """Measure every system for ``seconds`` in total, split into ``rounds`` rounds.

    Systems take turns (the order rotates each round), so load from other work
    on the machine spreads over all of them instead of skewing one. A system
    that raises is reported in the second dict and skipped afterwards.
    """
    totals = {key: Window() for key, _ in systems}
    errors: dict[str, str] = {}
    for r in range(rounds):
        k = r % len(systems) if systems else 0
        for key, measure in systems[k:] + systems[:k]:
            if key in errors:
                continue
            progress(f"round {r + 1}/{rounds}: {key}")
            try:
                totals[key] = totals[key] + measure(seconds / rounds)
            except Exception as exc:  # noqa: BLE001
                import traceback

                traceback.print_exc()
                errors[key] = f"error: {type(exc).__name__}: {exc}"
    return totals, errors


def run_for(seconds: float, fn: Callable[[int], Any], *, warmup: int = 0) -> Window:
    """Call ``fn(i)`` repeatedly for at least ``seconds`` (after ``warmup`` calls)."""
    for i in range(warmup):
        fn(-1 - i)
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        fn(n)
        n += 1
        now = time.perf_counter()
        if now >= deadline:
            return Window(n, now - start)


def run_threads_for(
    seconds: float, n_threads: int, make_worker: Callable[[int], Callable[[int], Any]]
) -> Window:
    """``n_threads`` threads each call their worker until the shared deadline.

    ``make_worker(t)`` runs in the thread before the start barrier (open
    connections there). Returns the aggregate window (all completed calls over
    the time from barrier release to the last thread finishing its last call,
    with per-thread counts). The first error in any thread is re-raised.
    """
    barrier = threading.Barrier(n_threads + 1)
    go = threading.Event()
    counts = [0] * n_threads
    ends = [0.0] * n_threads
    errors: list[BaseException] = []
    box: dict[str, float] = {}

    def body(t: int) -> None:
        try:
            work = make_worker(t)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        go.wait()
        deadline = box["deadline"]
        n = 0
        try:
            while time.perf_counter() < deadline and not errors:
                work(n)
                n += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        counts[t] = n
        ends[t] = time.perf_counter()

    threads = [threading.Thread(target=body, args=(t,), daemon=True, name=f"bench-{t}") for t in range(n_threads)]
    for th in threads:
        th.start()
    try:
        barrier.wait(timeout=120)  # every worker is set up
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    box["deadline"] = start + seconds
    go.set()
    for th in threads:
        th.join(timeout=seconds + 120)
    if errors:
        raise errors[0]
    if any(th.is_alive() for th in threads):
        raise TimeoutError("benchmark threads did not finish in time")
    return Window(sum(counts), max(ends) - start, counts)


def call_with_timeout(fn: Callable[[], Any], timeout: float) -> Any:
    """Run ``fn`` in a daemon thread; raise TimeoutError if it takes too long.

    Keeps benchmarks bounded even if a system hangs (the thread is abandoned).
    """
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    th = threading.Thread(target=body, daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        raise TimeoutError(f"did not finish within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


@contextmanager
def scratch_dir(prefix: str = "treadle-bench-") -> Iterator[Path]:
    """A temporary directory for SQLite files, removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def progress(msg: str) -> None:
    """One progress line on stderr (the tables go to stdout)."""
    print(f".. {msg}", file=sys.stderr, flush=True)


def new_config(**extra: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": f"bench-{uuid.uuid4()}"}, **extra}


# ------------------------------------------------------------- reference graphs


class ChainState(TypedDict):
    x: int


def _inc(state: ChainState) -> dict[str, int]:
    return {"x": state["x"] + 1}


def build_chain(n_nodes: int = 10):
    """Linear StateGraph START -> n0 -> ... -> n{k-1} -> END, each node x += 1."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(ChainState)
    prev = START
    for i in range(n_nodes):
        builder.add_node(f"n{i}", _inc)
        builder.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    builder.add_edge(prev, END)
    return builder


def chain_steps_per_run(graph: Any, n_nodes: int) -> int:
    """Run the chain once on a fresh thread and count the checkpoints written."""
    cfg = new_config()
    out = graph.invoke({"x": 0}, cfg, durability="sync")
    if out["x"] != n_nodes:
        raise AssertionError(f"chain returned {out!r}, expected x={n_nodes}")
    return len(list(graph.get_state_history(cfg)))


# ------------------------------------------------------------------------ treadle


class TreadleLoader:
    """Loads ``treadle.compile`` lazily; records why it is unavailable."""

    def __init__(self, skip: bool = False) -> None:
        self.reason: str | None = None
        self.compile_fn: Callable[..., Any] | None = None
        if skip:
            self.reason = "skipped (--skip-treadle)"
            return
        try:
            import treadle  # noqa: PLC0415
        except Exception as exc:  # noqa: BLE001
            self.reason = f"import treadle failed: {type(exc).__name__}: {exc}"
            return
        fn = getattr(treadle, "compile", None)
        if fn is None:
            self.reason = "treadle.compile does not exist yet"
            return
        self.compile_fn = fn

    @property
    def available(self) -> bool:
        return self.compile_fn is not None

    def compile(self, builder: Any, store: str) -> Any:
        assert self.compile_fn is not None, self.reason
        return self.compile_fn(builder, store=store)


def sqlite_url(path: Path) -> str:
    """``sqlite:///`` + absolute path (so ``sqlite:////tmp/...``)."""
    return "sqlite:///" + str(path.resolve())


def close_quietly(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if close is not None:
        try:
            close()
        except Exception as exc:  # noqa: BLE001
            print(f"  (close failed: {type(exc).__name__}: {exc})", file=sys.stderr)
