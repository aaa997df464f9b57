"""The crash-and-resume matrix: no finished task runs again, for any width, bound, pool and placement.

Fan-out widths {1, 8, 50, 300} × ``max_workers`` {1, 4, default} × pools {thread, async,
process} (and, on a worker, ``remote`` branches too) × {SQLite in-process, PostgreSQL
worker}. All runs of a placement go at once; the process running them is ``kill -9``ed at a
random moment after every run has committed at least one branch; a new process resumes
them. A branch is *finished* when its writes are committed: the set is read from the
store after the kill (nothing can commit any more). Each finished branch must have run
exactly once, every branch at least once, and every final state must hold each branch
once. Stream modes cycle through the runs (invoke, updates, values, debug).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import treadle
from processes import subprocess_env
from treadle.cluster import client
from treadle.store.queue import TERMINAL

pytestmark = pytest.mark.chaos

MATRIX = Path(__file__).parent / "graphs" / "matrix.py"
WIDTHS = (1, 8, 50, 300)
MAX_WORKERS = (1, 4, None)
MODES = ("invoke", "updates", "values", "debug")
# How long each run's fan-out step lasts, roughly (a worker shares its slots between runs).
STEP_SECONDS = {"in-process": 4.0, "worker": 5.0}
PROCESS_WORKERS = 6
ENV = {"TREADLE_PROCESS_WORKERS": str(PROCESS_WORKERS)}
GRACE = 1.0  # s: many times one group commit (tens of ms here), with room for a loaded machine


def _specs(tmp: Path, pools: tuple[str, ...], placement: str) -> list[dict[str, Any]]:
    specs = []
    modes = itertools.cycle(MODES)
    for pool, width, mw in itertools.product(pools, WIDTHS, MAX_WORKERS):
        bound = mw or (1024 if pool == "async" else 64)
        if pool == "process":
            bound = min(bound, PROCESS_WORKERS)
        waves = math.ceil(width / bound)
        tid = f"{pool}-w{width}-m{mw or 'd'}"
        specs.append({
            "thread_id": tid, "pool": pool, "bound": bound, "width": width, "max_workers": mw,
            "mode": next(modes), "sleep": round(min(0.3, STEP_SECONDS[placement] / waves), 4),
            "log": str(tmp / f"{tid}.log"), "release": str(tmp / "release"),
        })
    return specs


def _committed(graph: Any, thread_id: str) -> set[int]:
    """Branches whose writes are committed: in the newest checkpoint's state, or its pending writes."""
    tup = graph.checkpointer.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    if tup is None:
        return set()
    done = set(tup.checkpoint["channel_values"].get("done", []))
    for _task, channel, value in tup.pending_writes or ():
        if channel == "done":
            done.update(value)
    return done


def _wait_some_finished(specs: list[dict[str, Any]], proc: Any, limit: float = 120) -> None:
    """Until most runs (3 in 4) have finished a branch (its body returned: its line is
    logged), and every pool has a run in the middle of its fan-out step."""
    deadline = time.monotonic() + limit
    pools = {s["pool"] for s in specs}
    while True:
        assert proc.poll() is None, "the victim ended before it could be killed"
        ended = {s["thread_id"]: len(_runs_of(s["log"])) for s in specs}
        started = sum(1 for n in ended.values() if n)
        mid = {s["pool"] for s in specs if 0 < ended[s["thread_id"]] < s["width"]}
        if started >= len(specs) * 3 // 4 and mid == pools:
            return
        assert time.monotonic() < deadline, f"after {limit}s: {started} runs started, mid-step {mid}"
        time.sleep(0.05)


def _remote_done(url: str, thread_id: str) -> set[int]:
    import psycopg

    from treadle.cluster.codec import decode

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT result FROM treadle_tasks WHERE thread_id = %s AND status = 'success'",
                            (thread_id,)).fetchall()
    return {i for (blob,) in rows for i in decode(blob)["done"]}


def _lines(log: str) -> list[tuple[int, float]]:
    path = Path(log)
    if not path.exists():
        return []
    return [(int(i), float(t)) for i, t in (line.split() for line in path.read_text().splitlines())]


def _runs_of(log: str) -> Counter[int]:
    return Counter(i for i, _ in _lines(log))


def _ended_before(log: str, moment: float) -> set[int]:
    return {i for i, t in _lines(log) if t < moment}


