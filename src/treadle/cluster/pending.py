"""Why a queued run is still pending, said out loud.

A run waits for a worker that serves its graph. When no live worker does (a typo in a
graph name, a worker never started, workers scaled to zero), the caller waiting on it is
told within ``TREADLE_UNSERVED_WARNING`` seconds, once, with the command that starts such a
worker, and keeps waiting (a worker may be on its way) unless the run has a
``queue_timeout``: then a run still unclaimed when it passes is cancelled for good and the
caller gets :class:`~treadle.errors.QueueTimeoutError`.

Liveness comes from ``treadle_workers`` (each worker's row, refreshed by its heartbeat);
see :meth:`treadle.store.task_records.TaskStore.list_workers`.
"""

from __future__ import annotations

import logging
import shlex
import time

from treadle.errors import QueueTimeoutError
from treadle.graphs import by_value
from treadle.graphs.registry import REF_PREFIX
from treadle.store import Store
from treadle.store.queue import RunRow, WorkerInfo
from treadle.store.urls import redact

__all__ = ["PendingWatch", "graph_label", "pending_reason", "worker_command"]

log = logging.getLogger("treadle.client")

# Seconds between two looks at the workers table while a run waits.
_RECHECK = 1.0


def graph_label(graph_id: str) -> str:
    """``'pipeline'`` for ``ref:pipeline``; a short form of a graph shipped by value."""
    if graph_id.startswith(REF_PREFIX):
        return repr(graph_id[len(REF_PREFIX):])
    if graph_id.startswith(by_value.PICKLE_PREFIX):
        return f"{graph_id[:len(by_value.PICKLE_PREFIX) + 12]}… (shipped by value)"
    return repr(graph_id)


def worker_command(store_url: str, graph_id: str, graph_args: str | None = None) -> str:
    """The ``treadle worker`` command line that serves ``graph_id`` (no password in it).

    ``graph_args``: its graph arguments when the caller knows them (``name=REF``,
    ``--graphs langgraph.json``); otherwise a placeholder REF."""
    if graph_id.startswith(by_value.PICKLE_PREFIX):
        graph_args = "--allow-pickled-graphs"
    elif graph_args is None:
        name = graph_id[len(REF_PREFIX):] if graph_id.startswith(REF_PREFIX) else graph_id
        graph_args = shlex.quote(f"{name}=path/to/module.py:graph")
    return f"treadle worker --store {shlex.quote(redact(store_url))} {graph_args}"


def pending_reason(store: Store, row: RunRow) -> str:
    """Why the pending run ``row`` has not started, in one line (``treadle runs``)."""
    serving = store.list_workers(row.graph_id)
    if not serving:
        return f"waiting for a worker serving {graph_label(row.graph_id)} (none live)"
    ahead = [r for r in store.list_runs(thread_id=row.thread_id, limit=1000)
             if r.status == "running" or (r.status == "pending" and r.created_at < row.created_at
                                          and r.run_id != row.run_id)]
    if ahead:
        return f"waiting for run {ahead[-1].run_id} of its thread to end"
    if all(w.running >= w.slots for w in serving):
        return f"waiting for a free slot on workers {_names(serving)}"
    older = [r for r in store.list_runs(status="pending", limit=1000)
             if r.created_at < row.created_at]
    if older:
        return f"queued behind {len(older)} run{'s' if len(older) != 1 else ''}"
    return f"about to be claimed (served by {_names(serving)})"


def _names(workers: list[WorkerInfo]) -> str:
    shown = ", ".join(w.name for w in workers[:3])
    return shown + (f" and {len(workers) - 3} more" if len(workers) > 3 else "")


class PendingWatch:
    """Watches one run while its caller waits: warns once when no live worker serves its
    graph, and enforces its ``queue_timeout``. Call :meth:`check` with each fresh row."""

    def __init__(self, store: Store, store_url: str, run_id: str, graph_id: str, *,
                 warn_after: float, queue_timeout: float | None = None,
                 graph_args: str | None = None) -> None:
        self.store = store
        self.store_url = store_url
        self.run_id = run_id
        self.graph_id = graph_id
        self.warn_after = warn_after
        self.queue_timeout = queue_timeout
        self.graph_args = graph_args
        self.started = time.monotonic()
        self.warned = False
        self._next_look = self.started + warn_after

    def next_wake(self, poll: float) -> float:
        """How long the caller may sleep before the next check is due."""
        due = [self._next_look]
        if self.queue_timeout is not None:
            due.append(self.started + self.queue_timeout)
        return max(0.0, min(poll, min(due) - time.monotonic()))

    def check(self, row: RunRow) -> None:
        """Raise QueueTimeoutError when the run's queue_timeout passed unclaimed."""
        if row.status != "pending":
            return
        now = time.monotonic()
        if self.queue_timeout is not None and now - self.started >= self.queue_timeout:
            self._expire()
        if self.warned or now < self._next_look:
            return
        self._next_look = now + _RECHECK
        if not self.store.list_workers(self.graph_id):
            self.warned = True
            log.warning("%s", self.message())

    def message(self) -> str:
        what = (f"no live worker serves graph {graph_label(self.graph_id)}"
                if not self.graph_id.startswith(by_value.PICKLE_PREFIX)
                else f"no live worker accepts graphs shipped by value "
                     f"({graph_label(self.graph_id)})")
        waiting = ("still waiting" if self.queue_timeout is None
                   else f"waiting up to {self.queue_timeout:g}s (queue_timeout)")
        return (f"{what} (run {self.run_id} is pending; {waiting}); start one with: "
                f"{worker_command(self.store_url, self.graph_id, self.graph_args)}")

    def _expire(self) -> None:
        served = bool(self.store.list_workers(self.graph_id))
        reason = "" if served else (
            f"; no live worker serves it (start one with: "
            f"{worker_command(self.store_url, self.graph_id, self.graph_args)})")
        error = (f"no worker claimed it within its queue_timeout of {self.queue_timeout:g}s "
                 f"(graph {graph_label(self.graph_id)}){reason}")
        row = self.store.expire_pending_run(self.run_id, error)
        if row is not None and row.status == "cancelled" and row.error == error:
            raise QueueTimeoutError(self.run_id, self.graph_id, error)
