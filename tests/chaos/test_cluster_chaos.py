"""The cluster under faults, with real processes and real PostgreSQL.

* three workers run 200 ten-step runs while a random worker is kill -9'ed and
  replaced, again and again;
* PostgreSQL itself is restarted under load;
* a worker is SIGSTOPped past its lease and then resumed.

Each run must end with the right final state; each step of each run must be
committed exactly once; a side effect may repeat only for a task that was in flight
at a kill, and never when it is keyed by the task's idempotency key.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

import treadle
from processes import StartWorker
from treadle.cluster import client
from treadle.graphs.refs import load_graph
from treadle.store.queue import TERMINAL

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

GRAPHS = Path(__file__).resolve().parents[1] / "cluster_graphs"
CHAIN_REF = f"{GRAPHS / 'chain.py'}:builder"
CHAIN = f"chain={CHAIN_REF}"
STEPS = 10
TTL = "2"
WORKER_ARGS = ["--lease-ttl", TTL, "--poll-interval", "0.2", "--concurrency", "8"]


def _effects_tables(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE effects (key text NOT NULL, step text NOT NULL)")
        conn.execute("CREATE TABLE effects_once (key text PRIMARY KEY, step text NOT NULL)")


def _wait_all(store, run_ids, timeout: float, during=None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rows = {r: store.get_run(r) for r in run_ids}
        if all(row.status in TERMINAL for row in rows.values()):
            return rows
        if time.monotonic() > deadline:
            left = Counter(row.status for row in rows.values())
            raise AssertionError(f"runs not finished after {timeout}s: {dict(left)}")
        if during is not None:
            during()
        time.sleep(0.1)


def _check_exactly_once(url: str, graph, rows: dict) -> None:
    store = graph.backend
    for row in rows.values():
        assert row.status == "success", (row.run_id, row.status, row.error)
        state = graph.get_state({"configurable": {"thread_id": row.thread_id}})
        assert state.values["n"] == STEPS
        assert state.values["done"] == [f"s{i}" for i in range(1, STEPS + 1)]
        steps = [json.loads(c.row.metadata)["step"] for c in store.list_checkpoints(row.thread_id, "")]
        assert sorted(steps) == list(range(-1, STEPS + 1)), (row.thread_id, sorted(steps))
    with psycopg.connect(url) as conn:
        once = conn.execute("SELECT count(*), count(DISTINCT key) FROM effects_once").fetchone()
        assert once == (len(rows) * STEPS, len(rows) * STEPS)


def _effect_repeats(url: str) -> int:
    with psycopg.connect(url) as conn:
        total, keys = conn.execute("SELECT count(*), count(DISTINCT key) FROM effects").fetchone()
    return total - keys


def test_kill_9_random_workers_under_load(pg_url: str, start_worker: StartWorker) -> None:
    _effects_tables(pg_url)
    env = {"TREADLE_EFFECTS_URL": pg_url, "STEP_SLEEP": "0.03"}
    workers = [start_worker(pg_url, CHAIN, args=WORKER_ARGS, env=env) for _ in range(3)]
    rng = random.Random(1234)
    kills = 0
    with treadle.compile(load_graph(CHAIN_REF), store=pg_url, graph_id="chain") as g:
        runs = [
            client.submit(g, {"n": 0, "done": []},
                          {"runtime": "distributed", "max_attempts": 20,
                           "configurable": {"thread_id": f"chaos-{i}"}}, {}).run_id
            for i in range(200)
        ]
        next_kill = time.monotonic() + 0.8

        def chaos() -> None:
            nonlocal kills, next_kill
            if kills >= 6 or time.monotonic() < next_kill:
                return
            victim = rng.randrange(len(workers))
            workers[victim].signal(signal.SIGKILL)
            workers[victim].proc.wait(10)
            kills += 1
            workers[victim] = start_worker(pg_url, CHAIN, args=WORKER_ARGS, env=env, ready=False)
            next_kill = time.monotonic() + rng.uniform(0.6, 1.2)

        rows = _wait_all(g.backend, runs, timeout=240, during=chaos)
        assert kills >= 3, "the load ended before the chaos could hit it"
        _check_exactly_once(pg_url, g, rows)
        resumed = [r for r in rows.values() if r.attempt > 1]
        assert resumed, "no run was caught by a kill"
        # Repeats only for tasks in flight at a kill: at most one step per running run
        # of the killed worker (8 slots).
        repeats = _effect_repeats(pg_url)
        assert repeats <= kills * 8, (repeats, kills)


def test_postgres_restart_under_load(private_pg, start_worker: StartWorker) -> None:
    url = private_pg.url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE chaos")
    url = url.rsplit("/", 1)[0] + "/chaos"
    _effects_tables(url)
    env = {"TREADLE_EFFECTS_URL": url, "STEP_SLEEP": "0.05"}
    for _ in range(2):
        start_worker(url, CHAIN, args=WORKER_ARGS, env=env)
    with treadle.compile(load_graph(CHAIN_REF), store=url, graph_id="chain") as g:
        runs = [
            client.submit(g, {"n": 0, "done": []},
                          {"runtime": "distributed", "max_attempts": 20,
                           "configurable": {"thread_id": f"pg-{i}"}}, {}).run_id
            for i in range(40)
        ]
        time.sleep(1.0)
        before = Counter(g.backend.get_run(r).status for r in runs)
        assert before["success"] < len(runs), "the load ended before the restart"
        private_pg.restart()
        rows = _wait_all(g.backend, runs, timeout=180)
        _check_exactly_once(url, g, rows)


def test_sigstopped_worker_is_fenced_after_its_lease(pg_url: str, start_worker: StartWorker) -> None:
    env = {"STEP_SLEEP": "0.4"}
    a = start_worker(pg_url, CHAIN, args=WORKER_ARGS, env=env)
    with treadle.compile(load_graph(CHAIN_REF), store=pg_url, graph_id="chain") as g:
        row = client.submit(g, {"n": 0, "done": []},
                            {"runtime": "distributed", "configurable": {"thread_id": "stopped"}}, {})
        deadline = time.monotonic() + 20
        while g.backend.get_run(row.run_id).status != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.6)  # a step or so in
        a.signal(signal.SIGSTOP)
        try:
            b = start_worker(pg_url, CHAIN, args=WORKER_ARGS, env=env)
            # B's sweeper re-queues the run once A's lease expires, and B resumes it.
            deadline = time.monotonic() + 30
            while g.backend.get_run(row.run_id).epoch < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert g.backend.get_run(row.run_id).epoch >= 2
        finally:
            a.signal(signal.SIGCONT)
        done = client.wait(g.backend, row.run_id, timeout=60)
        assert done.status == "success" and done.attempt == 2
        _check_exactly_once_one(g, "stopped")
        time.sleep(1.0)  # A has had time to try its late writes
        log = a.log()
        assert "refused" in log or "lease lost" in log, log
        assert "started" in b.log()
        _check_exactly_once_one(g, "stopped")  # nothing A wrote late got in


def _check_exactly_once_one(graph, thread_id: str) -> None:
    cps = list(graph.backend.list_checkpoints(thread_id, ""))
    steps = [json.loads(c.row.metadata)["step"] for c in cps]
    assert sorted(steps) == list(range(-1, STEPS + 1)), [
        (c.row.checkpoint_id[-12:], (c.row.parent_checkpoint_id or "")[-12:], c.row.metadata)
        for c in cps]
    state = graph.get_state({"configurable": {"thread_id": thread_id}})
    assert state.values["done"] == [f"s{i}" for i in range(1, STEPS + 1)]


FANOUT_REF = f"{GRAPHS / 'fanout.py'}:builder"


def test_orchestrator_killed_mid_superstep_reuses_finished_remote_tasks(pg_url: str, start_worker: StartWorker) -> None:
    """kill -9 the worker orchestrating a fan-out while its remote tasks run elsewhere: the
    run resumes on another worker, which reuses the tasks' stored results (none runs twice)."""
    env = {"WORK_SLEEP": "1.0"}
    fan = f"fanout={FANOUT_REF}"
    orchestrator = start_worker(pg_url, fan, args=[*WORKER_ARGS, "--task-slots", "0"], env=env)
    with treadle.compile(load_graph(FANOUT_REF), store=pg_url, graph_id="fanout") as g:
        row = client.submit(g, {"n": 4, "results": []},
                            {"runtime": "distributed", "configurable": {"thread_id": "orch"}}, {})
        deadline = time.monotonic() + 20
        while g.backend.get_run(row.run_id).status != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        # Only now a worker that executes tasks (2 at a time) but takes no runs.
        start_worker(pg_url, fan, args=[*WORKER_ARGS, "--task-slots", "2", "--concurrency", "1"],
                     env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tasks = g.backend.list_tasks(row.run_id)
            if sum(t.status == "success" for t in tasks) >= 2 and \
                    sum(t.status == "running" for t in tasks) >= 1:
                break
            time.sleep(0.02)
        orchestrator.signal(signal.SIGKILL)
        orchestrator.proc.wait(10)
        start_worker(pg_url, fan, args=[*WORKER_ARGS, "--task-slots", "0"], env=env)
        done = client.wait(g.backend, row.run_id, timeout=60)
        assert done.status == "success" and done.attempt == 2
        tasks = g.backend.list_tasks(row.run_id)
        assert len(tasks) == 4 and all(t.status == "success" and t.attempt == 1 for t in tasks)
        state = g.get_state({"configurable": {"thread_id": "orch"}})
        assert sorted(r["i"] for r in state.values["results"]) == [0, 1, 2, 3]
