"""A value the store can never hold fails its run at once, with the store's reason: no
hand-back, no lease expiry, no second attempt (PostgreSQL and SQLite, real workers)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import treadle
from treadle.cluster import client
from treadle.cluster.codec import encode
from treadle.cluster.worker import Worker
from treadle.config import get_settings
from treadle.graphs import load_graph
from treadle.store.queue import NewRun, RunRow
from treadle.store.resources import Thread

GRAPH = Path(__file__).resolve().parents[1] / "cluster_graphs" / "bulky.py"
REF = f"bulky={GRAPH}:builder"
FAST = ["--lease-ttl", "2", "--poll-interval", "0.05"]


def _run(url: str, input: dict[str, Any], **config: Any) -> RunRow:
    with treadle.compile(load_graph(f"{GRAPH}:builder"), store=url, graph_id="bulky") as g:
        row = client.submit(g, input, {"runtime": "distributed", **config}, {})
        return client.wait(g.store, row.run_id, 60)


def _failed_at_once(row: RunRow, reason: str) -> None:
    assert row.status == "error", row
    assert reason in (row.error or ""), row.error
    # The first attempt ended it: never handed back (epoch 1), never retried.
    assert (row.attempt, row.epoch) == (1, 1), row


def _run_on_thread_record(url: str, input: dict[str, Any]) -> RunRow:
    """A run on a thread record, as the HTTP API queues it: the worker writes the thread's
    values (jsonb on PostgreSQL) with the run's status."""
    with treadle.compile(load_graph(f"{GRAPH}:builder"), store=url, graph_id="bulky") as g:
        thread_id = str(uuid.uuid4())
        g.store.put_thread(Thread(thread_id))
        payload = encode({"input": input, "config": {}, "kwargs": {}, "thread_record": True})
        row = g.store.enqueue_run(NewRun(run_id=str(uuid.uuid4()), thread_id=thread_id,
                                         graph_id="ref:bulky", payload=payload))
        return client.wait(g.store, row.run_id, 60)


def test_postgres_refusals_fail_the_run_at_once(pg_url: str, start_worker: Any) -> None:
    start_worker(pg_url, REF, args=FAST)
    # jsonb cannot hold NUL: the thread's values cannot be stored (a class 22 data
    # exception). Before, the outcome was never recorded: lease expiries, attempt 3 of 3.
    row = _run_on_thread_record(pg_url, {"text": "a\x00b"})
    _failed_at_once(row, "StoreDataError")
    assert "cannot store this data" in (row.error or "")
    with treadle.compile(load_graph(f"{GRAPH}:builder"), store=pg_url) as g:
        thread = g.store.get_thread(row.thread_id)
        assert thread is not None and thread.status == "error"
        assert "cannot store this data" in (thread.error or "")
    # A NUL in a node's error text used to make the outcome unrecordable (lease expired,
    # attempt 3 of 3): it is recorded, escaped.
    row = _run(pg_url, {"fail": "bad\x00value"})
    _failed_at_once(row, "ValueError: bad\\x00value")
    # The worker is fine: the next run succeeds.
    assert _run(pg_url, {"size": 3}).status == "success"


def test_sqlite_refusals_fail_the_run_at_once(tmp_path: Path, start_worker: Any) -> None:
    url = f"sqlite:///{tmp_path}/q.db?max_length=100000"  # SQLITE_LIMIT_LENGTH
    start_worker(url, REF, args=FAST)
    row = _run(url, {"size": 200_000})
    _failed_at_once(row, "StoreDataError")
    assert "string or blob too big" in (row.error or "")
    assert _run(url, {"size": 3}).status == "success"


