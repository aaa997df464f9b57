"""Waiting for runs is event-woken (treadle.cluster.waiters, treadle.cluster.watch) on SQLite.

Every test makes the safety nets (the shared probe's timer and each waiter's own timeout)
an hour long, so a waiter that returns was woken by the event under test; what woke it is
checked with the hub's counters (notifications, probes) and the store's reads, never with
the clock.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from queue_contract import new_run
from treadle.cluster import waiters
from treadle.cluster.notify import close_notifier, notifier_for
from treadle.cluster.waiters import RunWaiters, waiters_for
from treadle.cluster.watch import wait, watch
from treadle.store import open_store
from treadle.store.base import Store
from treadle.store.queue import CHANNEL_CHANGED, CHANNEL_EVENTS, CHANNEL_RUN_DONE, Event, RunRow

HOUR = 3600.0
GUARD = 60.0  # a hung wait fails the test instead of hanging it (not a timing assertion)
QUIET = 0.3  # time left to a poller, were there one, before the event under test


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setattr(waiters, "SAFETY", HOUR)
    s = open_store(f"sqlite:///{tmp_path}/w.db")
    try:
        yield s
    finally:
        close_notifier(s)
        s.close()


class Reads:
    """Counts the store's reads of runs and events."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.get_run = self.read_events = 0
        get_run, read_events = store.get_run, store.read_events

        def counted_get_run(run_id: str) -> RunRow | None:
            self.get_run += 1
            return get_run(run_id)

        def counted_read_events(run_id: str, after: int, limit: int = 1000) -> list[Event]:
            self.read_events += 1
            return read_events(run_id, after, limit)

        monkeypatch.setattr(store, "get_run", counted_get_run)
        monkeypatch.setattr(store, "read_events", counted_read_events)


def _running(store: Store, run_id: str, thread_id: str = "t") -> RunRow:
    store.enqueue_run(new_run(run_id, thread_id=thread_id))
    row = store.claim_run("w", ["ref:g"], False, HOUR)
    assert row is not None and row.run_id == run_id
    return row


async def _hub_of(store: Store, run_id: str) -> RunWaiters:
    """The loop's hub once ``run_id`` has a waiter registered."""
    for _ in range(1000):
        hub = waiters_for(store)
        if run_id in hub._runs:
            return hub
        await asyncio.sleep(0.005)
    raise AssertionError(f"no waiter registered for {run_id}")


