"""The run queue (:class:`~treadle.store.queue.RunQueue`) on PostgreSQL.

Every method is one short transaction on a pooled autocommit connection: mostly one
statement (data-modifying CTEs), or a PL/pgSQL function of migration
``0003_run_queue.pre.sql`` where a decision needs several statements atomically
(``treadle_enqueue_run``, ``treadle_claim_run``). Claims lock candidates
``FOR UPDATE SKIP LOCKED``; the partial unique index on running runs keeps one running
run per thread, and ``treadle_claim_run`` turns a lost race for a thread into "look for
another run". Changes are announced with ``pg_notify`` in the statement that makes
them, so a notification goes out exactly when its change commits; :class:`PgListener`
receives them. All SQL is in :mod:`treadle.store.postgres_queries`.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.types.numeric import Int8

from treadle.errors import ThreadBusyError
from treadle.store import postgres_queries as q
from treadle.store.drivers.postgres_buffers import is_big
from treadle.store.drivers.postgres_listen import PgListener
from treadle.store.drivers.postgres_session import PgWorkerSession
from treadle.store.queue import (
    CANCEL_STATUS,
    DEFAULT_MAX_WORKER_LOSSES,
    SESSION_GRACE,
    TERMINAL,
    Event,
    Heartbeat,
    NewRun,
    NewTask,
    QueueStats,
    RunQueue,
    RunRow,
    TaskRow,
    WorkerInfo,
    check,
    same_request,
    serves,
)
from treadle.store.resources import ThreadUpdate

__all__ = ["PostgresQueue"]

T = TypeVar("T")

_RUN_FIELDS = len(dataclasses.fields(RunRow))
_TASK_FIELDS = len(dataclasses.fields(TaskRow))


def _run(row: Sequence[Any]) -> RunRow:
    # Statements that notify return pg_notify's (empty) result in extra last columns.
    return RunRow(*row[:_RUN_FIELDS])


def _task(row: Sequence[Any]) -> TaskRow:
    return TaskRow(*row[:_TASK_FIELDS])


def _worker(row: Sequence[Any]) -> WorkerInfo:
    w = WorkerInfo(*row)
    w.graph_ids = list(w.graph_ids)
    return w


class PostgresQueue(RunQueue):
    """The :class:`RunQueue` half of :class:`~treadle.store.postgres.PostgresStore`."""

    @abc.abstractmethod
    def _with_conn(self, doing: str, fn: Callable[[psycopg.Connection[Any]], T],
                   big: Callable[[T], bool] = lambda result: False) -> T:
        """Run ``fn`` on a pooled autocommit connection; driver errors become StoreError.
        The connection is closed, not kept, after a ``big`` result (postgres_buffers)."""

    # The statement recording a thread's state, from the resources half of the store
    # (an annotation, not an abstract method: the resources mixin comes later in the MRO).
    _thread_state_stmt: Callable[[ThreadUpdate], tuple[str, Any]]

    @abc.abstractmethod
    def _connect(self) -> psycopg.Connection[Any]:
        """A new, unpooled autocommit connection."""

    # --- helpers ---------------------------------------------------------------------
    def _one(self, doing: str, sql: str, params: Any) -> Any:
        return self._with_conn(
            doing, lambda conn: conn.execute(sql, params, binary=True).fetchone(),
            lambda row: is_big(params, row),
        )

    def _all(self, doing: str, sql: str, params: Any) -> list[Any]:
        return self._with_conn(
            doing, lambda conn: conn.execute(sql, params, binary=True).fetchall(),
            lambda rows: is_big(params, rows),
        )

    def _write_then_read(
        self, doing: str, write: str, write_params: Any, read: str, read_params: Any
    ) -> Any:
        """``write`` (returning the changed row); when it changed nothing, ``read`` the
        row as it is, in the same transaction: a later statement has a fresh snapshot."""

        def run(conn: psycopg.Connection[Any]) -> Any:
            with conn.transaction():
                row = conn.execute(write, write_params, binary=True).fetchone()
                if row is None:
                    row = conn.execute(read, read_params, binary=True).fetchone()
                return row

        return self._with_conn(doing, run)

    def now(self) -> float:
        return float(self._one("reading the clock", q.CLOCK, ())[0])

    def worker_session(self, key: int) -> PgWorkerSession:
        return PgWorkerSession(self._connect, key)

    def listener(self, channels: Sequence[str]) -> PgListener:
        return PgListener(self._connect, channels)

    # --- runs ----------------------------------------------------------------------
    def enqueue_run(self, run: NewRun, *, multitask: str = "enqueue") -> RunRow:
        check("multitask strategy", multitask)
        params = (run.run_id, run.thread_id, run.graph_id, run.payload, run.max_attempts,
                  run.timeout_s, run.stream, run.metadata, multitask, run.idempotency_key,
                  run.request_hash)

        def enqueue(conn: psycopg.Connection[Any]) -> Any:
            try:
                return conn.execute(q.ENQUEUE_RUN, params, binary=True).fetchone()
            except psycopg.Error as exc:
                if exc.sqlstate != q.ENQUEUE_BUSY_STATE:
                    raise
                active = json.loads(exc.diag.message_detail or "[]")
                raise ThreadBusyError(run.thread_id, [str(a) for a in active]) from None

        row = self._with_conn(f"queueing run {run.run_id}", enqueue,
                              lambda row: is_big(params, row))
        if run.idempotency_key is not None:  # the key's run, maybe an earlier one
            same_request(run.idempotency_key, row[1], row[0], run.request_hash)
        return _run(row[1:])

    def claim_run(
        self, worker: str, graph_ids: Sequence[str], allow_pickled: bool, ttl: float,
        lock: int | None = None,
    ) -> RunRow | None:
        def run(conn: psycopg.Connection[Any]) -> Any:
            with conn.transaction():
                row = conn.execute(q.CLAIM_RUN, (worker, list(graph_ids), allow_pickled,
                                                 float(ttl), lock), binary=True).fetchone()
                if row is not None:
                    conn.execute(*self._thread_state_stmt(ThreadUpdate(_run(row).thread_id,
                                                                       "busy")))
                return row

        row = self._with_conn("claiming a run", run, is_big)
        return _run(row) if row else None

    def heartbeat(
        self,
        worker: str,
        runs: Sequence[tuple[str, int]],
        tasks: Sequence[tuple[str, int]],
        ttl: float,
    ) -> Heartbeat:
        found = Heartbeat()
        if not runs and not tasks:
            return found
        params = {
            "worker": worker,
            "ttl": float(ttl),
            "run_ids": [r for r, _ in runs],
            "run_epochs": [int(e) for _, e in runs],
            "task_keys": [t for t, _ in tasks],
            "task_epochs": [int(e) for _, e in tasks],
        }
        for kind, key, cancel in self._all(f"heartbeat of worker {worker}", q.HEARTBEAT, params):
            if kind == "run":
                found.runs[key] = cancel
            else:
                found.tasks.add(key)
        return found

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
        check("final run status", status)
        params = (status, result, error, run_id, Int8(epoch))
        if thread is None:
            return self._one(f"finishing run {run_id}", q.FINISH_RUN, params) is not None

        def run(conn: psycopg.Connection[Any]) -> bool:
            with conn.transaction():
                done = conn.execute(q.FINISH_RUN, params, binary=True).fetchone() is not None
                if done:
                    conn.execute(*self._thread_state_stmt(thread))
                return done

        return self._with_conn(f"finishing run {run_id}", run, lambda _: is_big(params))

    def release_run(self, run_id: str, epoch: int) -> bool:
        return self._one(f"releasing run {run_id}", q.RELEASE_RUN, (run_id, Int8(epoch))) is not None

    def cancel_run(self, run_id: str, action: str = "cancel") -> RunRow | None:
        check("cancel action", action)
        row = self._write_then_read(
            f"cancelling run {run_id}",
            q.CANCEL_RUN, {"final": CANCEL_STATUS[action], "action": action, "run_id": run_id},
            q.GET_RUN, (run_id,),
        )
        return _run(row) if row else None

    def expire_pending_run(self, run_id: str, error: str) -> RunRow | None:
        row = self._write_then_read(
            f"expiring run {run_id}", q.EXPIRE_PENDING_RUN, {"error": error, "run_id": run_id},
            q.GET_RUN, (run_id,),
        )
        return _run(row) if row else None

    # --- workers -------------------------------------------------------------------
    def register_worker(self, worker: WorkerInfo, ttl: float) -> None:
        self._with_conn(f"registering worker {worker.name}", lambda conn: conn.execute(
            q.REGISTER_WORKER,
            {"worker_id": worker.worker_id, "name": worker.name,
             "graph_ids": list(worker.graph_ids), "allow_pickled": worker.allow_pickled,
             "slots": worker.slots, "running": worker.running, "ttl": float(ttl)}))

    def remove_worker(self, worker_id: str) -> None:
        self._with_conn(f"removing worker {worker_id}",
                        lambda conn: conn.execute(q.REMOVE_WORKER, (worker_id,)))

    def list_workers(self, graph_id: str | None = None) -> list[WorkerInfo]:
        live = [_worker(r) for r in self._all("listing workers", q.LIVE_WORKERS, ())]
        return live if graph_id is None else [w for w in live if serves(w, graph_id)]

    def sweep(self, max_losses: int = DEFAULT_MAX_WORKER_LOSSES, *,
              check_sessions: bool = False) -> list[tuple[str, str]]:
        params = {"max_losses": int(max_losses), "check_sessions": bool(check_sessions),
                  "grace": SESSION_GRACE}

        def run(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
            with conn.transaction():
                swept = conn.execute(q.SWEEP_RUNS, params).fetchall()
                changed = [(r[0], r[1]) for r in swept]
                for r in swept:
                    if r[1] in TERMINAL:  # given up or cancelled: its thread is no longer busy
                        state = "error" if r[1] == "error" else "idle"
                        conn.execute(*self._thread_state_stmt(ThreadUpdate(r[2], state)))
                changed += [(r[0], r[1]) for r in conn.execute(q.SWEEP_TASKS, params).fetchall()]
            return changed

        return self._with_conn("sweeping lost leases", run)

    def get_run(self, run_id: str) -> RunRow | None:
        row = self._one(f"reading run {run_id}", q.GET_RUN, (run_id,))
        return _run(row) if row else None

    def get_run_by_key(self, idempotency_key: str, request_hash: str | None) -> RunRow | None:
        row = self._one("reading a run by its idempotency key", q.RUN_BY_KEY, (idempotency_key,))
        if row is None:
            return None
        same_request(idempotency_key, row[1], row[0], request_hash)
        return _run(row[1:])

    def list_runs(
        self, *, thread_id: str | None = None, status: str | None = None, limit: int = 100,
        offset: int = 0,
    ) -> list[RunRow]:
        where: list[str] = []
        params: list[Any] = []
        if thread_id is not None:
            where.append(q.LIST_RUNS_WHERE_THREAD)
            params.append(thread_id)
        if status is not None:
            where.append(q.LIST_RUNS_WHERE_STATUS)
            params.append(status)
        sql = q.LIST_RUNS
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += q.LIST_RUNS_ORDER
        params.append(Int8(max(int(limit), 0)))
        params.append(Int8(max(int(offset), 0)))
        return [_run(r) for r in self._all("listing runs", sql, params)]

    def queue_stats(self) -> QueueStats:
        pending, running, age = self._one("reading the queue's size", q.QUEUE_STATS, ())
        return QueueStats(int(pending), int(running),
                          max(float(age), 0.0) if age is not None else None)

    # --- tasks -----------------------------------------------------------------------
    def submit_task(self, task: NewTask) -> TaskRow:
        row = self._write_then_read(
            f"submitting task {task.task_key}",
            q.SUBMIT_TASK,
            (task.task_key, task.run_id, task.thread_id, task.graph_id, task.node,
             task.payload, task.max_attempts),
            q.TASK_BY_KEY, (task.task_key,),
        )
        return _task(row)

    def claim_tasks(
        self, worker: str, graph_ids: Sequence[str], allow_pickled: bool, ttl: float, limit: int,
        lock: int | None = None,
    ) -> list[TaskRow]:
        if limit <= 0:
            return []
        params = {
            "worker": worker,
            "graph_ids": list(graph_ids),
            "allow_pickled": allow_pickled,
            "ttl": float(ttl),
            "limit": Int8(limit),
            "lock": lock,
        }
        return [_task(r) for r in self._all("claiming tasks", q.CLAIM_TASKS, params)]

    def finish_task(
        self,
        task_key: str,
        epoch: int,
        status: str,
        *,
        result: bytes | None = None,
        error: str | None = None,
    ) -> bool:
        check("final task status", status)
        row = self._one(f"finishing task {task_key}", q.FINISH_TASK,
                        (status, result, error, task_key, Int8(epoch)))
        return row is not None

    def get_tasks(self, task_keys: Sequence[str]) -> list[TaskRow]:
        if not task_keys:
            return []
        return [_task(r) for r in self._all("reading tasks", q.GET_TASKS, (list(task_keys),))]

    def list_tasks(self, run_id: str) -> list[TaskRow]:
        return [_task(r) for r in self._all(f"listing tasks of run {run_id}", q.LIST_TASKS,
                                            (run_id,))]

    # --- stream events ---------------------------------------------------------------
    def put_events(self, run_id: str, epoch: int, events: Sequence[Event]) -> bool:
        doing = f"recording events of run {run_id}"
        if not events:
            return self._one(doing, q.RUN_AT_EPOCH, (run_id, Int8(epoch))) is not None
        row = self._one(doing, q.PUT_EVENTS, (
            run_id, Int8(epoch),
            [Int8(e.seq) for e in events], [e.kind for e in events], [e.data for e in events],
        ))
        return row is not None

    def read_events(self, run_id: str, after_seq: int, limit: int = 1000) -> list[Event]:
        rows = self._all(f"reading events of run {run_id}", q.READ_EVENTS,
                         (run_id, Int8(after_seq), Int8(max(int(limit), 0))))
        return [Event(seq=r[0], kind=r[1], data=r[2]) for r in rows]

    # --- graphs shipped by value -----------------------------------------------------
    def put_graph(self, graph_id: str, blob: bytes) -> None:
        self._with_conn(f"storing graph {graph_id}",
                        lambda conn: conn.execute(q.PUT_GRAPH, (graph_id, blob)))

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        def run(conn: psycopg.Connection[Any]) -> int:
            deleted = 0
            with conn.transaction():
                for run_id in run_ids:
                    cur = conn.execute(q.DELETE_RUN, (run_id,))
                    if cur.rowcount:
                        deleted += cur.rowcount
                        conn.execute(q.DELETE_RUN_TASKS, (run_id,))
                        conn.execute(q.DELETE_RUN_EVENTS, (run_id,))
            return deleted

        return self._with_conn("deleting runs", run)

    def purge_events(self, older_than: float) -> int:
        return self._with_conn("purging old stream events", lambda conn: int(
            conn.execute(q.PURGE_EVENTS, (older_than,)).rowcount or 0))

    def get_graph(self, graph_id: str) -> bytes | None:
        row = self._one(f"reading graph {graph_id}", q.GET_GRAPH, (graph_id,))
        return row[0] if row else None
