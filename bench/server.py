"""Server: thread create + run wait of a 10-node chain over HTTP via ``langgraph-sdk``.

Every server serves ``bench/server_graphs/langgraph.json`` (graph ``chain``: 10
nodes, each ``n += 1``) on 127.0.0.1 and is driven by the same client, the
official async ``langgraph_sdk.get_client``. One op = ``threads.create()`` then
``runs.wait(thread_id, "chain", input={"n": 0})``, checked to return ``n == 10``.

Systems, all started at once and measured in interleaved rounds:

* ``langgraph dev`` (``langgraph-cli[inmem]``, in-memory runtime), the reference,
  from its own virtualenv (``.bench/langgraph-dev/`` or ``$TREADLE_BENCH_LANGGRAPH_DEV``);
* ``treadle dev`` on SQLite (a file in a temporary directory);
* ``treadle serve --workers 1`` on PostgreSQL (scratch database ``<pg-url db>_server``);
* the HTTP floor: a Starlette stub answering both calls with canned JSON, i.e.
  the cost of the client, HTTP and uvicorn alone on this machine.

Measures: concurrency 1 (ops one after another from one client, at most 300 or
8 s: p50/p90/p99 of the op latency) and concurrency 32 (32 asyncio workers, one client and one
connection each, for a fixed window: runs/s). Targets (issue 15): at c=32 each treadle
server does >= 2x the runs/s of langgraph dev in the same run, and its processes spend
<= 3x the CPU per run of LangGraph's own in-memory invoke of the chain (measured in this
process first). A server that does not start is reported as "not available" and skipped.

    PYTHONPATH=src python -m bench.server [--quick]
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
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
from bench._servers import STUB_APP, ServerProc, ServerUnavailable, free_port, launch, offline_env

GRAPHS_DIR = BENCH_DIR / "server_graphs"
ASSISTANT = "chain"  # both servers create a default assistant per graph, id = graph name
N_NODES = 10
CONCURRENCY = 32
ROUNDS = 2
WARMUP_OPS = 20
WARMUP_SECONDS = 3.0
OP_TIMEOUT = 30.0
#: Issue 15's targets: c=32 runs/s >= 2x langgraph dev's, server CPU per run <= 3x LangGraph's
#: in-memory invoke of the same chain (measured in this process before the servers start).
RPS_VS_REF_TARGET = 2.0
CPU_VS_INVOKE_TARGET = 3.0
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# langgraph dev's --n-jobs-per-worker (runs in flight) defaults to 1; 32 measured slower here (18.9 vs 22.8
# runs/s at c=32): each poll that finds no pending run sleeps 0.5 s, and with 32 slots polls run dry more often
LG_JOBS: int | None = None
COLUMNS = ["server", "c1 n", "c1 p50", "c1 p90", "c32 r/s", "c32 p50", "fail", "CPU c/s/pg", "CPU ms/run",
           "p50/ref", "r/s/ref", "target"]
LEGEND = ("c1 = concurrency 1: ops measured, p50 / p90 op latency in ms; c32 = concurrency 32: runs/s and p50 op "
          "latency in ms; fail = failed ops; CPU c/s/pg = cores used during the c32 windows by this client / the "
          "server's process group / all postgres processes; p50/ref and r/s/ref = ratio to langgraph dev; "
          "CPU ms/run = the server's process group (API and its workers, not PostgreSQL) per op at c=32; "
          "target = c32 runs/s >= 2x langgraph dev's, CPU ms/run <= 3x LangGraph's in-memory invoke")


@dataclass
class System:
    key: str
    label: str
    store: str
    treadle: bool = False  # measured against the targets
    server: ServerProc | None = None
    reason: str | None = None  # why it is not measured
    clients: list[Any] = field(default_factory=list)  # [c=1 client, c=32 clients...]
    lat1: list[float] = field(default_factory=list)
    lat32: list[float] = field(default_factory=list)
    ops32: int = 0
    secs32: float = 0.0
    cpu32: dict[str, float] = field(default_factory=lambda: Counter())
    ok: int = 0
    failures: Counter = field(default_factory=Counter)

    @property
    def available(self) -> bool:
        return self.reason is None and self.server is not None

    def reset(self) -> None:
        """Forget the warm-up."""
        self.lat1.clear()
        self.lat32.clear()
        self.ops32, self.secs32, self.ok = 0, 0.0, 0
        self.cpu32 = Counter()
        self.failures.clear()


class BadResult(AssertionError):
    pass


# --------------------------------------------------------------------------- client


def new_client(url: str) -> Any:
    from langgraph_sdk import get_client

    return get_client(url=url, api_key=None, timeout=OP_TIMEOUT)


async def op(client: Any) -> float:
    """One thread create + run wait; seconds."""
    t0 = time.perf_counter()
    thread = await client.threads.create()
    out = await client.runs.wait(thread["thread_id"], ASSISTANT, input={"n": 0})
    dt = time.perf_counter() - t0
    if not isinstance(out, dict) or out.get("n") != N_NODES:
        raise BadResult(f"run returned {str(out)[:200]}")
    return dt


async def checked(sys_: System, client: Any) -> float | None:
    """``op`` bounded by OP_TIMEOUT; a failure is counted (and printed once per kind), not raised."""
    try:
        dt = await asyncio.wait_for(op(client), OP_TIMEOUT)
    except Exception as exc:  # noqa: BLE001
        kind = UUID_RE.sub("<id>", f"{type(exc).__name__}: {str(exc)[:160]}")
        if kind not in sys_.failures:
            print(f"  {sys_.label}: op failed: {kind}", file=sys.stderr, flush=True)
        sys_.failures[kind] += 1
        return None
    sys_.ok += 1
    return dt


async def sequential(sys_: System, n: int, seconds: float) -> None:
    """``n`` ops one after another, stopping early after ``seconds`` (slow servers)."""
    client = sys_.clients[0]
    deadline = time.perf_counter() + seconds
    for _ in range(n):
        dt = await checked(sys_, client)
        if dt is not None:
            sys_.lat1.append(dt)
        if time.perf_counter() >= deadline:
            break


async def concurrent(sys_: System, seconds: float) -> None:
    """CONCURRENCY workers, one client (one keep-alive connection) each, until the deadline."""
    clients = sys_.clients[1:]
    await asyncio.gather(*(checked(sys_, c) for c in clients))  # reconnect after the idle rounds
    deadline = 0.0
    counts = [0] * len(clients)
    ends = [0.0] * len(clients)
    lats: list[float] = []

    async def worker(i: int) -> None:
        while time.perf_counter() < deadline:
            dt = await checked(sys_, clients[i])
            if dt is not None:
                counts[i] += 1
                lats.append(dt)
        ends[i] = time.perf_counter()

    cpu0 = cpu_sample(sys_.server)
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(worker(i) for i in range(len(clients))))
    wall = max(ends) - start
    cpu1 = cpu_sample(sys_.server)
    sys_.ops32 += sum(counts)
    sys_.secs32 += wall
    sys_.lat32 += lats
    for k in cpu1:
        sys_.cpu32[k] += cpu1[k] - cpu0[k]


def measure(runner: asyncio.Runner, s: System, phase: str, n_seq: int, seq_s: float, window: float) -> None:
    """One round of ``s``: c=1 then c=32. A server that died, hangs or failed every op of
    the round is marked unavailable (its reason printed with its log) and left out afterwards."""
    ok0 = s.ok
    try:
        runner.run(sequential(s, n_seq, seq_s))
        runner.run(asyncio.wait_for(concurrent(s, window), window + 2 * OP_TIMEOUT))
    except Exception as exc:  # noqa: BLE001 - e.g. TimeoutError from a hung server
        s.reason = f"{phase}: {type(exc).__name__}: {exc}"
    assert s.server is not None
    if not s.server.alive():
        s.reason = f"server exited (status {s.server.proc.returncode}) during the {phase}"
    elif s.reason is None and s.ok == ok0:
        s.reason = f"every op of the {phase} failed: {next(iter(s.failures), '?')}"
    if s.reason:
        print(s.server.describe_failure(RuntimeError(s.reason)), file=sys.stderr, flush=True)


def cpu_sample(server: ServerProc | None) -> dict[str, float]:
    """CPU seconds so far of this process (the client), the server's process group and postgres."""
    tick = os.sysconf("SC_CLK_TCK")
    t = os.times()
    out = {"client": t.user + t.system, "server": 0.0, "pg": 0.0}
    pgid = server.proc.pid if server is not None and server.proc is not None else -1
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        if int(fields[2]) == pgid:
            out["server"] += cpu
        elif comm.startswith("postgres"):
            out["pg"] += cpu
    return out


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# -------------------------------------------------------------------------- servers


