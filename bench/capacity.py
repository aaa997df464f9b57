"""Capacity: 1,000 runs of an I/O-bound agent submitted at once through ``langgraph-sdk``.

Every server serves ``bench/server_graphs/langgraph.json`` (graph ``agent``: three nodes,
each awaiting ``asyncio.sleep(delay)``, a "model call", and appending its name) on
127.0.0.1. One op = ``threads.create()`` then ``runs.wait(thread, "agent", input=...)``
from its own ``langgraph_sdk`` client (one connection); all ops start at once, so N runs
and N waiters are in flight together. Every result is checked (the three calls, in order,
and the op's own tag).

Per server, measured one server at a time (the others idle):

* R: runs/s of N ops at once with the sleeps removed (``delay`` 0): the server's CPU-bound
  rate at N concurrent waiters;
* T: seconds for N ops at once with three 0.5 s sleeps: the agent load.

Target (issue 15): T <= 1.2 x (1.5 s + N / R) on ``treadle dev`` (SQLite) and
``treadle serve --workers 1`` (PostgreSQL), and treadle's T at least 2x shorter than the
tuned ``langgraph dev --n-jobs-per-worker N`` (in memory, from its own virtualenv:
``$TREADLE_BENCH_LANGGRAPH_DEV``). Also printed: the server's memory per in-flight run
(peak RSS of its process group during the agent load minus its RSS just before, divided
by the runs in flight at the peak) and the cores it used.

    PYTHONPATH=src python -m bench.capacity [--quick] [--runs N] [--systems dev,serve,lg]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import (
    BENCH_DIR,
    parse_args,
    pg_server_info,
    pg_url_variant,
    progress,
    scratch_dir,
)
from bench._report import Report
from bench._servers import ServerProc, ServerUnavailable, free_port, launch

GRAPHS_DIR = BENCH_DIR / "server_graphs"
ASSISTANT = "agent"
CALLS = ["plan", "act", "answer"]  # bench/server_graphs/agent.py
DELAY = 0.5  # seconds per "model call"
RUNS = 1000
QUICK_RUNS = 300
WARMUP_OPS = 20
SLACK = 1.2  # T <= SLACK x (ideal + N / R)
PEER_FACTOR = 2.0  # treadle at least this much faster than the tuned langgraph dev
LOAD_TIMEOUT = 600.0  # seconds for one load of N ops (a slow server is cut off, its ops failed)
COLUMNS = ["server", "runs", "R r/s", "R cores", "T s", "T bound s", "T/bound", "T cores", "fail", "MB idle",
           "KB/run", "T/peer", "target"]
LEGEND = ("R = runs/s with the sleeps removed, all N at once; T = seconds for the N-run agent load (3 x 0.5 s "
          "sleeps); T bound = 1.5 s + N/R; T/bound: target <= 1.2; cores = cores used by the server's process "
          "group (and postgres for treadle serve) during that load; fail = ops failed or wrong; MB idle = RSS of "
          "the server's process group after the warm-up, before any load; KB/run = (peak RSS during the agent "
          "load - idle RSS) / runs in flight at the peak; T/peer = langgraph dev's T / this T (target >= 2)")


@dataclass
class System:
    key: str
    label: str
    store: str
    server: ServerProc | None = None
    reason: str | None = None
    r_rate: float | None = None
    r_cores: float | None = None
    t_secs: float | None = None
    t_cores: float | None = None
    t_ok: int = 0
    idle_rss: float | None = None
    peak_rss: float | None = None
    peak_inflight: int = 0
    failures: Counter = field(default_factory=Counter)

    @property
    def available(self) -> bool:
        return self.reason is None and self.server is not None


# ------------------------------------------------------------------------- probes


def group_pids(server: ServerProc) -> list[int]:
    """The processes of the server's process group."""
    assert server.proc is not None
    pgid = server.proc.pid
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        if int(raw[raw.rindex(")") + 2 :].split()[2]) == pgid:
            out.append(int(d))
    return out


def rss_bytes(pids: list[int]) -> float:
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page
        except OSError:
            continue
    return total


def cpu_seconds(pids: list[int], *, postgres: bool) -> float:
    from bench._common import process_cpu_seconds

    return process_cpu_seconds(pids) + (process_cpu_seconds(name_prefix="postgres") if postgres else 0.0)


