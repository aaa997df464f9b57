"""Failover that does not wait for the lease: a worker killed with kill -9 loses its run
only until the store notices its session ended (PostgreSQL: its connection; SQLite: its
process's file lock); a run that kills every
worker that takes it ends ``error`` after TREADLE_MAX_WORKER_LOSSES losses.

Nothing here asserts a duration: the kill -9 test compares the time of the new claim
with the dead worker's lease on the database's clock (the lease is a minute long, so a
fallback to the lease would fail it), and the waits are only failure bounds.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

import treadle
from processes import StartWorker
from treadle.cluster import client
from treadle.graphs.refs import load_graph

pytestmark = [pytest.mark.chaos]

GRAPHS = Path(__file__).resolve().parents[1] / "cluster_graphs"
CHAIN_REF = f"{GRAPHS / 'chain.py'}:builder"
KILLER_REF = f"{GRAPHS / 'killer.py'}:builder"
T = TypeVar("T")
TTL = 60.0
ARGS = ["--lease-ttl", str(TTL), "--poll-interval", "0.2"]


def _wait(what: str, check: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.02)


@pytest.mark.parametrize("store_kind", ["postgres", "sqlite"])
def test_kill_9_hands_the_run_over_before_its_lease_expires(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                            start_worker: StartWorker) -> None:
    url = (request.getfixturevalue("pg_url") if store_kind == "postgres"
           else f"sqlite:///{tmp_path}/failover.db")
    env = {"STEP_SLEEP": "0.3"}
    workers = [start_worker(url, f"chain={CHAIN_REF}", args=ARGS, env=env) for _ in range(2)]
    with treadle.compile(load_graph(CHAIN_REF), store=url, graph_id="chain") as g:
        store = g.backend
        run = client.submit(g, {"n": 0, "done": []},
                            {"runtime": "distributed", "configurable": {"thread_id": "fo"}}, {})
        _wait("a step committed", lambda: len(list(store.list_checkpoints("fo", ""))) >= 3, 30)
        before = store.get_run(run.run_id)
        assert before is not None and before.status == "running" and before.worker
        (holder,) = [w for w in workers if before.worker.split(":")[-2] == str(w.pid)]
        (other,) = [w for w in workers if w is not holder]
        holder.signal(signal.SIGKILL)
        holder.proc.wait(10)
        # Failure bound only: the test fails if the run is not taken over within the TTL.
        after = _wait("the run claimed again",
                      lambda: r if (r := store.get_run(run.run_id)) and r.epoch > before.epoch else None,
                      TTL)
        claimed_by_then = store.now()
        assert before.lease_expires_at is not None
        # Structural: the dead worker's lease was still valid when the run was claimed again.
        assert claimed_by_then < before.lease_expires_at, (claimed_by_then, before.lease_expires_at)
        assert after.worker is not None and after.worker.split(":")[-2] == str(other.pid)
        assert after.lost == 1 and after.error is not None
        assert "died (its" in after.error, after.error
        done = client.wait(store, run.run_id, timeout=60)
        assert done.status == "success" and done.lost == 1
        steps = sorted(json.loads(c.row.metadata)["step"] for c in store.list_checkpoints("fo", ""))
        assert steps == list(range(-1, 11))  # each step committed once across both workers


@pytest.mark.postgres
def test_a_run_that_kills_every_worker_ends_in_error(pg_url: str, start_worker: StartWorker) -> None:
    env = {"TREADLE_MAX_WORKER_LOSSES": "2"}
    # Serves another graph only: it just sweeps (and survives).
    start_worker(pg_url, f"chain={CHAIN_REF}", args=ARGS, env=env)
    with treadle.compile(load_graph(KILLER_REF), store=pg_url, graph_id="killer") as g:
        run = client.submit(g, {"n": 0},
                            {"runtime": "distributed", "max_attempts": 1,
                             "configurable": {"thread_id": "k"}}, {})
        victims = []
        for n in (1, 2):
            w = start_worker(pg_url, f"killer={KILLER_REF}", args=ARGS, env=env, ready=False)
            victims.append(w)
            _wait(f"worker {n} killed by the run", w.proc.poll, 60)  # its exit code, once dead
        done = client.wait(g.backend, run.run_id, timeout=TTL)
        assert done.status == "error" and done.lost == 2 and done.attempt == 2
        assert done.error is not None and done.error.startswith(
            "the run's worker died 2 times (killed, OOM or lost); giving up"), done.error
        assert [w.proc.returncode for w in victims] == [-signal.SIGKILL] * 2