def start_servers(systems: list[System], args: Any, tmp: Path) -> None:
    """Start every available system's server (in parallel), then wait for each ``/ok``."""
    work = tmp / "graphs"  # a copy: langgraph dev resolves graph paths from its cwd and
    shutil.copytree(GRAPHS_DIR, work, ignore=shutil.ignore_patterns("__pycache__"))  # writes .langgraph_api/
    config = str(work / "langgraph.json")
    root = BENCH_DIR.parent
    tr_env = offline_env()
    tr_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root / "src"), str(root), tr_env.get("PYTHONPATH")) if p)
    for s in systems:
        if s.reason:
            continue
        port = free_port()
        try:
            if s.key == "stub":
                argv = [sys.executable, "-m", "uvicorn", "--factory", STUB_APP, "--port", str(port),
                        "--log-level", "warning", "--no-access-log"]
                env = tr_env
            else:
                argv, env = launch(s.key, config, port, tmp=tmp, pg_url=args.pg_url, suffix="_server",
                                   lg_jobs=LG_JOBS)
            s.server = ServerProc(s.label, argv, port, cwd=work, env=env, log_dir=tmp)
        except ServerUnavailable as exc:
            s.reason = str(exc).splitlines()[0]
    for s in systems:
        if s.server is None or s.reason:
            continue
        try:
            s.server.wait_ready(60.0)
            progress(f"{s.label} answers /ok after {s.server.ready_s:.1f} s: {' '.join(s.server.argv)}")
        except ServerUnavailable as exc:
            print(s.server.describe_failure(exc), file=sys.stderr, flush=True)
            s.reason = f"{exc}{_hint(s.server.log_tail())}"
            s.server.stop()