class Sampler:
    """Samples the server's RSS (and the client's in-flight count) every 50 ms in a thread."""

    def __init__(self, pids: list[int], inflight: list[int]) -> None:
        self.pids = pids
        self.inflight = inflight
        self.peak = 0.0
        self.peak_inflight = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            rss = rss_bytes(self.pids)
            if rss > self.peak:
                self.peak, self.peak_inflight = rss, self.inflight[0]


# ------------------------------------------------------------------------- client


_SSL: Any = None


def new_client(url: str) -> Any:
    """What ``langgraph_sdk.get_client(url=url, api_key=None, timeout=...)`` returns, but
    sharing one SSL context: get_client builds a new one per client (about 20 ms of CPU
    each, 20 s for a thousand clients; the URLs here are plain http)."""
    global _SSL
    try:
        import ssl

        import httpx
        from langgraph_sdk._async.client import _get_headers
        from langgraph_sdk.client import LangGraphClient
    except ImportError:  # another langgraph-sdk layout: the public way
        from langgraph_sdk import get_client

        return get_client(url=url, api_key=None, timeout=LOAD_TIMEOUT)
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return LangGraphClient(httpx.AsyncClient(
        base_url=url, transport=httpx.AsyncHTTPTransport(retries=5, verify=_SSL),
        timeout=httpx.Timeout(LOAD_TIMEOUT), headers=_get_headers(None, None)))


async def op(client: Any, tag: int, delay: float) -> None:
    thread = await client.threads.create()
    out = await client.runs.wait(thread["thread_id"], ASSISTANT, input={"delay": delay, "tag": tag, "calls": []})
    if not isinstance(out, dict) or out.get("calls") != CALLS or out.get("tag") != tag:
        raise AssertionError(f"run {tag} returned {str(out)[:200]}")


async def load(s: System, clients: list[Any], delay: float, inflight: list[int]) -> tuple[float, int]:
    """All ops at once; (seconds until the last one ended, ops that succeeded)."""
    ok = 0

    async def one(i: int) -> None:
        nonlocal ok
        inflight[0] += 1
        try:
            await op(clients[i], i, delay)
            ok += 1
        except Exception as exc:  # noqa: BLE001 - counted, printed once per kind
            kind = f"{type(exc).__name__}: {str(exc)[:160]}"
            if kind not in s.failures:
                print(f"  {s.label}: op failed: {kind}", file=sys.stderr, flush=True)
            s.failures[kind] += 1
        finally:
            inflight[0] -= 1

    start = time.perf_counter()
    tasks = [asyncio.ensure_future(one(i)) for i in range(len(clients))]
    done, pending = await asyncio.wait(tasks, timeout=LOAD_TIMEOUT)
    for t in pending:
        t.cancel()
    if pending:
        s.failures[f"not done within {LOAD_TIMEOUT:g} s"] += len(pending)
        await asyncio.gather(*pending, return_exceptions=True)
    return time.perf_counter() - start, ok