async def test_a_refused_state_is_released_when_its_run_ends(tmp_path: Path) -> None:
    """The big value is garbage once its run failed: nothing (an exception, a retry, a
    hand-back) keeps it alive in the worker."""
    from cluster_graphs import bulky  # the worker below loads this same module

    settings = get_settings(store=f"sqlite:///{tmp_path}/w.db?max_length=100000",
                            poll_interval=0.05, lease_ttl=2)
    w = Worker(settings, {"bulky": "cluster_graphs.bulky:builder"}, task_slots=0)
    assert await asyncio.to_thread(w.connect)
    await asyncio.to_thread(w.load)
    running = asyncio.create_task(w.run(handle_signals=False))
    try:
        before = len(bulky.REFS)
        row = await asyncio.to_thread(_run, settings.store, {"size": 300_000})
        _failed_at_once(row, "string or blob too big")
        assert len(bulky.REFS) == before + 1
        while w.runs:  # its attempt's task is done on the worker too
            await asyncio.sleep(0.01)
        # Freed by reference counting as the run ended (no wait for the cyclic GC).
        assert bulky.REFS[-1]() is None
    finally:
        w.request_stop()
        await running
        w.close()


#: A state PostgreSQL can never hold: base64-encoded in a jsonb string it is ~347 MB, over
#: jsonb's 256 MB limit (the issue's reproduction). SQLite refuses it under ``max_length``.
HUGE = 260_000_000
MB = 1024 * 1024


def _memory(pid: int) -> dict[str, int]:
    """The process's resident set now (VmRSS) and at its peak (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def _refused_state_is_given_back(url: str, start_worker: Any, reason: str) -> None:
    # A long lease: sending hundreds of MB on a busy machine must not hand the run over.
    w = start_worker(url, REF, args=["--lease-ttl", "60", "--poll-interval", "0.05"])
    assert _run(url, {"size": 3}).status == "success"
    baseline = _memory(w.pid)["VmRSS"]
    row = _run(url, {"size": HUGE})
    _failed_at_once(row, reason)
    peak = _memory(w.pid)["VmHWM"]
    assert peak > baseline + HUGE, (baseline, peak)  # the worker really held the state
    # Later runs work (a fresh connection where one was closed) ...
    for _ in range(2):
        assert _run(url, {"size": 3}).status == "success"
    # ... and the memory is back: nothing keeps the state, or a buffer it went through.
    deadline = time.monotonic() + 30
    while (rss := _memory(w.pid)["VmRSS"]) > baseline + 150 * MB:
        assert time.monotonic() < deadline, (
            f"worker RSS {rss // MB} MB after the refused run: baseline {baseline // MB} MB, "
            f"peak {peak // MB} MB")
        time.sleep(0.2)


def test_postgres_gives_back_the_memory_of_a_refused_huge_state(
        pg_url: str, start_worker: Any) -> None:
    """The writer connection that carried the 347 MB statement is closed after it: libpq
    never shrinks a connection's output buffer (512 MB here, ~660 MB of RSS before)."""
    _refused_state_is_given_back(pg_url, start_worker, "string too long to represent as jsonb")


def test_sqlite_gives_back_the_memory_of_a_refused_huge_state(
        tmp_path: Path, start_worker: Any) -> None:
    url = f"sqlite:///{tmp_path}/q.db?max_length=100000000"
    _refused_state_is_given_back(url, start_worker, "string or blob too big")


def test_hand_backs_are_bounded(tmp_path: Path, start_worker: Any) -> None:
    """A run handed back to the queue more than TREADLE_RUN_MAX_HANDBACKS times (a store
    failing under it on every worker, drains) fails with the reason instead of circling."""
    url = f"sqlite:///{tmp_path}/q.db"
    with treadle.compile(load_graph(f"{GRAPH}:builder"), store=url, graph_id="bulky") as g:
        row = client.submit(g, {"size": 1}, {"runtime": "distributed"}, {})
        for _ in range(3):  # what three workers draining (or failing) in turn leave behind
            claimed = g.store.claim_run("w-drain", ["ref:bulky"], False, 5.0)
            assert claimed is not None and claimed.run_id == row.run_id
            assert g.store.release_run(claimed.run_id, claimed.epoch)
    start_worker(url, REF, args=[*FAST, "--max-handbacks", "2"])
    with treadle.compile(load_graph(f"{GRAPH}:builder"), store=url, graph_id="bulky") as g:
        done = client.wait(g.store, row.run_id, 60)
    assert done.status == "error" and done.epoch == 4
    assert "handed back to the queue 3 times" in (done.error or "")
    assert "TREADLE_RUN_MAX_HANDBACKS=2" in (done.error or "")
