"""The run queue's runs, written once over the connector (:mod:`treadle.store.connector`).

Every method is one short transaction. The queries are the ``run_*`` ones of the "runs"
section of ``sql/<dialect>.sql``. Two things differ by database and are the connector's
(its "run queue's hot paths", in ``drivers/sqlite_queue.py`` / ``drivers/postgres_queue.py``):
queueing a run (:meth:`Connector.enqueue_run`: SQLite decides idempotency and the multitask
strategy in Python under its write lock, PostgreSQL in one PL/pgSQL call) and finding the
worker sessions that ended (:meth:`Connector.ended_sessions`: SQLite's are lock files
beside the database, PostgreSQL's sweep finds them in ``pg_locks`` itself). Claims, finishes
and sweeps record the thread's state with the named query ``thread_state`` in the same
transaction. Types and rules (statuses, channels, ``check``) are in :mod:`treadle.store.queue`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from treadle.errors import EncryptionError
from treadle.store.connector import Connector, Row, Sql, Tx
from treadle.store.encryption import AtRest
from treadle.store.queue import (
    CANCEL_STATUS,
    DEFAULT_MAX_WORKER_LOSSES,
    RUN_STATUSES,
    SESSION_GRACE,
    TERMINAL,
    Failover,
    Heartbeat,
    Listener,
    NewRun,
    QueueStats,
    RunRow,
    ThreadPriority,
    WorkerSession,
    check,
    same_request,
)
from treadle.store.thread_records import ThreadUpdate, thread_state_params

__all__ = ["RunStore", "run_row"]

_RUN_FIELDS = len(dataclasses.fields(RunRow))


def run_row(row: Sequence[Any]) -> RunRow:
    """A run read back (PostgreSQL statements that notify return extra last columns)."""
    run = RunRow(*row[:_RUN_FIELDS])
    run.stream = bool(run.stream)
    return run


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _record_thread(at_rest: AtRest, tx: Tx, update: ThreadUpdate) -> None:
    tx.execute("thread_state", thread_state_params(update, at_rest))


class RunStore:
    """Durable runs: ``pending -> running -> success | error | interrupted | cancelled |
    timeout`` (see :mod:`treadle.store.queue`), over ``self.db``."""

    db: Connector
    at_rest: AtRest

    def _run(self, row: Sequence[Any]) -> RunRow:
        """A run read back, its payload, result, error and metadata opened."""
        run, a = run_row(row), self.at_rest
        run.payload = a.open(run.payload, "run", "kwargs")
        run.result = a.open_opt(run.result, "run", "result")
        run.error = a.open_text(run.error, "run", "error")
        run.metadata = a.open_metadata_text(run.metadata, "run")
        return run

    def now(self) -> float:
        """The database clock, Unix seconds."""
        return self.db.now()

    def listener(self, channels: Sequence[str]) -> Listener | None:
        """A :class:`Listener` for ``channels`` (PostgreSQL: LISTEN; SQLite: a detector
        of commits by other connections, :data:`~treadle.store.queue.CHANNEL_CHANGED`), or
        None when there is none (callers poll)."""
        listener: Listener | None = self.db.listener(channels)
        return listener

    def worker_session(self, key: int) -> WorkerSession:
        """A :class:`WorkerSession` under ``key`` (not taken yet: call ``held``)."""
        return self.db.worker_session(key)

    # --- queueing and claiming -------------------------------------------------------
    def enqueue_run(self, run: NewRun, *, multitask: str = "enqueue") -> RunRow:
        """Queue ``run`` as ``pending``; return it. Notifies CHANNEL_RUNS.

        When the thread has active runs (pending or running), ``multitask`` decides,
        atomically with the insert: ``reject`` raises ThreadBusyError and writes nothing;
        ``enqueue`` queues behind them; ``interrupt`` / ``rollback`` cancel pending ones at
        once (status ``interrupted`` / ``cancelled``) and set ``cancel`` on the running one,
        whose worker stops it; the new run starts when the thread is free.

        With ``run.idempotency_key``, the key's run is looked up first, in the same
        transaction (concurrent enqueues with one key are serialised): if there is one, it
        is returned as it is now and nothing else happens (no multitask decision);
        IdempotencyKeyError if its request_hash differs from ``run.request_hash``.
        """
        check("multitask strategy", multitask)
        row = self.db.enqueue_run(f"queueing run {run.run_id}", {
            "run_id": run.run_id, "thread_id": run.thread_id, "graph_id": run.graph_id,
            "payload": self.at_rest.seal(run.payload, "run", "kwargs"),
            "max_attempts": run.max_attempts, "timeout_s": run.timeout_s,
            "stream": bool(run.stream),
            "metadata": self.at_rest.seal_metadata_text(run.metadata, "run"),
            "multitask": multitask, "idempotency_key": run.idempotency_key,
            "request_hash": run.request_hash})
        if run.idempotency_key is not None:  # the key's run, maybe an earlier one
            same_request(run.idempotency_key, row[1], row[0], run.request_hash)
        return self._run(row[1:])

    def get_run_by_key(self, idempotency_key: str, request_hash: str | None) -> RunRow | None:
        """The run created under ``idempotency_key`` (None: none, or it was deleted);
        IdempotencyKeyError if it was created with a different ``request_hash``."""
        row = self.db.one("reading a run by its idempotency key", "run_by_key",
                          {"idempotency_key": idempotency_key})
        if row is None:
            return None
        same_request(idempotency_key, row[1], row[0], request_hash)
        return self._run(row[1:])

    def thread_priority(self, thread_id: str) -> ThreadPriority | None:
        """The thread's stored priority settings; None: none stored yet."""
        row = self.db.one("reading a thread's priority", "thread_priority",
                          {"thread_id": thread_id})
        return None if row is None else ThreadPriority(int(row[0]), str(row[1]))

    def set_thread_priority(self, thread_id: str, settings: ThreadPriority) -> ThreadPriority:
        """Store the thread's priority settings unless it has some (the first stored wins:
        concurrent first runs agree); return those stored. The thread's runs queued from
        then on carry them; runs already queued keep theirs."""

        def store(tx: Tx) -> Row | None:
            row = tx.one("thread_priority_set", {
                "thread_id": thread_id, "priority": settings.priority,
                "fair_group": settings.fair_group})
            if row is not None:
                tx.execute("fair_group_add", {"fair_group": row[1]})
            return row

        row = self.db.transact(f"storing thread {thread_id}'s priority", store)
        assert row is not None  # INSERT ... RETURNING
        return ThreadPriority(int(row[0]), str(row[1]))

    def claim_run(
        self, worker: str, graph_ids: Sequence[str], allow_pickled: bool, ttl: float,
        lock: int | None = None,
    ) -> RunRow | None:
        """Claim the claimable run that comes first, or None.

        ``lock``: the key of the claimer's :class:`WorkerSession` (the run is recovered as
        soon as that session ends); None: the lease alone decides.

        Claimable: ``pending``; ``graph_id`` in ``graph_ids`` (or a ``pickle:`` id when
        ``allow_pickled``); no run of its thread is ``running``; no older pending run on its
        thread. First: the lowest priority (its thread's :class:`ThreadPriority`), then the
        fairness group claimed from least recently (never: first), then the oldest; with no
        priority set anywhere, simply the oldest. The claim sets running, ``worker``, ``epoch + 1``, ``attempt + 1``,
        ``lease_expires_at = now + ttl``, ``started_at`` if unset; the thread's record
        (threads made through the HTTP API) becomes ``busy`` in the same transaction.
        Concurrent claimers never get the same run.
        """
        params = {"worker": worker, "graph_ids": list(graph_ids),
                  "allow_pickled": bool(allow_pickled), "ttl": float(ttl), "lock": lock}

        def claim(tx: Tx) -> Row | None:
            row = tx.one("run_claim", params)
            if row is not None:
                _record_thread(self.at_rest, tx, ThreadUpdate(row[1], "busy"))
                tx.execute("run_served", {"run_id": row[0]})
            return row

        row = self.db.transact("claiming a run", claim)
        if row is None:
            return None
        try:
            return self._run(row)
        except EncryptionError as exc:
            # A payload this store cannot open (plaintext while encryption is on, a key
            # missing here): end the run with the reason rather than let it bounce between
            # workers until its leases run out.
            raw = run_row(row)
            self.finish_run(raw.run_id, raw.epoch, "error", error=str(exc),
                            thread=ThreadUpdate(raw.thread_id, "error", error=str(exc)))
            raise

    def heartbeat(
        self,
        worker: str,
        runs: Sequence[tuple[str, int]],
        tasks: Sequence[tuple[str, int]],
        ttl: float,
    ) -> Heartbeat:
        """Extend the leases of ``(run_id, epoch)`` runs and ``(task_key, epoch)`` tasks
        that are still ``running`` under that epoch and worker; report which are."""
        found = Heartbeat()
        doing = f"heartbeat of worker {worker}"
        if runs:  # each statement its own transaction: the leases are independent
            for run_id, cancel in self.db.write(doing, "run_heartbeat", {
                    "worker": worker, "ttl": float(ttl), "run_ids": [r for r, _ in runs],
                    "run_epochs": [int(e) for _, e in runs]}):
                found.runs[run_id] = cancel
        if tasks:
            found.tasks.update(r[0] for r in self.db.write(doing, "task_heartbeat", {
                "worker": worker, "ttl": float(ttl), "task_keys": [t for t, _ in tasks],
                "task_epochs": [int(e) for _, e in tasks]}))
        return found

    # --- ending runs -----------------------------------------------------------------
    def finish_run(
        self,
        run_id: str,
        epoch: int,
        status: str,
        *,
        result: bytes | None = None,
        error: str | None = None,
        thread: ThreadUpdate | None = None,
    ) -> bool:
        """Move a running run to terminal ``status`` if ``epoch`` is still its epoch.

        ``thread``: also record the thread's new state (its record, if it has one) in the
        same transaction, and only if the run's status was recorded.

        Clears worker and lease, sets ``ended_at``. Notifies CHANNEL_RUN_DONE and, since
        its thread may now be free, CHANNEL_RUNS. False when fenced."""
        check("final run status", status)
        params = {"status": status, "result": self.at_rest.seal_opt(result, "run", "result"),
                  "error": self.at_rest.seal_text(error, "run", "error"), "run_id": run_id,
                  "epoch": int(epoch)}
        doing = f"finishing run {run_id}"
        if thread is None:
            return bool(self.db.write(doing, "run_finish", params))

        def finish(tx: Tx) -> bool:
            if tx.one("run_finish", params) is None:
                return False
            _record_thread(self.at_rest, tx, thread)
            return True

        return self.db.transact(doing, finish)

    def release_run(self, run_id: str, epoch: int) -> bool:
        """Hand a running run back (graceful shutdown): ``pending``, no worker, no lease,
        ``attempt - 1``. Notifies CHANNEL_RUNS. False when fenced."""
        return bool(self.db.write(f"releasing run {run_id}", "run_release",
                                  {"run_id": run_id, "epoch": int(epoch)}))

    def _change_then_read(self, doing: str, query: str, params: dict[str, Any]) -> RunRow | None:
        """``query`` (returning the changed run); when it changed nothing, the run as it is,
        read in the same transaction."""

        def run(tx: Tx) -> Row | None:
            row = tx.one(query, params)
            return row if row is not None else tx.one("run_get", {"run_id": params["run_id"]})

        row = self.db.transact(doing, run)
        return self._run(row) if row else None

    def cancel_run(self, run_id: str, action: str = "cancel") -> RunRow | None:
        """Ask a run to stop. Pending: terminal at once (CANCEL_STATUS[action]). Running:
        sets ``cancel`` and notifies CHANNEL_CANCEL; its worker stops it. Terminal:
        unchanged. Returns the row after the change (None: unknown id)."""
        check("cancel action", action)
        return self._change_then_read(
            f"cancelling run {run_id}", "run_cancel",
            {"final": CANCEL_STATUS[action], "action": action, "run_id": run_id})

    def expire_pending_run(self, run_id: str, error: str) -> RunRow | None:
        """End a run that is still ``pending`` as ``cancelled`` with ``error`` (its
        ``queue_timeout`` passed before any worker claimed it). A run claimed meanwhile is
        left alone. Notifies CHANNEL_RUN_DONE when it ended it. Returns the row after the
        change (None: unknown id)."""
        return self._change_then_read(f"expiring run {run_id}", "run_expire_pending",
                                      {"error": error, "run_id": run_id})

    def sweep(self, max_losses: int = DEFAULT_MAX_WORKER_LOSSES, *,
              check_sessions: bool = False) -> list[tuple[str, str]]:
        """Recover from dead workers; return ``(run_id or task_key, new status)``.

        A running run or task is lost when its lease expired or, with ``check_sessions``,
        when it was claimed with a :class:`WorkerSession` key whose session has ended (its
        worker died; on PostgreSQL not within SESSION_GRACE of the server's start, when
        workers are taking their locks again). A lost run: with a ``cancel`` request,
        terminal (CANCEL_STATUS); when this is its ``max_losses``-th loss, ``error`` (error
        names the losses and keeps the previous error); otherwise back to ``pending``
        (error notes the loss; epoch unchanged: the next claim raises it). Either way
        ``lost`` rises by one; ``max_attempts`` is not consulted. A lost task: back to
        ``pending`` or, at its ``max_attempts``, ``error``. Notifies CHANNEL_RUNS /
        CHANNEL_TASKS / CHANNEL_RUN_DONE as fits."""
        params = {"max_losses": int(max_losses), "check_sessions": bool(check_sessions),
                  "grace": SESSION_GRACE,
                  "dead": self.db.ended_sessions() if check_sessions else []}

        def sweep(tx: Tx) -> list[tuple[str, str]]:
            swept = tx.all("run_sweep", params)
            for _, status, thread_id, *_ in swept:
                if status in TERMINAL:  # given up or cancelled: its thread is no longer busy
                    _record_thread(self.at_rest, tx, ThreadUpdate(thread_id, "error" if status == "error"
                                                    else "idle"))
            changed = [(r[0], r[1]) for r in swept]
            return changed + [(r[0], r[1]) for r in tx.all("task_sweep", params)]

        return self.db.transact("sweeping lost leases", sweep)

    # --- reading and deleting --------------------------------------------------------
    def get_run(self, run_id: str) -> RunRow | None:
        row = self.db.one(f"reading run {run_id}", "run_get", {"run_id": run_id})
        return self._run(row) if row else None

    def run_progress(self, run_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """``{run_id: (status, last event seq or 0)}`` of the runs that exist among
        ``run_ids``, in one read (the process's waiters, :mod:`treadle.cluster.waiters`)."""
        if not run_ids:
            return {}
        rows = self.db.all("reading the progress of waited runs", "run_progress",
                           {"run_ids": list(run_ids)})
        return {str(r[0]): (str(r[1]), int(r[2])) for r in rows}

    def list_runs(
        self, *, thread_id: str | None = None, status: str | None = None, limit: int = 100,
        offset: int = 0,
    ) -> list[RunRow]:
        """Newest first. A negative ``limit`` or ``offset`` counts as 0 (a negative limit
        lists nothing)."""
        where: list[str] = []
        params: dict[str, Any] = {"limit": max(int(limit), 0), "offset": max(int(offset), 0)}
        if thread_id is not None:
            where.append(self.db.sql("run_where_thread"))
            params["thread_id"] = thread_id
        if status is not None:
            where.append(self.db.sql("run_where_status"))
            params["status"] = status
        sql = self.db.sql("run_list")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " " + self.db.sql("run_list_page")
        return [self._run(r) for r in self.db.all("listing runs", Sql(sql), params)]

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete finished runs (with their tasks and events); active ones are kept.
        Returns how many were deleted."""

        def delete(tx: Tx) -> int:
            deleted = 0
            for run_id in run_ids:
                key = {"run_id": run_id}
                if tx.execute("run_delete", key):
                    deleted += 1
                    tx.execute("run_delete_tasks", key)
                    tx.execute("run_delete_events", key)
            return deleted

        return self.db.transact("deleting runs", delete)

    def queue_stats(self) -> QueueStats:
        """Pending and running runs, and the age of the oldest pending one (one read).

        ``pending`` counts every run with status ``pending`` — also those waiting behind a
        running run of their thread — exactly what an autoscaler counting
        ``SELECT count(*) FROM treadle_runs WHERE status = 'pending'`` sees."""
        row = self.db.one("reading the queue's size", "run_queue_stats")
        assert row is not None  # an aggregate: always one row
        pending, running, age = row
        return QueueStats(int(pending), int(running),
                          max(float(age), 0.0) if age is not None else None)

    def run_status_counts(self) -> dict[str, int]:
        """How many runs each status has (one read): every status of RUN_STATUSES, 0 when
        none, in that order, then any other status found. It counts the whole runs table."""
        rows = self.db.all("counting runs by status", "run_status_counts")
        counts = dict.fromkeys(RUN_STATUSES, 0)
        counts.update((str(status), int(n)) for status, n in rows)
        return counts

    def failovers(self, limit: int = 20) -> tuple[list[Failover], int]:
        """The newest ``limit`` (at least 1) runs the sweeper took back from a lost worker
        (``lost > 0``, see :meth:`sweep`), newest queued first, and how many such runs
        there are in all: one read, of a small partial index."""
        rows = self.db.all("listing runs taken back from lost workers", "run_failovers",
                           {"limit": max(int(limit), 1)})
        opened = self.at_rest.open_text
        runs = [Failover(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), r[5],
                         opened(r[6], "run", "error"), float(r[7]), _opt_float(r[8]),
                         _opt_float(r[9])) for r in rows]
        return runs, int(rows[0][10]) if rows else 0

    def queue_depth(self) -> tuple[int, float | None]:
        """(pending runs, age in seconds of the oldest pending run or None)."""
        stats = self.queue_stats()
        return stats.pending, stats.oldest_pending_age