async def test_a_waiter_is_woken_by_an_emit_of_this_process(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    notifier_for(store).detects_changes = False  # only the emit can wake it
    row = _running(store, "r1")
    reads = Reads(store, monkeypatch)
    waiting = asyncio.create_task(wait(store, "r1", poll=HOUR))
    hub = await _hub_of(store, "r1")
    while reads.get_run < 1:  # its first read: the run is running
        await asyncio.sleep(0.005)
    await asyncio.sleep(QUIET)
    assert store.finish_run("r1", row.epoch, "success", result=b"out")
    notifier_for(store).emit(CHANNEL_RUN_DONE, "r1")
    done = await asyncio.wait_for(waiting, GUARD)
    assert done is not None and done.status == "success" and done.result == b"out"
    assert hub.notified == 1 and hub.probes == 0
    assert reads.get_run == 2  # once on arrival, once when woken: no polling
    assert "r1" not in waiters_for(store)._runs  # it left


async def test_an_emit_for_another_run_wakes_nobody_else(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    notifier_for(store).detects_changes = False
    rows = [_running(store, f"r{i}", thread_id=f"t{i}") for i in range(3)]
    reads = Reads(store, monkeypatch)
    waits = [asyncio.create_task(wait(store, r.run_id, poll=HOUR)) for r in rows]
    hub = await _hub_of(store, "r2")
    while reads.get_run < 3:
        await asyncio.sleep(0.005)
    await asyncio.sleep(QUIET)
    assert store.finish_run("r1", rows[1].epoch, "success")
    notifier_for(store).emit(CHANNEL_RUN_DONE, "r1")
    assert (await asyncio.wait_for(waits[1], GUARD)).status == "success"  # type: ignore[union-attr]
    assert hub.notified == 1 and reads.get_run == 4  # only r1's waiter read again
    assert not waits[0].done() and not waits[2].done()
    for r in (rows[0], rows[2]):
        store.finish_run(r.run_id, r.epoch, "error", error="x")
        notifier_for(store).emit(CHANNEL_RUN_DONE, r.run_id)
    assert [(await asyncio.wait_for(w, GUARD)).status for w in waits] == [  # type: ignore[union-attr]
        "error", "success", "error"]


async def test_a_commit_by_another_connection_wakes_waiters_through_one_probe(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """No emit: SQLite's change detector sees the commit, one probe reads every waited run."""
    rows = [_running(store, f"r{i}", thread_id=f"t{i}") for i in range(50)]
    reads = Reads(store, monkeypatch)
    waits = [asyncio.create_task(wait(store, r.run_id, poll=HOUR)) for r in rows]
    hub = await _hub_of(store, "r49")
    while reads.get_run < len(rows):
        await asyncio.sleep(0.005)
    await asyncio.sleep(QUIET)

    def finish_all() -> None:  # on the store's connections, not the detector's; no emit
        for r in rows:
            assert store.finish_run(r.run_id, r.epoch, "success", result=r.run_id.encode())

    await asyncio.to_thread(finish_all)
    done = await asyncio.wait_for(asyncio.gather(*waits), GUARD)
    assert [d.result for d in done if d is not None] == [r.run_id.encode() for r in rows]
    assert hub.notified == 0 and 1 <= hub.probes < len(rows)
    assert reads.get_run == 2 * len(rows)  # each waiter read on arrival and once woken


_FINISHER = textwrap.dedent("""
    import sys
    from treadle.store import open_store

    url, run_id, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = open_store(url)
    assert store.finish_run(run_id, epoch, "success", result=b"from another process")
    store.close()
""")


async def test_a_commit_by_another_process_wakes_the_waiter(
        store: Store, tmp_path: Path) -> None:
    row = _running(store, "r1")
    waiting = asyncio.create_task(wait(store, "r1", poll=HOUR))
    hub = await _hub_of(store, "r1")
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", _FINISHER, store.url, "r1", str(row.epoch)],
        capture_output=True, text=True, timeout=GUARD)
    assert proc.returncode == 0, proc.stderr
    done = await asyncio.wait_for(waiting, GUARD)
    assert done is not None and done.result == b"from another process"
    assert hub.notified == 0 and hub.probes >= 1


async def test_events_wake_a_watcher_as_they_are_written(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    notifier_for(store).detects_changes = False
    row = _running(store, "r1")
    reads = Reads(store, monkeypatch)
    seen: list[Any] = []

    async def follow() -> None:
        async for item in watch(store, "r1", poll=HOUR):
            seen.append(item)

    following = asyncio.create_task(follow())
    hub = await _hub_of(store, "r1")
    await asyncio.sleep(QUIET)
    for seq in (1, 2):
        assert store.put_events("r1", row.epoch, [Event(seq=seq, kind="chunk", data=b"%d" % seq)])
        notifier_for(store).emit(CHANNEL_EVENTS, "r1")
        while len(seen) < seq:
            await asyncio.sleep(0.005)
    assert [e.data for e in seen] == [b"1", b"2"]
    store.finish_run("r1", row.epoch, "success")
    notifier_for(store).emit(CHANNEL_RUN_DONE, "r1")
    await asyncio.wait_for(following, GUARD)
    assert isinstance(seen[-1], RunRow) and seen[-1].status == "success"
    assert hub.notified == 3 and hub.probes == 0
    assert reads.read_events <= 8  # a few per wake-up, never a poll loop


async def test_the_shared_probe_is_the_safety_net_for_a_lost_notification(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiters, "SAFETY", 0.05)
    notifier_for(store).detects_changes = False  # nothing is notified at all
    row = _running(store, "r1")
    waiting = asyncio.create_task(wait(store, "r1", poll=HOUR))
    hub = await _hub_of(store, "r1")
    assert store.finish_run("r1", row.epoch, "success")
    done = await asyncio.wait_for(waiting, GUARD)
    assert done is not None and done.status == "success"
    assert hub.notified == 0 and hub.probes >= 1


async def test_a_deleted_run_ends_its_wait(store: Store) -> None:
    store.enqueue_run(new_run("r1"))
    waiting = asyncio.create_task(wait(store, "r1", poll=HOUR))
    hub = await _hub_of(store, "r1")
    store.cancel_run("r1", "cancel")  # ends the pending run (no worker)
    store.delete_runs(["r1"])
    assert await asyncio.wait_for(waiting, GUARD) is None
    assert hub.probes >= 1


def test_the_change_detector_looks_only_while_someone_waits_on_changes(store: Store) -> None:
    notifier = notifier_for(store)
    listener = notifier.listener
    assert listener is not None and not listener.pushes and notifier.detects_changes
    before = listener.looks  # type: ignore[attr-defined]
    notifier._stop.wait(0.3)
    assert listener.looks == before  # type: ignore[attr-defined]  # nobody subscribed
    got: list[str] = []
    sub = notifier.subscribe(CHANNEL_CHANGED, lambda channel, _p: got.append(channel))
    try:
        for _ in range(500):
            if listener.looks > before:  # type: ignore[attr-defined]
                break
            notifier._stop.wait(0.01)
        store.enqueue_run(new_run("r1"))  # a commit on another connection
        for _ in range(500):
            if got:
                break
            notifier._stop.wait(0.01)
        assert got and set(got) == {CHANNEL_CHANGED}
    finally:
        sub.close()
    assert notifier.subscribers(CHANNEL_CHANGED) == 0 and not notifier._demand.is_set()


def test_the_notifier_delivers_by_channel_and_payload(store: Store) -> None:
    notifier = notifier_for(store)
    got: list[tuple[str, str, str]] = []
    subs = [notifier.subscribe(CHANNEL_RUN_DONE, lambda c, p: got.append(("any", c, p))),
            notifier.subscribe((CHANNEL_RUN_DONE, CHANNEL_EVENTS),
                               lambda c, p: got.append(("r1", c, p)), key="r1")]
    notifier.emit(CHANNEL_RUN_DONE, "r2")
    notifier.emit(CHANNEL_EVENTS, "r1")
    notifier.emit(CHANNEL_RUN_DONE, "r1")
    assert got == [("any", CHANNEL_RUN_DONE, "r2"), ("r1", CHANNEL_EVENTS, "r1"),
                   ("any", CHANNEL_RUN_DONE, "r1"), ("r1", CHANNEL_RUN_DONE, "r1")]
    for sub in subs:
        sub.close()
    notifier.emit(CHANNEL_RUN_DONE, "r1")
    assert len(got) == 4
    assert notifier.subscribers(CHANNEL_RUN_DONE) == notifier.subscribers(CHANNEL_EVENTS) == 0