def measure(runner: asyncio.Runner, s: System, n: int) -> None:
    assert s.server is not None
    url = s.server.url
    clients: list[Any] = []

    def fresh(k: int) -> list[Any]:
        # New clients (connections) for each load: an idle keep-alive connection the
        # server closed meanwhile would fail the first request of the next load.
        for c in clients:
            try:
                runner.run(c.aclose())
            except Exception:  # noqa: BLE001
                pass
        clients[:] = [new_client(url) for _ in range(k)]
        return clients

    pids = group_pids(s.server)
    pg = s.key == "treadle_serve"
    inflight = [0]
    try:
        progress(f"{s.label}: warm-up, {WARMUP_OPS} ops")
        runner.run(load(s, fresh(WARMUP_OPS), 0.0, inflight))
        s.failures.clear()
        time.sleep(1.0)  # let the server settle
        s.idle_rss = rss_bytes(pids)  # before any load: the baseline of memory per run
        progress(f"{s.label}: R: {n} ops at once, no sleeps")
        c0 = cpu_seconds(pids, postgres=pg)
        secs, ok = runner.run(load(s, fresh(n), 0.0, inflight))
        s.r_rate = ok / secs if ok == n else None
        s.r_cores = (cpu_seconds(pids, postgres=pg) - c0) / secs
        progress(f"{s.label}: R = {ok}/{secs:.1f} s = {ok / secs:.1f} runs/s")
        fresh(n)
        progress(f"{s.label}: T: {n} ops at once, 3 x {DELAY:g} s sleeps")
        c0 = cpu_seconds(pids, postgres=pg)
        with Sampler(pids, inflight) as sampler:
            secs, ok = runner.run(load(s, clients, DELAY, inflight))
        s.t_cores = (cpu_seconds(pids, postgres=pg) - c0) / secs
        s.t_secs, s.t_ok = secs, ok
        s.peak_rss, s.peak_inflight = sampler.peak, sampler.peak_inflight
        progress(f"{s.label}: T = {secs:.1f} s ({ok}/{n} ok)")
    except Exception as exc:  # noqa: BLE001
        s.reason = f"{type(exc).__name__}: {exc}"
    finally:
        for c in clients:
            try:
                runner.run(c.aclose())
            except Exception:  # noqa: BLE001
                pass
    if not s.server.alive():
        s.reason = f"server exited (status {s.server.proc.returncode})"
    if s.reason:
        print(s.server.describe_failure(RuntimeError(s.reason)), file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ servers


def start_server(s: System, n: int, args: Any, tmp: Path, config: str, work: Path) -> None:
    port = free_port()
    try:
        argv, env = launch(s.key, config, port, tmp=tmp, pg_url=args.pg_url, suffix="_capacity",
                           lg_jobs=n)
        s.server = ServerProc(s.label, argv, port, cwd=work, env=env, log_dir=tmp)
        s.server.wait_ready(90.0)
        progress(f"{s.label} answers /ok after {s.server.ready_s:.1f} s: {' '.join(argv)}")
    except ServerUnavailable as exc:
        if s.server is not None:
            print(s.server.describe_failure(exc), file=sys.stderr, flush=True)
            s.server.stop()
        s.reason = str(exc).splitlines()[0]


# --------------------------------------------------------------------------- main


def _own_flags(argv: list[str]) -> tuple[list[str], int | None, set[str] | None]:
    rest, runs, only = [], None, None
    it = iter(argv)
    for a in it:
        if a == "--runs":
            runs = int(next(it))
        elif a == "--systems":
            only = set(next(it).split(","))
        else:
            rest.append(a)
    return rest, runs, only


def main(argv: list[str] | None = None) -> int:
    rest, runs, only = _own_flags(list(sys.argv[1:] if argv is None else argv))
    args = parse_args(__doc__.splitlines()[0], rest)
    n = runs or (QUICK_RUNS if args.quick else RUNS)
    t_begin = time.perf_counter()
    report = Report(
        bench="capacity",
        title=f"capacity: {n} runs of an I/O-bound agent (3 x {DELAY:g} s awaited) at once via langgraph-sdk",
        columns=COLUMNS, quick=args.quick,
        params={"runs": n, "delay_s": DELAY, "calls": len(CALLS), "slack": SLACK, "peer_factor": PEER_FACTOR,
                "langgraph_dev_jobs": n},
    )
    systems = [
        System("langgraph_dev", "langgraph dev", "in-memory"),
        System("treadle_dev", "treadle dev", "SQLite"),
        System("treadle_serve", "treadle serve", "PostgreSQL"),
    ]
    short = {"langgraph_dev": "lg", "treadle_dev": "dev", "treadle_serve": "serve"}
    for s in systems:
        if only is not None and short[s.key] not in only:
            s.reason = "not selected (--systems)"
        if args.skip_treadle and s.key != "langgraph_dev":
            s.reason = "skipped (--skip-treadle)"
    try:
        import langgraph_sdk
    except ImportError as exc:
        report.notes.append(f"nothing measured: langgraph-sdk is not installed ({exc})")
        report.finish(args.no_json)
        return 0
    report.env["langgraph_sdk"] = langgraph_sdk.__version__
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
        report.env["client_loop"] = "uvloop"
    except ImportError:
        loop_factory = None
        report.env["client_loop"] = "asyncio"

    with scratch_dir("treadle-bench-capacity-") as tmp, asyncio.Runner(loop_factory=loop_factory) as runner:
        work = tmp / "graphs"  # a copy: langgraph dev resolves graph paths from its cwd
        shutil.copytree(GRAPHS_DIR, work, ignore=shutil.ignore_patterns("__pycache__"))
        config = str(work / "langgraph.json")
        for s in systems:  # one server at a time: the load is the whole machine's
            if s.reason:
                continue
            start_server(s, n, args, tmp, config, work)
            if not s.available:
                continue
            try:
                if s.key == "treadle_serve":
                    report.env["postgres"] = pg_server_info(pg_url_variant(args.pg_url, "_capacity"))
                measure(runner, s, n)
            finally:
                assert s.server is not None
                report.env[f"{s.key}_exit"] = s.server.stop()
                report.env[f"{s.key}_command"] = " ".join(s.server.argv)

    peer = systems[0]
    for s in systems:
        if s.r_rate is None and s.t_secs is None:
            why = s.reason or "not measured"
            print(f"{s.label}: not available: {why}")
            report.add(key=s.key, server=s.label, store=s.store, error=f"not available: {why}", target="n/a")
            continue
        bound = 1.5 + n / s.r_rate if s.r_rate else None
        ok_all = s.t_ok == n and not s.failures
        per_run = ((s.peak_rss - s.idle_rss) / s.peak_inflight / 1024
                   if s.peak_rss and s.idle_rss and s.peak_inflight else None)
        vs_peer = peer.t_secs / s.t_secs if peer.t_secs and s.t_secs and peer.t_ok == n and s.key != peer.key \
            else None
        verdict = None
        if s.key != peer.key:
            b_ok = bound is not None and s.t_secs is not None and ok_all and s.t_secs <= SLACK * bound
            p_ok = vs_peer is not None and vs_peer >= PEER_FACTOR
            verdict = f"{'met' if b_ok else 'MISS'}, {'met' if p_ok else 'MISS'}"
        report.add(
            key=s.key, server=s.label, store=s.store,
            **{"runs": n, "R r/s": s.r_rate, "R cores": s.r_cores, "T s": s.t_secs if ok_all else None,
               "T bound s": bound, "T/bound": s.t_secs / bound if bound and s.t_secs and ok_all else None,
               "T cores": s.t_cores, "fail": sum(s.failures.values()),
               "MB idle": s.idle_rss / 2**20 if s.idle_rss else None, "KB/run": per_run,
               "T/peer": vs_peer, "target": verdict},
            t_raw_s=s.t_secs, t_ok=s.t_ok, peak_rss=s.peak_rss, peak_inflight=s.peak_inflight,
            failures=dict(s.failures), unavailable=s.reason,
        )
    for s in systems[1:]:
        bound = 1.5 + n / s.r_rate if s.r_rate else None
        ok_all = s.t_ok == n and not s.failures
        report.ratio(f"{s.label}: T / (1.5 s + N/R)", s.t_secs if ok_all else None, bound, f"<= {SLACK:g}")
        report.ratio(f"{s.label}: langgraph dev T / T", peer.t_secs if peer.t_ok == n else None,
                     s.t_secs if ok_all else None, f">= {PEER_FACTOR:g}")
    report.notes += [
        LEGEND,
        f"op = threads.create() + runs.wait(thread, {ASSISTANT!r}, input={{'delay': d, 'tag': i, 'calls': []}}) "
        f"from its own langgraph_sdk client, result checked (calls == {CALLS}, tag == i); N = {n} ops started "
        f"at once; one server at a time; warm-up {WARMUP_OPS} ops; client loop: {report.env['client_loop']}",
        f"langgraph dev --n-jobs-per-worker {n} (the tuned peer) in its own virtualenv, offline; in memory",
        f"client and servers share the machine's {os.cpu_count()} cores (the client's {n} connections cost CPU too)",
    ]
    for s in systems:
        if s.reason and (s.r_rate or s.t_secs):
            report.notes.append(f"{s.label}: measured in part only: {s.reason}")
        for kind, k in s.failures.items():
            report.notes.append(f"{s.label}: {k} failed op(s): {kind}")
    report.env["elapsed_s"] = round(time.perf_counter() - t_begin, 1)
    report.notes.append(f"benchmark took {time.perf_counter() - t_begin:.0f} s including server start-ups")
    report.finish(args.no_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
