"""A worker's backpressure (treadle.cluster.backpressure): it stops claiming runs while its
memory or its event loop's lag is above their bounds, and resumes below them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

import treadle
from treadle.cluster import client
from treadle.cluster.backpressure import Backpressure, memory_budget, rss_bytes
from treadle.cluster.worker import Worker
from treadle.config import Settings, get_settings
from treadle.graphs.refs import load_graph

HELD = f"{Path(__file__).resolve().parents[1] / 'cluster_graphs' / 'held.py'}:builder"
GUARD = 60.0  # a hung wait fails the test instead of hanging it


def test_the_default_worker_carries_a_thousand_runs() -> None:
    assert Settings().worker_concurrency == 1000
    assert Settings().worker_max_loop_lag == 2.0


def test_the_memory_bound_is_the_setting_or_most_of_the_memory_available() -> None:
    assert memory_budget(Settings(worker_max_rss_mb=512)) == 512 * 1024 * 1024
    assert memory_budget(Settings(worker_max_rss_mb=0)) is None  # no bound
    default = memory_budget(Settings())
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert default is not None and 0 < default <= 0.8 * physical


def test_memory_above_the_bound_pauses_claiming() -> None:
    rss = rss_bytes()
    assert rss is not None and rss > 1024 * 1024  # this interpreter uses more than 1 MB
    tight = Backpressure(Settings(worker_max_rss_mb=1))
    assert not tight.check() and tight.paused == 1
    reason = tight.reason()
    assert reason is not None and "TREADLE_WORKER_MAX_RSS_MB" in reason
    assert not tight.check() and tight.paused == 1  # one pause, however long
    tight.max_rss = None
    assert tight.check() and tight.reason() is None


def test_loop_lag_above_the_bound_pauses_claiming() -> None:
    bp = Backpressure(Settings(worker_max_rss_mb=0, worker_max_loop_lag=0.5))
    assert bp.check()
    bp.lag = 0.8
    reason = bp.reason()
    assert not bp.check() and reason is not None and "TREADLE_WORKER_MAX_LOOP_LAG" in reason
    bp.lag = 0.1
    assert bp.check()
    assert Backpressure(Settings(worker_max_loop_lag=0)).max_lag is None


async def test_the_lag_of_a_blocked_loop_is_measured() -> None:
    bp = Backpressure(Settings(worker_max_rss_mb=0, worker_max_loop_lag=0.5))
    bp.start()
    try:
        await asyncio.sleep(0.15)  # its first look is under way
        time.sleep(0.4)  # the loop is blocked: the look comes late
        seen = 0.0
        for _ in range(100):
            seen = max(seen, bp.lag)
            await asyncio.sleep(0.005)
        assert seen >= 0.2
    finally:
        bp.stop()


async def test_a_worker_claims_no_more_runs_while_above_its_memory_bound(tmp_path: Path) -> None:
    settings = get_settings(store=f"sqlite:///{tmp_path / 'b.db'}", poll_interval=0.05,
                            lease_ttl=5, worker_max_rss_mb=1)  # always above: pauses
    w = Worker(settings, {"held": HELD}, task_slots=0, name="w-bp")
    assert await asyncio.to_thread(w.connect)
    await asyncio.to_thread(w.load)
    running = asyncio.create_task(w.run(handle_signals=False))
    g = treadle.compile(load_graph(HELD), settings=settings, graph_id="held")
    release = tmp_path / "release"
    try:
        rows = [await asyncio.to_thread(client.submit, g, {"release": str(release), "n": i},
                                        {"configurable": {"thread_id": f"t{i}"}}, {})
                for i in range(3)]
        for _ in range(1000):  # the first run is claimed: nothing was in flight
            if w.runs:
                break
            await asyncio.sleep(0.01)
        assert len(w.runs) == 1
        for _ in range(30):  # the claim loop goes round, paused each time
            await asyncio.sleep(0.02)
        assert len(w.runs) == 1 and w.backpressure.paused >= 1
        pending = [r for r in await asyncio.to_thread(w.store.list_runs) if r.status == "pending"]
        assert len(pending) == 2
        w.backpressure.max_rss = None  # memory freed: claiming resumes
        for _ in range(1000):
            if len(w.runs) == 3:
                break
            await asyncio.sleep(0.01)
        assert len(w.runs) == 3
        release.touch()
        done = [await asyncio.wait_for(asyncio.to_thread(client.wait, g.backend, r.run_id, GUARD),
                                       GUARD) for r in rows]
        assert [d.status for d in done] == ["success"] * 3
    finally:
        release.touch()
        w.request_stop()
        await running
        w.close()
        g.close()


@pytest.mark.parametrize("flag,env,value", [("--max-rss-mb", "worker_max_rss_mb", 256.0),
                                            ("--max-loop-lag", "worker_max_loop_lag", 0.25)])
def test_the_bounds_have_flags(flag: str, env: str, value: float) -> None:
    from typer.testing import CliRunner

    from treadle.cli import app

    for command in ("worker", "dev", "serve"):
        out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert flag in out, (command, out)
    overrides: dict[str, Any] = {env: value}
    assert getattr(get_settings(**overrides), env) == value
