"""The runs this process waits on: woken by notifications, re-read in one query for all.

Every reader of a run (``/wait``, ``/join``, SSE streams, a distributed run's caller:
:func:`treadle.cluster.watch.watch`) registers a :class:`Waiter` with its event loop's
:class:`RunWaiters` and sleeps until its wake-up is set. What sets it:

* a notification naming the run (CHANNEL_EVENTS, CHANNEL_RUN_DONE): emitted by this
  process's worker as it commits, or pushed by PostgreSQL (LISTEN/NOTIFY) for the writes of
  other processes. Delivery looks the run up in a dict: one emit costs the same with one
  waiter or thousands;
* a *probe*: one read of every waited run's status and last event
  (:meth:`~treadle.store.run_records.RunStore.run_progress`), which wakes the waiters whose
  run moved on. It runs when SQLite's change detector reports a commit by another
  connection (CHANGED; SQLite has no push) and, as the safety net for lost notifications,
  every :data:`SAFETY` seconds while anyone waits. One probe serves every waiter of the
  loop, so a thousand waiters cost one query per round, not a thousand polls.

Waiters themselves read the store only when woken (see :mod:`treadle.cluster.watch`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref

from treadle import metrics
from treadle.cluster.notify import Notifier, Subscription, loop_callback, notifier_for
from treadle.errors import StoreError
from treadle.store import Store
from treadle.store.queue import CHANNEL_CHANGED, CHANNEL_EVENTS, CHANNEL_RUN_DONE, TERMINAL

__all__ = ["SAFETY", "SPACING", "RunWaiters", "Waiter", "waiters_for"]

log = logging.getLogger("treadle.cluster")

#: Seconds between two probes of every waited run when nothing was notified: the safety
#: net for a notification lost (a dropped LISTEN connection, a write that emits nothing).
SAFETY = 1.0
#: Shortest seconds between two probes (change detection on a busy SQLite file reports a
#: change at every look; probing at most this often bounds what waiting costs).
SPACING = 0.05


class Waiter:
    """One reader of run ``run_id``: ``wake`` is set when the run may have moved on.

    ``events``: it follows the run's events (else only its end); ``after``: the seq of the
    last event it has read (the reader keeps it current)."""

    __slots__ = ("after", "events", "run_id", "wake")

    def __init__(self, run_id: str, events: bool, after: int) -> None:
        self.run_id = run_id
        self.events = events
        self.after = after
        self.wake = asyncio.Event()


class RunWaiters:
    """The waiters of one store on one event loop (see the module). Exists while anyone
    waits: made by the first :meth:`add`, dropped after the last :meth:`remove`."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.notifier: Notifier = notifier_for(store)
        self._runs: dict[str, list[Waiter]] = {}
        self._changed = asyncio.Event()
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self.probes = 0  # probes read so far (tests count them)
        self.notified = 0  # waiters woken by a notification naming their run

    def __len__(self) -> int:
        return sum(len(ws) for ws in self._runs.values())

    def add(self, run_id: str, *, events: bool, after: int = 0) -> Waiter:
        waiter = Waiter(run_id, events, after)
        self._runs.setdefault(run_id, []).append(waiter)
        metrics.RUN_WAITERS.inc()
        if self._sub is None:
            channels: tuple[str, ...] = (CHANNEL_EVENTS, CHANNEL_RUN_DONE)
            if self.notifier.detects_changes:
                channels += (CHANNEL_CHANGED,)
            self._sub = self.notifier.subscribe(channels, loop_callback(self.loop, self._notify))
        if self._task is None:
            self._task = self.loop.create_task(self._probes(), name="treadle-waiters")
        return waiter

    def remove(self, waiter: Waiter) -> None:
        waiters = self._runs.get(waiter.run_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            metrics.RUN_WAITERS.dec()
            if not waiters:
                del self._runs[waiter.run_id]
        if self._runs:
            return
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        _forget(self)

    def _notify(self, channel: str, run_id: str) -> None:
        if channel == CHANNEL_CHANGED:
            self._changed.set()
            return
        for waiter in self._runs.get(run_id, ()):
            if channel == CHANNEL_RUN_DONE or waiter.events:
                self.notified += 1
                metrics.RUN_WAITER_WAKES.labels("notification").inc()
                waiter.wake.set()

    async def _probes(self) -> None:
        while self._runs:
            try:
                await asyncio.wait_for(self._changed.wait(), SAFETY)
            except TimeoutError:
                pass
            self._changed.clear()
            if not self._runs:
                return
            await self.probe()
            await asyncio.sleep(SPACING)

    async def probe(self) -> None:
        """Read where every waited run stands; wake the waiters whose run moved on."""
        ids = list(self._runs)
        try:
            progress = await asyncio.to_thread(self.store.run_progress, ids)
        except StoreError as exc:  # the next round tries again; waiters' own timeouts too
            log.debug("probing waited runs failed (%s)", exc)
            return
        self.probes += 1
        metrics.RUN_WAITER_PROBES.inc()
        for run_id in ids:
            found = progress.get(run_id)
            for waiter in self._runs.get(run_id, ()):
                if (found is None or found[0] in TERMINAL
                        or (waiter.events and found[1] > waiter.after)) \
                        and not waiter.wake.is_set():
                    metrics.RUN_WAITER_WAKES.labels("probe").inc()
                    waiter.wake.set()


# store -> loop -> its waiters (kept only while someone waits). Loops of several threads
# (sync callers step private loops) share it: under _lock.
_hubs: weakref.WeakKeyDictionary[Store, dict[asyncio.AbstractEventLoop, RunWaiters]] = (
    weakref.WeakKeyDictionary())
_lock = threading.Lock()


def waiters_for(store: Store) -> RunWaiters:
    """The running loop's waiters on ``store`` (made on first use)."""
    loop = asyncio.get_running_loop()
    with _lock:
        by_loop = _hubs.setdefault(store, {})
        hub = by_loop.get(loop)
        if hub is None:
            hub = by_loop[loop] = RunWaiters(store, loop)
        return hub


def _forget(hub: RunWaiters) -> None:
    with _lock:
        by_loop = _hubs.get(hub.store)
        if by_loop is not None and by_loop.get(hub.loop) is hub:
            del by_loop[hub.loop]
