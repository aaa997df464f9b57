"""Waiting for runs on PostgreSQL: woken by LISTEN/NOTIFY from other connections, not by polls.

The safety nets (the shared probe's timer and each waiter's own timeout) are an hour long,
so a wait that returns was woken by a notification; the hub's counters say which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from treadle.cluster import waiters
from treadle.cluster.notify import close_notifier, notifier_for
from treadle.cluster.waiters import waiters_for
from treadle.cluster.watch import wait
from treadle.store import Store, open_store
from treadle.store.queue import NewRun

HOUR = 3600.0
GUARD = 60.0  # a hung wait fails the test instead of hanging it


@pytest.fixture
def stores(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, Store]]:
    """The waiting process's store and another one (its own connections: another process's)."""
    monkeypatch.setattr(waiters, "SAFETY", HOUR)
    waiting, writing = open_store(pg_url, auto_migrate=True), open_store(pg_url)
    try:
        yield waiting, writing
    finally:
        close_notifier(waiting)
        waiting.close()
        writing.close()


async def test_waiters_are_woken_by_notifications_of_another_store(
        stores: tuple[Store, Store]) -> None:
    waiting, writing = stores
    assert notifier_for(waiting).pushes
    rows = []
    for i in range(20):
        writing.enqueue_run(NewRun(run_id=f"r{i}", thread_id=f"t{i}", graph_id="ref:g",
                                   payload=b""))
        row = writing.claim_run("w", ["ref:g"], False, HOUR)
        assert row is not None
        rows.append(row)
    waits = [asyncio.create_task(wait(waiting, r.run_id, poll=HOUR)) for r in rows]
    while len(waiters_for(waiting)) < len(rows):
        await asyncio.sleep(0.005)
    hub = waiters_for(waiting)
    await asyncio.sleep(0.3)  # were anyone polling, it would have by now
    for r in rows:
        assert await asyncio.to_thread(writing.finish_run, r.run_id, r.epoch, "success",
                                       result=r.run_id.encode())
    done = await asyncio.wait_for(asyncio.gather(*waits), GUARD)
    assert [d.result for d in done if d is not None] == [r.run_id.encode() for r in rows]
    assert hub.notified == len(rows) and hub.probes == 0
