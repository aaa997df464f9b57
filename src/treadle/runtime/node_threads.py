"""The thread pool of sync node bodies, and the bodies it had to abandon.

A Python thread cannot be interrupted: when a run is cancelled or times out while a sync
node body blocks (``time.sleep(3600)``, a hung socket), the run ends at once and frees its
slot, but the body keeps its thread until it returns. Such a thread is *abandoned*: it is
counted (process-wide, :func:`abandoned_threads`, the ``treadle_abandoned_threads`` gauge),
and its pool grows by one so live runs still get threads. A worker that holds
``TREADLE_MAX_ABANDONED_THREADS`` of them recycles itself (see treadle.cluster.worker).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from treadle import metrics

__all__ = ["NodeThreads", "abandoned_threads"]

log = logging.getLogger("treadle.runtime")

_lock = threading.Lock()
_abandoned = 0


def abandoned_threads() -> int:
    """Node bodies of this process still running after their run gave up on them."""
    return _abandoned


class NodeThreads(ThreadPoolExecutor):
    """A thread pool that grows by one for each body it abandons, until that body ends."""

    def abandon(self, fut: Future[Any], node: str | None) -> None:
        """The caller stopped waiting for ``fut`` (its run was cancelled or timed out).
        A body still queued is dropped; one already running is counted as abandoned."""
        if fut.cancel() or fut.done():
            return
        global _abandoned
        with _lock:
            _abandoned += 1
            count = _abandoned
        metrics.ABANDONED_THREADS.inc()
        self._resize(+1)
        log.warning("node %r: its run stopped waiting but the body is still running in its "
                    "thread (cannot be interrupted); %d abandoned thread(s) in this process",
                    node, count)
        fut.add_done_callback(self._released)

    def _released(self, _fut: Future[Any]) -> None:
        global _abandoned
        with _lock:
            _abandoned -= 1
        metrics.ABANDONED_THREADS.dec()
        self._resize(-1)

    def _resize(self, delta: int) -> None:
        # ThreadPoolExecutor starts a thread per submit while below _max_workers; raising
        # it (and starting one now for work already queued) replaces the abandoned thread.
        with self._shutdown_lock:
            self._max_workers += delta
            if delta > 0 and not self._shutdown:
                self._adjust_thread_count()