def _hint(log: str) -> str:
    """The most telling line of a failed server's log (an error line, else the last one)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m|[│╭╮╰╯─]", "", ln).strip() for ln in log.splitlines()]
    lines = [ln for ln in lines if ln]
    errs = [ln for ln in lines if "rror" in ln or "No such" in ln]
    pick = (errs or lines or [""])[-1]
    return f": {pick[:160]}" if pick else ""


def invoke_cpu_ms(n: int = 200) -> float:
    """CPU ms of one in-process ``invoke`` of the served chain with LangGraph's InMemorySaver,
    a fresh thread each (the reference of the CPU target)."""
    from langgraph.checkpoint.memory import InMemorySaver

    from bench.server_graphs.chain import _build

    graph = _build().compile(checkpointer=InMemorySaver())
    for i in range(20):
        graph.invoke({"n": 0}, {"configurable": {"thread_id": f"warm-{i}"}})
    t0 = time.process_time()
    for i in range(n):
        graph.invoke({"n": 0}, {"configurable": {"thread_id": f"t-{i}"}})
    return (time.process_time() - t0) / n * 1000


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    quick = args.quick
    n_seq = 100 if quick else 300
    seq_cap = 3.0 if quick else 8.0  # c=1 stops early after this many seconds in total
    window = 3.0 if quick else 10.0
    t_begin = time.perf_counter()

    report = Report(
        bench="server",
        title=f"server: thread create + run wait of a {N_NODES}-node chain via langgraph-sdk (HTTP, 127.0.0.1)",
        columns=COLUMNS,
        quick=quick,
        params={"ops_c1": n_seq, "max_s_c1": seq_cap, "window_c32_s": window, "concurrency": CONCURRENCY, "rounds": ROUNDS,
                "warmup_ops": WARMUP_OPS, "nodes": N_NODES, "langgraph_dev_jobs": LG_JOBS,
                "rps_vs_ref_target": RPS_VS_REF_TARGET, "cpu_vs_invoke_target": CPU_VS_INVOKE_TARGET},
    )
    systems = [
        System("langgraph_dev", "langgraph dev", "in-memory"),
        System("treadle_dev", "treadle dev", "SQLite", treadle=True),
        System("treadle_serve", "treadle serve", "PostgreSQL", treadle=True),
        System("stub", "HTTP floor", "none"),
    ]
    try:
        import langgraph_sdk
    except ImportError as exc:
        report.notes.append(f"nothing measured: langgraph-sdk is not installed ({exc})")
        report.finish(args.no_json)
        return 0
    report.env["langgraph_sdk"] = langgraph_sdk.__version__
    if args.skip_treadle:
        for s in systems[1:3]:
            s.reason = "skipped (--skip-treadle)"

    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
        report.env["client_loop"] = "uvloop"
    except ImportError:
        loop_factory = None
        report.env["client_loop"] = "asyncio"

    invoke_ms = invoke_cpu_ms()
    report.env["langgraph_invoke_cpu_ms"] = invoke_ms
    with scratch_dir("treadle-bench-server-") as tmp, asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            start_servers(systems, args, tmp)
            live = [s for s in systems if s.available]
            if any(s.key == "treadle_serve" for s in live):
                report.env["postgres"] = pg_server_info(pg_url_variant(args.pg_url, "_server"))
            for s in live:
                assert s.server is not None
                s.clients = [new_client(s.server.url) for _ in range(CONCURRENCY + 1)]
                progress(f"{s.label}: warm-up, {WARMUP_OPS} ops + {CONCURRENCY} concurrent")
                measure(runner, s, "warm-up", WARMUP_OPS, WARMUP_SECONDS, 0.5)
                s.reset()
            for r in range(ROUNDS):
                live = [s for s in live if s.available]
                k = r % len(live) if live else 0
                for s in live[k:] + live[:k]:
                    progress(f"round {r + 1}/{ROUNDS}: {s.label}: c=1 x {n_seq // ROUNDS} ops (at most "
                             f"{seq_cap / ROUNDS:g} s), c={CONCURRENCY} for {window / ROUNDS:g} s")
                    measure(runner, s, f"round {r + 1}", n_seq // ROUNDS, seq_cap / ROUNDS, window / ROUNDS)
        finally:
            for s in systems:  # all servers shut down in parallel
                if s.server is not None:
                    s.server.terminate()
            for s in systems:
                for c in s.clients:
                    try:
                        runner.run(c.aclose())
                    except Exception:  # noqa: BLE001
                        pass
                if s.server is not None:
                    rc = s.server.stop()
                    report.env[f"{s.key}_exit"] = rc
                    if s.server.ready_s is not None:
                        report.env[f"{s.key}_ready_s"] = round(s.server.ready_s, 2)
                    report.env[f"{s.key}_command"] = " ".join(s.server.argv)

    # ------------------------------------------------------------------------ report
    p50 = {s.key: pct(s.lat1, 0.5) * 1000 if s.lat1 else None for s in systems}
    rps = {s.key: s.ops32 / s.secs32 if s.secs32 else None for s in systems}
    ref, floor = systems[0], systems[3]
    for s in systems:
        if not s.lat1 and not s.ops32:
            why = s.reason or "not measured"
            print(f"{s.label}: not available: {why}")
            report.add(key=s.key, server=s.label, store=s.store, error=f"not available: {why}",
                       target="n/a")
            continue
        cores = {k: v / (s.secs32 or 1.0) for k, v in s.cpu32.items()}
        vs_ref = s.treadle
        verdict = None
        cpu_run = s.cpu32["server"] / s.ops32 * 1000 if s.ops32 else None
        if s.treadle:
            vs = _div(rps[s.key], rps[ref.key])
            r_ok = vs is not None and vs >= RPS_VS_REF_TARGET
            c_ok = cpu_run is not None and cpu_run <= CPU_VS_INVOKE_TARGET * invoke_ms
            verdict = f"{'met' if r_ok else 'MISS'}, {'met' if c_ok else 'MISS'}"
        report.add(
            key=s.key, server=s.label, store=s.store,
            **{
                "c1 n": len(s.lat1),
                "c1 p50": p50[s.key],
                "c1 p90": pct(s.lat1, 0.9) * 1000 if s.lat1 else None,
                "c32 r/s": rps[s.key],
                "c32 p50": pct(s.lat32, 0.5) * 1000 if s.lat32 else None,
                "fail": sum(s.failures.values()),
                "CPU c/s/pg": "/".join(f"{cores.get(k, 0.0):.1f}" for k in ("client", "server", "pg")),
                "CPU ms/run": cpu_run,
                "p50/ref": _div(p50[s.key], p50[ref.key]) if vs_ref else None,
                "r/s/ref": _div(rps[s.key], rps[ref.key]) if vs_ref else None,
                "target": verdict,
            },
            ops_c32=s.ops32, secs_c32=round(s.secs32, 3),
            client_cpu_ms_per_op=round(s.cpu32["client"] / s.ops32 * 1000, 3) if s.ops32 else None,
            c1_p99_ms=pct(s.lat1, 0.99) * 1000 if s.lat1 else None,
            c32_p90_ms=pct(s.lat32, 0.9) * 1000 if s.lat32 else None,
            cores_c32={k: round(v, 3) for k, v in cores.items()},
            failures=dict(s.failures), unavailable=s.reason,
        )
    for s in systems[1:3]:
        report.ratio(f"{s.label} c=1 p50 / langgraph dev", p50[s.key], p50[ref.key])
        report.ratio(f"{s.label} c={CONCURRENCY} runs/s / langgraph dev", rps[s.key], rps[ref.key])
        report.ratio(f"{s.label} c={CONCURRENCY} runs/s / HTTP floor", rps[s.key], rps[floor.key])
        report.ratio(f"{s.label} c={CONCURRENCY} runs/s / langgraph dev (target)", rps[s.key], rps[ref.key],
                     f">= {RPS_VS_REF_TARGET:g}")
        cpu_run = s.cpu32["server"] / s.ops32 * 1000 if s.ops32 else None
        report.ratio(f"{s.label} server CPU per run / LangGraph in-memory invoke ({invoke_ms:.1f} ms)",
                     cpu_run, invoke_ms, f"<= {CPU_VS_INVOKE_TARGET:g}")

    report.notes += [
        LEGEND,
        f"op = threads.create() + runs.wait(thread, {ASSISTANT!r}, input={{'n': 0}}), result checked (n == "
        f"{N_NODES}); c=1: {n_seq} ops one after another (stopped after {seq_cap:g} s in total); "
        f"c={CONCURRENCY}: {CONCURRENCY} asyncio workers, one langgraph_sdk client (one keep-alive connection) "
        f"each, {window:g} s; {ROUNDS} interleaved rounds, all servers up throughout; warm-up {WARMUP_OPS} "
        f"(at most {WARMUP_SECONDS:g} s) + {CONCURRENCY} ops per server; client loop: {report.env['client_loop']}",
        f"langgraph dev runs with --n-jobs-per-worker {LG_JOBS or 'default (1 run at a time; 32 measured slower)'} "
        f"in its own virtualenv, offline (LANGGRAPH_CLI_NO_ANALYTICS=1, LANGGRAPH_NO_VERSION_CHECK=true, "
        f"LANGSMITH_TRACING=false); it keeps state in memory and pickles it to .langgraph_api/ every 10 s",
        "langgraph dev's in-memory queue (langgraph_runtime_inmem ops.Runs.next) sleeps 0.5 s before polling "
        "whenever its previous poll found no pending run, and only takes runs created before that sleep began, "
        "so its c=1 latency is ~0.5-1 s whatever the graph costs; each poll also scans and sorts every run it "
        "has stored, so it slows as runs accumulate",
        "HTTP floor: a Starlette app on uvicorn answering the same two calls with canned JSON (runs nothing): "
        "the cost of the client, HTTP and uvicorn alone, the ceiling any server can reach on this machine",
        f"client and servers share the machine's {os.cpu_count()} cores",
    ]
    per_op = [s.cpu32["client"] / s.ops32 for s in systems if s.ops32]
    if per_op:
        report.notes.append(
            f"the client spent {min(per_op) * 1000:.2f}-{max(per_op) * 1000:.2f} ms of CPU per op at "
            f"c={CONCURRENCY} (langgraph-sdk on httpx: two requests per op)")
    if systems[2].lat1:
        report.notes.append(f"treadle serve: scratch database {pg_url_variant(args.pg_url, '_server')} "
                            "(dropped and recreated at the start)")
    for s in systems:
        if s.reason and (s.lat1 or s.ops32):
            report.notes.append(f"{s.label}: measured in part only, then left out: {s.reason}")
        for kind, n in s.failures.items():
            report.notes.append(f"{s.label}: {n} failed op(s): {kind}")
    report.env["elapsed_s"] = round(time.perf_counter() - t_begin, 1)
    report.notes.append(f"benchmark took {time.perf_counter() - t_begin:.0f} s including server start-ups")
    report.finish(args.no_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
