"""The cluster benchmark's measurements (:mod:`bench.cluster` runs them and reports).

Each function measures one thing against real ``treadle worker`` processes (or this
process, for the references) and returns raw figures.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench._common import commit_probe_setup, new_config
from bench._workers import Fleet
from bench.cluster_graphs import CHAIN_STEPS, RT_NODES

RUN_TIMEOUT = 60.0


def dist(thread_id: str | None = None) -> dict[str, Any]:
    return {"runtime": "distributed", "configurable": {"thread_id": thread_id or f"bench-{uuid.uuid4()}"}}


def run_distributed(client: Any, g: Any, inp: dict[str, Any], timeout: float = RUN_TIMEOUT) -> tuple[Any, Any, float]:
    """Submit, wait; returns (final RunRow, output, caller wall seconds)."""
    t0 = time.perf_counter()
    row = client.submit(g, inp, dist(), {})
    done = client.wait(g.backend, row.run_id, timeout=timeout)
    wall = time.perf_counter() - t0
    return done, client.outcome(done), wall


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def latest_step(store: Any, thread_id: str) -> int:
    import json

    for rec in store.list_checkpoints(thread_id, "", limit=1):
        return int(json.loads(rec.row.metadata).get("step", -2))
    return -2


# ------------------------------------------------------------------------ measures


def fanout_once(client: Any, g: Any, n: int, cpu: float) -> tuple[float, Counter]:
    done, out, wall = run_distributed(client, g, {"n": n, "cpu": cpu, "results": []})
    results = out.get("results") or []
    if done.status != "success" or sorted(r["i"] for r in results) != list(range(n)):
        raise AssertionError(f"fan-out run {done.status}: {len(results)} of {n} results ({done.error})")
    retried = sum(1 for t in g.backend.list_tasks(done.run_id) if t.attempt > 1)
    return wall, Counter(r["pid"] for r in results), retried


def round_trip(client: Any, g_remote: Any, g_local: Any, runs: int) -> dict[str, Any]:
    """Gaps between consecutive node bodies, remote chain vs local chain (interleaved)."""
    gaps: dict[str, list[float]] = {"remote": [], "local": []}
    walls: dict[str, list[float]] = {"remote": [], "local": []}
    db_overhead: list[float] = []  # task created_at -> ended_at minus the body, ms
    outbound: list[float] = []  # task created_at -> body start, ms
    for r in range(runs):
        for kind, g in (("remote", g_remote), ("local", g_local))[:: 1 if r % 2 == 0 else -1]:
            done, out, wall = run_distributed(client, g, {"ts": []})
            ts = sorted(out["ts"])
            if done.status != "success" or [t[0] for t in ts] != list(range(RT_NODES)):
                raise AssertionError(f"round-trip chain ({kind}) {done.status}: {ts!r} ({done.error})")
            gaps[kind] += [(ts[i + 1][1] - ts[i][2]) * 1000 for i in range(len(ts) - 1)]
            walls[kind].append(wall)
            if kind == "remote":
                body = {f"r{t[0]}": t for t in ts}
                for task in g.backend.list_tasks(done.run_id):
                    t = body.get(task.node)
                    if t is None or task.ended_at is None:
                        continue
                    db_overhead.append((task.ended_at - task.created_at - (t[2] - t[1])) * 1000)
                    outbound.append((t[1] - task.created_at) * 1000)
    return {"gaps": gaps, "walls": walls, "db": db_overhead, "outbound": outbound}


def failover(client: Any, g: Any, fleet: Fleet, sig: int, step_s: float, at_step: int) -> dict[str, Any]:
    """Start a chain of ``step_s`` steps; once ``at_step`` is committed, send ``sig`` to
    the worker running it; time (wall clock) to the run's next claim and to the first
    checkpoint committed after that claim."""
    store = g.backend
    thread_id = f"bench-{uuid.uuid4()}"
    row = client.submit(g, {"x": 0, "sleep": step_s}, dist(thread_id), {})
    deadline = time.monotonic() + 30
    while True:
        run = store.get_run(row.run_id)
        if run.status == "running" and latest_step(store, thread_id) >= at_step:
            break
        if run.status not in ("pending", "running") or time.monotonic() > deadline:
            raise AssertionError(f"run {run.status} before the signal ({run.error})")
        time.sleep(0.005)
    victim = fleet.by_name(run.worker)
    if victim is None:
        raise AssertionError(f"no benchmark worker owns the run (worker {run.worker!r})")
    epoch0 = run.epoch
    t_sig = time.time()
    victim.signal(sig)
    claim_t = ckpt_t = None
    step_at_claim = -2
    claimer = None
    deadline = time.monotonic() + 30
    while ckpt_t is None:
        if time.monotonic() > deadline:
            raise AssertionError("the run was not resumed within 30 s")
        run = store.get_run(row.run_id)
        step = latest_step(store, thread_id)
        now = time.time()
        if claim_t is None and run.epoch > epoch0 and run.worker:
            claim_t, step_at_claim, claimer = now, step, run.worker
        elif claim_t is not None and step > step_at_claim:
            ckpt_t = now
        time.sleep(0.004)
    try:
        victim.proc.wait(30)
    except subprocess.TimeoutExpired:
        victim.proc.kill()
    done = client.wait(store, row.run_id, timeout=RUN_TIMEOUT)
    out = client.outcome(done)
    if done.status != "success" or out.get("x") != CHAIN_STEPS:
        raise AssertionError(f"resumed run ended {done.status} with {out!r} ({done.error})")
    other = fleet.by_name(claimer)
    return {
        "claim": claim_t - t_sig,
        "ckpt": ckpt_t - t_sig,
        "victim": victim,
        "claimer": other.label if other else claimer,
        "attempt": done.attempt,
        "rc": victim.proc.returncode,
        "handed_back": "handed back" in victim.log(),
    }


def commit_latency(url: str, n: int) -> list[float]:
    """ms per one-row INSERT + COMMIT over one connection (the floor of every queue write)."""
    import psycopg

    commit_probe_setup(url)
    out: list[float] = []
    with psycopg.connect(url) as conn:
        for i in range(n + 20):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO commit_probe VALUES (%s, 0, %s)", (i, b"x" * 128))
            conn.commit()
            if i >= 20:
                out.append((time.perf_counter() - t0) * 1000)
    return out


def runs_per_second(client: Any, g: Any, n: int) -> dict[str, float]:
    """Queue ``n`` chain runs (distinct threads) at once; database-clock span from the
    first ``created_at`` to the last ``ended_at``."""
    t0 = time.perf_counter()
    rows = [client.submit(g, {"x": 0, "sleep": 0.0}, dist(), {}) for _ in range(n)]
    submit_s = time.perf_counter() - t0
    deadline = time.monotonic() + RUN_TIMEOUT
    done = [client.wait(g.backend, r.run_id, timeout=max(1.0, deadline - time.monotonic())) for r in rows]
    bad = Counter(d.status for d in done if d.status != "success")
    if bad:
        raise AssertionError(f"runs not successful: {dict(bad)}")
    span = max(d.ended_at for d in done) - min(r.created_at for r in rows)
    return {"rate": n / span, "span": span, "submit": submit_s, "retried": sum(d.attempt > 1 for d in done)}


def local_runs_per_second(g: Any, n: int, threads: int) -> dict[str, float]:
    def one(_: int) -> None:
        out = g.invoke({"x": 0, "sleep": 0.0}, new_config())
        if out["x"] != CHAIN_STEPS:
            raise AssertionError(f"bad result {out!r}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(threads)))  # warm-up: connections, thread pools
        t0 = time.perf_counter()
        list(pool.map(one, range(n)))
        span = time.perf_counter() - t0
    return {"rate": n / span, "span": span}


# ---------------------------------------------------------------------------- main


def sweep_cost(store: Any, n: int) -> list[float]:
    """Milliseconds of one sweep with the session check (what every worker runs every
    ``sweep_interval``), ``n`` times, with the fail-over workers alive."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        store.sweep(check_sessions=True)
        times.append((time.perf_counter() - t0) * 1000)
    return times
