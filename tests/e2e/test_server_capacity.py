"""Hundreds of runs in flight on one `treadle dev`, every caller waiting at once.

Through the official langgraph-sdk: each caller creates a thread and waits for an I/O-bound
agent run (three awaited "model calls"). All must come back right. The server's metrics say
how they were woken: by notifications naming their run, with the shared probes few.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client
from prometheus_client.parser import text_string_to_metric_families

from processes import StartServer

pytestmark = pytest.mark.timeout(300)

CONFIG = Path(__file__).parent / "capacity_graphs" / "langgraph.json"
CALLERS = 300
CALLS = ["plan", "act", "answer"]


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = httpx.get(f"{url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


async def test_hundreds_of_concurrent_waits_all_come_back_right(start_server: StartServer) -> None:
    server = start_server("dev", config=CONFIG)  # default concurrency: it carries them all
    before = _samples(server.url)
    clients = [get_client(url=server.url, api_key=None, timeout=240) for _ in range(CALLERS)]

    async def call(i: int) -> object:
        thread = await clients[i].threads.create()
        return await clients[i].runs.wait(thread["thread_id"], "agent",
                                          input={"delay": 0.2, "tag": i, "calls": []})

    try:
        results = await asyncio.gather(*(call(i) for i in range(CALLERS)))
    finally:
        for c in clients:
            await c.aclose()
    assert results == [{"delay": 0.2, "tag": i, "calls": CALLS} for i in range(CALLERS)]
    after = _samples(server.url)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    woken = grew("treadle_run_waiter_wakes_total", cause="notification")
    assert woken >= CALLERS  # each wait woken by its run's end, emitted in process
    assert grew("treadle_run_waiter_probes_total") < CALLERS  # shared reads, not one per waiter
    assert after[("treadle_run_waiters", ())] == 0  # every waiter left
