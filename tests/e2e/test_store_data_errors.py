"""A value the store can never hold fails its run at once, with the store's reason: no
hand-back, no lease expiry, no second attempt (PostgreSQL and SQLite, real workers)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import treadle
from treadle.cluster import client
from treadle.cluster.codec import encode
from treadle.cluster.worker import Worker
from treadle.config import get_settings
from treadle.graphs.refs import load_graph
from treadle.store.queue import NewRun, RunRow
from treadle.store.thread_records import Thread

GRAPH = Path(__file__).resolve().parents[1] / "cluster_graphs" / "bulky.py"
REF = f"bulky={GRAPH}:builder"
FAST = ["--lease-ttl", "2", "--poll-interval", "0.05"]


def _run(url: str, input: dict[str, Any], timeout: float = 60, **config: Any) -> RunRow:
    with treadle.compile(load_graph(f"{GRAPH}:builder"), store=url, graph_id="bulky") as g:
        row = client.submit(g, input, {"runtime": "distributed", **config}, {})
        return client.wait(g.backend, row.run_id, timeout)


def _failed_at_once(row: RunRow, reason: str) -> None:
    assert row.status == "error", row
    assert reason in (row.error or ""), row.error
    # The first attempt ended it: never handed back (epoch 1), never retried.
    assert (row.attempt, row.epoch) == (1, 1), row


def _run_on_thread_record(url: str, input: dict[str, Any], timeout: float = 60) -> RunRow:
    """A run on a thread record, as the HTTP API queues it: the worker writes the thread's
    values (jsonb on PostgreSQL) with the run's status."""
    with treadle.compile(load_graph(f"{GRAPH}:builder"), store=url, graph_id="bulky") as g:
        thread_id = str(uuid.uuid4())
        g.backend.put_thread(Thread(thread_id))
        payload = encode({"input": input, "config": {}, "kwargs": {}, "thread_record": True})
        row = g.backend.enqueue_run(NewRun(run_id=str(uuid.uuid4()), thread_id=thread_id,
                                         graph_id="ref:bulky", payload=payload))
        return client.wait(g.backend, row.run_id, timeout)


def test_postgres_refusals_fail_the_run_at_once(pg_url: str, start_worker: Any) -> None:
    start_worker(pg_url, REF, args=FAST)
    # jsonb cannot hold NUL: the thread's values cannot be stored (a class 22 data
    # exception). Before, the outcome was never recorded: lease expiries, attempt 3 of 3.
    row = _run_on_thread_record(pg_url, {"text": "a\x00b"})
    _failed_at_once(row, "StoreDataError")
    assert "cannot store this data" in (row.error or "")
    with treadle.compile(load_graph(f"{GRAPH}:builder"), store=pg_url) as g:
        thread = g.backend.get_thread(row.thread_id)
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
#: A state PostgreSQL stores (~200 MB in base64).
BIG = 150_000_000
MB = 1024 * 1024
SLOW = 600  # seconds a huge run may take on a loaded machine (a deadline, not a measure)


def _memory(pid: int) -> dict[str, int]:
    """The process's resident set now (VmRSS) and at its peak (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def _worker(url: str, start_worker: Any) -> tuple[Any, int]:
    """A worker that ran a small run, and its resident memory then."""
    # A long lease: sending hundreds of MB on a busy machine must not hand a run over.
    w = start_worker(url, REF, args=["--lease-ttl", "60", "--poll-interval", "0.05"])
    assert _run(url, {"size": 3}).status == "success"
    return w, _memory(w.pid)["VmRSS"]


def _given_back(url: str, w: Any, baseline: int, size: int, run: Callable[[], RunRow]) -> RunRow:
    """``run`` a run that makes a ``size``-character state on worker ``w``; then the worker
    runs small runs and its memory comes back to within 150 MB of ``baseline``."""
    with open(f"/proc/{w.pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS: the next peak is this run's
    row = run()
    peak = _memory(w.pid)["VmHWM"]
    assert peak > baseline + size, (baseline, peak)  # the worker really held the state
    # Later runs work (a fresh connection where one was closed) ...
    for _ in range(2):
        assert _run(url, {"size": 3}).status == "success"
    # ... and the memory is back: nothing keeps the state, or a buffer it went through.
    deadline = time.monotonic() + 30
    while (rss := _memory(w.pid)["VmRSS"]) > baseline + 150 * MB:
        assert time.monotonic() < deadline, (
            f"worker RSS {rss // MB} MB after the run: baseline {baseline // MB} MB, "
            f"peak {peak // MB} MB; {row.status}: {row.error}")
        time.sleep(0.2)
    return row


def test_postgres_gives_back_the_memory_of_huge_states(pg_url: str, start_worker: Any) -> None:
    """libpq never shrinks a connection's buffers: the connections that carried these
    states are closed after them (before, the worker kept 660 MB, 1 GB and 280 MB more)."""
    w, baseline = _worker(pg_url, start_worker)
    # Refused as a checkpoint (347 MB of JSON on the writer connection).
    row = _given_back(pg_url, w, baseline, HUGE, lambda: _run(pg_url, {"size": HUGE}, SLOW))
    _failed_at_once(row, "string too long to represent as jsonb")
    # Stored as a checkpoint and read back, then refused as the thread record's values
    # (jsonb has no NUL), on a pooled connection.
    row = _given_back(pg_url, w, baseline, BIG, lambda: _run_on_thread_record(
        pg_url, {"size": BIG // 10, "fill": "x" * 9 + "\x00"}, SLOW))
    _failed_at_once(row, "cannot store this data")
    # Stored, read back, and recorded as the run's result.
    row = _given_back(pg_url, w, baseline, BIG, lambda: _run(pg_url, {"size": BIG}, SLOW))
    assert row.status == "success", row


def test_sqlite_gives_back_the_memory_of_a_refused_huge_state(
        tmp_path: Path, start_worker: Any) -> None:
    url = f"sqlite:///{tmp_path}/q.db?max_length=100000000"
    w, baseline = _worker(url, start_worker)
    row = _given_back(url, w, baseline, HUGE, lambda: _run(url, {"size": HUGE}, SLOW))
    _failed_at_once(row, "string or blob too big")


def test_hand_backs_are_bounded(tmp_path: Path, start_worker: Any) -> None:
    """A run handed back to the queue more than TREADLE_RUN_MAX_HANDBACKS times (a store
    failing under it on every worker, drains) fails with the reason instead of circling."""
    url = f"sqlite:///{tmp_path}/q.db"
    with treadle.compile(load_graph(f"{GRAPH}:builder"), store=url, graph_id="bulky") as g:
        row = client.submit(g, {"size": 1}, {"runtime": "distributed"}, {})
        for _ in range(3):  # what three workers draining (or failing) in turn leave behind
            claimed = g.backend.claim_run("w-drain", ["ref:bulky"], False, 5.0)
            assert claimed is not None and claimed.run_id == row.run_id
            assert g.backend.release_run(claimed.run_id, claimed.epoch)
    start_worker(url, REF, args=[*FAST, "--max-handbacks", "2"])
    with treadle.compile(load_graph(f"{GRAPH}:builder"), store=url, graph_id="bulky") as g:
        done = client.wait(g.backend, row.run_id, 60)
    assert done.status == "error" and done.epoch == 4
    assert "handed back to the queue 3 times" in (done.error or "")
    assert "TREADLE_RUN_MAX_HANDBACKS=2" in (done.error or "")
