"""Waiting for a run: its recorded events as they are written, then its final row.

:func:`watch` is the one loop every reader of a run uses: the HTTP API (``/wait``,
``/join``, SSE streams, the thread stream), a distributed run's caller (``invoke``,
``stream``, their async twins) and webhooks. It reads the store, so it works from any
process, but only when woken (:mod:`treadle.cluster.waiters`): by a notification (pushed
by PostgreSQL, or emitted by this process's worker), or by the probe the process's waiters
share (one read for all, on SQLite's change detection and every second as a safety net).
Sync callers use :func:`iterate` (a private event loop, stepped from their thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

from treadle.cluster.events import END
from treadle.cluster.pending import PendingWatch
from treadle.cluster.waiters import waiters_for
from treadle.store import Store
from treadle.store.queue import TERMINAL, Event, RunRow

__all__ = ["POLL", "POLL_CALLER", "POLL_PUSHED", "POLL_SERVER", "iterate", "run_sync", "wait",
           "watch"]

T = TypeVar("T")

#: Seconds a waiter sleeps at most before reading its run again without being woken: a
#: last resort only (notifications and the shared probes of treadle.cluster.waiters wake it).
POLL = 5.0
# Former names of the same bound (every reader is event-woken now).
POLL_PUSHED = POLL_SERVER = POLL_CALLER = POLL


async def watch(store: Store, run_id: str, after: int = 0, *, events: bool = True,
                poll: float = POLL, timeout: float | None = None,
                pending: PendingWatch | None = None) -> AsyncIterator[Event | RunRow]:
    """The run's recorded events after seq ``after`` (END markers left out) as they are
    written, then the run's row once it has ended; nothing more if it was deleted.

    ``events=False``: only the final row. ``timeout`` (seconds): the row as it is then,
    ended or not. ``pending``: checked while the run waits in the queue (it warns when no
    worker serves it, and raises QueueTimeoutError past its queue_timeout). The store is
    read when a notification or a shared probe says the run moved on
    (:mod:`treadle.cluster.waiters`), and at the latest every ``poll`` seconds."""
    hub = waiters_for(store)
    waiter = hub.add(run_id, events=events, after=after)
    wake = waiter.wake
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    try:
        while True:
            wake.clear()
            if events:
                batch = await asyncio.to_thread(store.read_events, run_id, after)
                for event in batch:
                    after = waiter.after = event.seq
                    if event.kind != END:
                        yield event
                if batch:
                    continue
            row = await asyncio.to_thread(store.get_run, run_id)
            if row is None:
                return
            if row.status in TERMINAL:
                late = events and bool(await asyncio.to_thread(store.read_events, run_id, after, 1))
                if late:
                    continue  # written just before the status: read them first
                yield row
                return
            if pending is not None:
                await asyncio.to_thread(pending.check, row)
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                yield row
                return
            sleep = poll if pending is None else pending.next_wake(poll)
            await _woken(loop, wake, sleep if left is None else min(sleep, left))
    finally:
        hub.remove(waiter)


async def _woken(loop: asyncio.AbstractEventLoop, wake: asyncio.Event, seconds: float) -> None:
    """Until ``wake`` is set or ``seconds`` passed (a timer, not a task per wait)."""
    if wake.is_set():
        return
    timer = loop.call_later(max(seconds, 0.0), wake.set)
    try:
        await wake.wait()
    finally:
        timer.cancel()


async def wait(store: Store, run_id: str, timeout: float | None = None, *,
               poll: float = POLL, pending: PendingWatch | None = None) -> RunRow | None:
    """The run once it has ended (None: it was deleted); ``timeout``: as it is then."""
    last: RunRow | None = None
    async for item in watch(store, run_id, events=False, poll=poll, timeout=timeout,
                            pending=pending):
        assert isinstance(item, RunRow)
        last = item
    return last


def _step(loop: asyncio.AbstractEventLoop, coro: Awaitable[T]) -> T:
    if asyncio._get_running_loop() is None:
        return loop.run_until_complete(coro)
    # Called from a coroutine (a sync API used inside an event loop): that loop is blocked
    # meanwhile, as a sync call blocks it; the private loop runs on a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(loop.run_until_complete, coro).result()


def iterate(agen: AsyncIterator[T]) -> Iterator[T]:
    """The items of ``agen``, for a sync caller: stepped on a private event loop."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                item: T = _step(loop, agen.__anext__())
            except StopAsyncIteration:
                return
            yield item
    finally:
        close = getattr(agen, "aclose", None)
        if close is not None:
            _step(loop, close())
        _step(loop, loop.shutdown_default_executor())
        loop.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """The result of ``coro``, for a sync caller (on a private event loop)."""
    loop = asyncio.new_event_loop()
    try:
        return _step(loop, coro)
    finally:
        _step(loop, loop.shutdown_default_executor())
        loop.close()