def _check(specs: list[dict[str, Any]], finished: dict[str, set[int]], finals: dict[str, Any],
           killed_at: float) -> None:
    for spec in specs:
        tid, width = spec["thread_id"], spec["width"]
        runs = _runs_of(spec["log"])
        again = sorted(i for i in finished[tid] if runs[i] != 1)
        assert not again, f"{tid}: finished branches ran again: {again[:10]} ({len(again)})"
        # A body that returned GRACE s before the kill had its writes committed by then (they
        # are submitted as it returns and take one group commit), so it never runs again.
        late = sorted(i for i in _ended_before(spec["log"], killed_at - GRACE) if runs[i] != 1)
        assert not late, f"{tid}: branches that ended {GRACE}s before the kill ran again: {late[:10]}"
        assert set(runs) == set(range(width)), f"{tid}: branches that never ran"
        assert sorted(finals[tid]["done"]) == list(range(width)), f"{tid}: wrong final state"
    # The matrix means something only if the kill landed inside fan-out steps (every pool had
    # a run mid-step when the kill was set off): here, in a fair share of multi-wave runs.
    mid_step = [s for s in specs if 0 < len(_ended_before(s["log"], killed_at)) < s["width"]]
    waves = [s for s in specs if s["width"] > s["bound"]]
    assert len(mid_step) >= len(waves) // 4, f"only {len(mid_step)} runs were killed mid-step"


def test_crash_matrix_sqlite_in_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/matrix.db"
    specs = _specs(tmp_path, ("thread", "async", "process"), "in-process")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(specs))
    cmd = [sys.executable, str(MATRIX), url, str(spec_file)]
    env = subprocess_env(**ENV)
    victim = subprocess.Popen([*cmd, "start"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "victim.err", "wb"))  # noqa: SIM115
    sys.path.insert(0, str(MATRIX.parent))
    try:
        import matrix
    finally:
        sys.path.pop(0)
    with treadle.compile(matrix.thread_builder, store=url) as reader:
        _wait_some_finished(specs, victim)
        time.sleep(random.uniform(1.0, 1.5))
        killed_at = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        finished = {s["thread_id"]: _committed(reader, s["thread_id"]) for s in specs}
    (tmp_path / "release").touch()
    out = subprocess.run([*cmd, "resume"], env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    finals = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(finals) == {s["thread_id"] for s in specs}, out.stderr[-3000:]
    _check(specs, finished, finals, killed_at)


def _pg_terminal(store: Any, run_ids: list[str], limit: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        rows = {r: store.get_run(r) for r in run_ids}
        if all(row.status in TERMINAL for row in rows.values()):
            return rows
        assert time.monotonic() < deadline, Counter(r.status for r in rows.values())
        time.sleep(0.2)


@pytest.mark.postgres
def test_crash_matrix_postgres_worker(tmp_path: Path, pg_url: str, start_worker: Any) -> None:
    specs = _specs(tmp_path, ("thread", "async", "process", "remote"), "worker")
    graphs = [f"matrix_{pool}={MATRIX}:{pool}_builder" for pool in ("thread", "async", "process", "remote")]
    args = ["--concurrency", str(len(specs)), "--task-slots", "32", "--lease-ttl", "5"]
    worker = start_worker(pg_url, *graphs, args=args, env=ENV)
    sys.path.insert(0, str(MATRIX.parent))
    try:
        import matrix
    finally:
        sys.path.pop(0)
    compiled = {pool: treadle.compile(matrix.BUILDERS[pool], store=pg_url, graph_id=f"matrix_{pool}")
                for pool in ("thread", "async", "process", "remote")}
    try:
        runs = {}
        for spec in specs:
            cfg = matrix.config(spec)
            stream = spec["mode"] != "invoke"
            kwargs = {"stream_mode": spec["mode"]} if stream else {}
            row = client.submit(compiled[spec["pool"]], matrix.initial(spec),
                                {**cfg, "max_attempts": 5}, kwargs, stream=stream)
            runs[spec["thread_id"]] = row.run_id
        reader = compiled["thread"]
        _wait_some_finished(specs, worker.proc)
        time.sleep(random.uniform(1.0, 1.5))
        killed_at = time.time()
        worker.signal(signal.SIGKILL)
        worker.proc.wait(10)
        finished = {s["thread_id"]: _committed(reader, s["thread_id"]) for s in specs}
        for spec in specs:  # a remote branch is also finished once its task's outcome is stored
            finished[spec["thread_id"]] |= _remote_done(pg_url, spec["thread_id"])
        (tmp_path / "release").touch()
        start_worker(pg_url, *graphs, args=args, env=ENV)
        rows = _pg_terminal(reader.backend, list(runs.values()), limit=240)
        bad = {tid: (rows[r].status, rows[r].error) for tid, r in runs.items()
               if rows[r].status != "success"}
        assert not bad, bad
        finals = {s["thread_id"]: reader.get_state(matrix.config(s)).values for s in specs}
        _check(specs, finished, finals, killed_at)
    finally:
        for g in compiled.values():
            g.close()
