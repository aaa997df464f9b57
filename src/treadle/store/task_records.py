"""The run queue's node tasks, stream events, live workers and graphs shipped by value,
written once over the connector (:mod:`treadle.store.connector`).

Every method is one short transaction; the queries are those of the "tasks, workers, events,
shipped graphs" section of ``sql/<dialect>.sql``. Types and rules are in
:mod:`treadle.store.queue`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from treadle.store.connector import Connector, Row, Tx
from treadle.store.encryption import AtRest
from treadle.store.queue import Event, NewTask, TaskRow, WorkerInfo, check, serves

__all__ = ["TaskStore"]

_TASK_FIELDS = len(dataclasses.fields(TaskRow))


def _task(row: Sequence[Any]) -> TaskRow:
    # PostgreSQL statements that notify return extra last columns.
    return TaskRow(*row[:_TASK_FIELDS])


def _worker(row: Sequence[Any]) -> WorkerInfo:
    w = WorkerInfo(*row)
    w.graph_ids = list(json.loads(row[2]))  # JSON text in both dialects
    w.allow_pickled = bool(w.allow_pickled)
    return w


class TaskStore:
    """Node tasks (``pending -> running -> success | error``, keyed by ``task_key``, with
    their own lease and epoch), stream events, workers and shipped graphs, over ``self.db``."""

    db: Connector
    at_rest: AtRest

    def _task(self, row: Sequence[Any]) -> TaskRow:
        task, a = _task(row), self.at_rest
        task.payload = a.open(task.payload, "task", "kwargs")
        task.result = a.open_opt(task.result, "task", "result")
        task.error = a.open_text(task.error, "task", "error")
        return task

    # --- tasks -----------------------------------------------------------------------
    def submit_task(self, task: NewTask) -> TaskRow:
        """Insert ``task`` as pending unless its key exists; return the row as it is.

        An existing ``error`` row is reset to pending (the orchestrator retries it), and a
        ``pending`` row of another run is adopted by ``task.run_id`` (so a run resuming a
        thread whose earlier run ended can get it claimed); rows in any other status are
        returned unchanged (a resumed orchestrator reuses a finished result or waits for a
        running one). Notifies CHANNEL_TASKS when it (re)queued the task."""
        params = {"task_key": task.task_key, "run_id": task.run_id,
                  "thread_id": task.thread_id, "graph_id": task.graph_id, "node": task.node,
                  "payload": self.at_rest.seal(task.payload, "task", "kwargs"), "max_attempts": task.max_attempts}

        def submit(tx: Tx) -> Row | None:
            row = tx.one("task_submit", params)
            return row if row is not None else tx.one("task_get", {"task_key": task.task_key})

        row = self.db.transact(f"submitting task {task.task_key}", submit)
        assert row is not None  # inserted, or there already
        return self._task(row)

    def claim_tasks(
        self, worker: str, graph_ids: Sequence[str], allow_pickled: bool, ttl: float, limit: int,
        lock: int | None = None,
    ) -> list[TaskRow]:
        """Claim up to ``limit`` pending tasks, oldest first (graph filter as for runs).
        Each: running, ``worker``, ``epoch + 1``, ``attempt + 1``, lease now + ttl. Tasks
        whose run is no longer ``running`` are not claimed."""
        if limit <= 0:
            return []
        rows = self.db.write("claiming tasks", "task_claim", {
            "worker": worker, "graph_ids": list(graph_ids), "allow_pickled": bool(allow_pickled),
            "ttl": float(ttl), "limit": int(limit), "lock": lock})
        rows.sort(key=lambda r: r[_TASK_FIELDS])  # by seq (SQLite's RETURNING has no order)
        return [self._task(r) for r in rows]

    def finish_task(
        self,
        task_key: str,
        epoch: int,
        status: str,
        *,
        result: bytes | None = None,
        error: str | None = None,
    ) -> bool:
        """Record a task's outcome (``success`` or ``error``) if ``epoch`` is still its
        epoch and it is running. Notifies CHANNEL_TASK_DONE. False when fenced."""
        check("final task status", status)
        return bool(self.db.write(f"finishing task {task_key}", "task_finish", {
            "status": status, "result": self.at_rest.seal_opt(result, "task", "result"),
            "error": self.at_rest.seal_text(error, "task", "error"), "task_key": task_key,
            "epoch": int(epoch)}))

    def get_tasks(self, task_keys: Sequence[str]) -> list[TaskRow]:
        if not task_keys:
            return []
        return [self._task(r) for r in self.db.all("reading tasks", "task_get_many",
                                              {"task_keys": list(task_keys)})]

    def list_tasks(self, run_id: str) -> list[TaskRow]:
        return [self._task(r) for r in self.db.all(f"listing tasks of run {run_id}", "task_list",
                                              {"run_id": run_id})]

    # --- stream events ---------------------------------------------------------------
    def put_events(self, run_id: str, epoch: int, events: Sequence[Event]) -> bool:
        """Append events if the run is ``running`` under ``epoch`` (duplicates of a seq are
        ignored; no events: only the check). Notifies CHANNEL_EVENTS. False when fenced."""

        # Sealed here, in the caller's context (the run's encryption context), not in put.
        rows = [(run_id, int(e.seq), e.kind, self.at_rest.seal(e.data, "run", "event"))
                for e in events]

        def put(tx: Tx) -> bool:
            if tx.one("event_fence", {"run_id": run_id, "epoch": int(epoch)}) is None:
                return False
            if rows:
                tx.many("event_insert", rows)
            return True

        return self.db.transact(f"recording events of run {run_id}", put)

    def read_events(self, run_id: str, after_seq: int, limit: int = 1000) -> list[Event]:
        """Events with ``seq > after_seq``, in order (a negative ``limit`` counts as 0)."""
        rows = self.db.all(f"reading events of run {run_id}", "event_read", {
            "run_id": run_id, "after_seq": int(after_seq), "limit": max(int(limit), 0)})
        return [Event(seq=r[0], kind=r[1], data=self.at_rest.open(r[2], "run", "event"))
                for r in rows]

    def purge_events(self, older_than: float) -> int:
        """Delete the stream events of runs that ended more than ``older_than`` seconds
        ago; returns how many events went."""
        return self.db.execute("purging old stream events", "event_purge",
                               {"older_than": float(older_than)})

    # --- graphs shipped by value -----------------------------------------------------
    def put_graph(self, graph_id: str, blob: bytes) -> None:
        """Store a pickled graph under its content hash (idempotent)."""
        self.db.execute(f"storing graph {graph_id}", "graph_put",
                        {"graph_id": graph_id, "blob": blob})

    def get_graph(self, graph_id: str) -> bytes | None:
        row = self.db.one(f"reading graph {graph_id}", "graph_get", {"graph_id": graph_id})
        return bytes(row[0]) if row else None

    # --- workers ---------------------------------------------------------------------
    def register_worker(self, worker: WorkerInfo, ttl: float) -> None:
        """Insert or refresh ``worker``'s advertisement: ``heartbeat_at = now``,
        ``expires_at = now + ttl`` (``started_at`` is kept from the first call; the given
        timestamps are ignored). Also forgets workers that expired."""
        params = {"worker_id": worker.worker_id, "name": worker.name,
                  "graph_ids": list(worker.graph_ids), "allow_pickled": bool(worker.allow_pickled),
                  "slots": worker.slots, "running": worker.running, "ttl": float(ttl)}

        def register(tx: Tx) -> None:
            tx.execute("worker_forget_dead", params)
            tx.execute("worker_register", params)

        self.db.transact(f"registering worker {worker.name}", register)

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker at once (its clean stop)."""
        self.db.execute(f"removing worker {worker_id}", "worker_remove", {"worker_id": worker_id})

    def list_workers(self, graph_id: str | None = None) -> list[WorkerInfo]:
        """Live workers (``expires_at`` in the future), oldest first; with ``graph_id`` only
        those that serve it (see :func:`~treadle.store.queue.serves`)."""
        live = [_worker(r) for r in self.db.all("listing workers", "worker_list")]
        return live if graph_id is None else [w for w in live if serves(w, graph_id)]
