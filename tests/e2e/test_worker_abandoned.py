"""A worker whose cancelled runs leave sync node bodies blocking (abandoned threads)
keeps working, and recycles itself cleanly at TREADLE_MAX_ABANDONED_THREADS."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import treadle
from processes import free_port
from treadle.cluster import client
from treadle.cluster.worker import EXIT_RECYCLE
from treadle.graphs.refs import load_graph

GRAPH = Path(__file__).resolve().parents[1] / "cluster_graphs" / "blocking.py"
REF = f"blocking={GRAPH}:builder"
HOUR = 3600.0


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _until(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class _Bench:
    def __init__(self, tmp_path: Path, url: str, start_worker: Any, bound: int) -> None:
        self.marker = tmp_path / "bodies.log"
        self.port = free_port()
        # A node pool of 2 threads: without replacement, 2 abandoned bodies starve it.
        self.worker = start_worker(
            url, REF, args=["--concurrency", "2", "--lease-ttl", "1.5", "--poll-interval", "0.05",
                            "--port", str(self.port), "--drain-timeout", "5",
                            "--max-abandoned-threads", str(bound)],
            env={"BLOCK_LOG": str(self.marker), "TREADLE_THREAD_WORKERS": "2"})
        self.graph = treadle.compile(load_graph(f"{GRAPH}:builder"), store=url, graph_id="blocking")

    def started(self) -> int:
        return len(self.marker.read_text().splitlines()) if self.marker.exists() else 0

    def submit(self, sleep: float) -> str:
        row = client.submit(self.graph, {"sleep": sleep, "n": 0}, {"runtime": "distributed"}, {})
        return row.run_id

    def status(self, run_id: str) -> str:
        row = self.graph.backend.get_run(run_id)
        assert row is not None
        return row.status

    def abandon_one(self) -> None:
        """Start a run whose body blocks for an hour, wait until the body runs, cancel it."""
        before = self.started()
        run_id = self.submit(HOUR)
        _until(lambda: self.started() > before, "the blocking body to start")
        client.cancel(self.graph.backend, run_id)
        _until(lambda: self.status(run_id) == "cancelled", "the run to be cancelled")

    def quick_run_succeeds(self) -> None:
        run_id = self.submit(0)
        _until(lambda: self.status(run_id) not in ("pending", "running"), "the quick run")
        assert self.status(run_id) == "success"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_abandoned_bodies_do_not_wedge_the_worker(backend: str, tmp_path: Path,
                                                  start_worker: Any,
                                                  request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path}/q.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    bench = _Bench(tmp_path, url, start_worker, bound=4)
    for _ in range(3):  # more than the pool's 2 threads
        bench.abandon_one()
    # Live runs still get threads; the worker's loops and probes keep going.
    bench.quick_run_succeeds()
    status, text = _get(bench.port, "/metrics")
    assert status == 200 and "treadle_abandoned_threads 3.0" in text
    assert _get(bench.port, "/healthz")[0] == 200
    live = bench.submit(HOUR)
    _until(lambda: bench.status(live) == "running", "a run to be claimed")
    first = bench.graph.backend.get_run(live).lease_expires_at  # type: ignore[union-attr]
    _until(lambda: bench.graph.backend.get_run(live).lease_expires_at != first,  # type: ignore[union-attr]
           "the lease heartbeat to advance")
    assert _get(bench.port, "/healthz")[0] == 200
    assert "abandoned thread(s) in this process" in bench.worker.log()
    # The live run's body makes the 4th abandoned thread: the worker recycles itself.
    client.cancel(bench.graph.backend, live)
    assert bench.worker.proc.wait(timeout=60) == EXIT_RECYCLE
    assert "recycling" in bench.worker.log()
    assert bench.status(live) == "cancelled"


def test_sigterm_stops_a_worker_holding_abandoned_threads(tmp_path: Path,
                                                          start_worker: Any) -> None:
    bench = _Bench(tmp_path, f"sqlite:///{tmp_path}/q.db", start_worker, bound=8)
    bench.abandon_one()
    bench.worker.signal(signal.SIGTERM)
    assert bench.worker.proc.wait(timeout=60) == 0
    assert "stopped" in bench.worker.log()
