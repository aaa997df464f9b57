"""The run queue (:class:`~treadle.store.queue.RunQueue`) on SQLite.

Every method is one short transaction on the calling thread's connection. Writes
start with ``BEGIN IMMEDIATE``, which takes SQLite's single write lock, so writers in
every process sharing the file are serialised: a claim reads and updates its run
without anyone else writing in between (SQLite's answer to ``FOR UPDATE SKIP LOCKED``).
SQLite has no notifications: :meth:`listener` stays None and callers poll.
"""

from __future__ import annotations

import abc
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from treadle.errors import StoreDataError, StoreError, StoreUnavailableError, ThreadBusyError
from treadle.store import sqlite_queries as q
from treadle.store.drivers.sqlite_session import SqliteWorkerSession, dead_sessions, sessions_folder
from treadle.store.queue import (
    CANCEL_STATUS,
    DEFAULT_MAX_WORKER_LOSSES,
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

__all__ = ["SqliteQueue"]

# Events per INSERT statement (4 bound values each; far below SQLite's limit).
_EVENT_CHUNK = 500
# SQLite messages meaning the database cannot be reached or locked right now.
_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly")


def is_data_error(exc: BaseException) -> bool:
    """Whether ``exc`` refuses the data itself, so writing it again can never succeed:
    "string or blob too big" (SQLITE_LIMIT_LENGTH) and the other DataErrors, text Python
    cannot encode (lone surrogates), an int beyond 64 bits."""
    if isinstance(exc, (sqlite3.DataError, UnicodeEncodeError, OverflowError)):
        return True
    return isinstance(exc, sqlite3.Error) and "too big" in str(exc)


def data_error(what: str, path: Path, exc: BaseException) -> StoreDataError:
    return StoreDataError(f"{what} failed on SQLite store {path}: it cannot store this data "
                          f"(not retried): {' '.join(str(exc).split())}")


def _run(row: Sequence[Any]) -> RunRow:
    r = RunRow(*row)
    r.stream = bool(r.stream)
    return r


def _task(row: Sequence[Any]) -> TaskRow:
    return TaskRow(*row)


def _worker(row: Sequence[Any]) -> WorkerInfo:
    w = WorkerInfo(*row)
    w.graph_ids = list(json.loads(w.graph_ids))  # type: ignore[arg-type]
    w.allow_pickled = bool(w.allow_pickled)
    return w


class SqliteQueue(RunQueue):
    """The :class:`RunQueue` half of :class:`~treadle.store.sqlite.SqliteStore`."""

    path: Path
    _write_lock: threading.RLock  # one writer of this process at a time (see _write)

    @abc.abstractmethod
    def _reader(self) -> sqlite3.Connection:
        """This thread's autocommit connection."""

    # --- transactions --------------------------------------------------------------
    def _error(self, what: str, exc: BaseException) -> StoreError:
        if is_data_error(exc):
            return data_error(what, self.path, exc)
        message = f"{what} failed on SQLite store {self.path}: {' '.join(str(exc).split())}"
        if isinstance(exc, sqlite3.OperationalError) and any(
            word in str(exc).lower() for word in _UNAVAILABLE
        ):
            return StoreUnavailableError(message)
        return StoreError(message)

    # The statement recording a thread's state, from the resources half of the store
    # (an annotation, not an abstract method: the resources mixin comes later in the MRO).
    _thread_state_stmt: Callable[[ThreadUpdate], tuple[str, Any]]

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back if the block raises.

        Writers of this process take ``_write_lock`` first: they queue on it instead of
        on SQLite's busy handler, which sleeps (up to 100 ms) while the file is locked."""
        with self._write_lock:
            conn = self._reader()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailableError(
                    f"{what}: cannot lock SQLite store {self.path}: {exc}"
                ) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error) or is_data_error(exc):
                    raise self._error(what, exc) from exc
                raise

    def _read(self, what: str, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc

    def now(self) -> float:
        return float(self._read("reading the clock", q.CLOCK, ())[0][0])

    # --- runs ----------------------------------------------------------------------
    def enqueue_run(self, run: NewRun, *, multitask: str = "enqueue") -> RunRow:
        check("multitask strategy", multitask)
        with self._write(f"queueing run {run.run_id}") as conn:
            if run.idempotency_key is not None:  # under the write lock: no race
                found = conn.execute(q.RUN_BY_KEY, (run.idempotency_key,)).fetchone()
                if found is not None:
                    same_request(run.idempotency_key, found[1], found[0], run.request_hash)
                    return _run(found[1:])
            active = conn.execute(q.ACTIVE_RUNS, (run.thread_id,)).fetchall()
            if active:
                if multitask == "reject":
                    raise ThreadBusyError(run.thread_id, [r[0] for r in active])
                if multitask in ("interrupt", "rollback"):
                    conn.execute(
                        q.STOP_PENDING_RUNS, (CANCEL_STATUS[multitask], multitask, run.thread_id)
                    )
                    conn.execute(q.REQUEST_CANCEL_RUNNING, (multitask, run.thread_id))
            row = conn.execute(
                q.INSERT_RUN,
                (run.run_id, run.thread_id, run.graph_id, run.payload, run.max_attempts,
                 run.timeout_s, int(run.stream), run.metadata, run.idempotency_key,
                 run.request_hash),
            ).fetchone()
        return _run(row)

    def claim_run(
        self, worker: str, graph_ids: Sequence[str], allow_pickled: bool, ttl: float,
        lock: int | None = None,
    ) -> RunRow | None:
        with self._write("claiming a run") as conn:
            row = conn.execute(
                q.CLAIM_RUN, (worker, lock, ttl, json.dumps(list(graph_ids)), int(allow_pickled))
            ).fetchone()
            if row is not None:
                conn.execute(*self._thread_state_stmt(ThreadUpdate(_run(row).thread_id, "busy")))
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
        with self._write(f"heartbeat of worker {worker}") as conn:
            for run_id, epoch in runs:
                row = conn.execute(q.HEARTBEAT_RUN, (ttl, run_id, epoch, worker)).fetchone()
                if row is not None:
                    found.runs[run_id] = row[0]
            for task_key, epoch in tasks:
                row = conn.execute(q.HEARTBEAT_TASK, (ttl, task_key, epoch, worker)).fetchone()
                if row is not None:
                    found.tasks.add(task_key)
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
        with self._write(f"finishing run {run_id}") as conn:
            done = conn.execute(q.FINISH_RUN, (status, result, error, run_id, epoch)).rowcount
            if done == 1 and thread is not None:
                conn.execute(*self._thread_state_stmt(thread))
        return done == 1

    def release_run(self, run_id: str, epoch: int) -> bool:
        with self._write(f"releasing run {run_id}") as conn:
            done = conn.execute(q.RELEASE_RUN, (run_id, epoch)).rowcount
        return done == 1

    def cancel_run(self, run_id: str, action: str = "cancel") -> RunRow | None:
        check("cancel action", action)
        with self._write(f"cancelling run {run_id}") as conn:
            conn.execute(q.CANCEL_PENDING_RUN, (CANCEL_STATUS[action], action, run_id))
            conn.execute(q.CANCEL_RUNNING_RUN, (action, run_id))
            row = conn.execute(q.GET_RUN, (run_id,)).fetchone()
        return _run(row) if row else None

    def sweep(self, max_losses: int = DEFAULT_MAX_WORKER_LOSSES, *,
              check_sessions: bool = False) -> list[tuple[str, str]]:
        dead: list[int] = []
        if check_sessions:  # keys of running claims whose process is gone
            keys = [r[0] for r in self._read("reading worker locks", q.LIVE_SESSION_KEYS, ())]
            dead = dead_sessions(sessions_folder(self.path), keys)
        params = {"max_losses": int(max_losses), "dead": json.dumps(dead)}
        with self._write("sweeping lost leases") as conn:
            swept = conn.execute(q.SWEEP_RUNS, params).fetchall()
            changed = [(r[0], r[1]) for r in swept]
            for r in swept:
                if r[1] in TERMINAL:  # given up or cancelled: its thread is no longer busy
                    state = "error" if r[1] == "error" else "idle"
                    conn.execute(*self._thread_state_stmt(ThreadUpdate(r[2], state)))
            changed += [(r[0], r[1]) for r in conn.execute(q.SWEEP_TASKS, params).fetchall()]
        return changed

    def worker_session(self, key: int) -> SqliteWorkerSession:
        return SqliteWorkerSession(sessions_folder(self.path), key)

    def get_run(self, run_id: str) -> RunRow | None:
        rows = self._read(f"reading run {run_id}", q.GET_RUN, (run_id,))
        return _run(rows[0]) if rows else None

    def get_run_by_key(self, idempotency_key: str, request_hash: str | None) -> RunRow | None:
        rows = self._read("reading a run by its idempotency key", q.RUN_BY_KEY, (idempotency_key,))
        if not rows:
            return None
        same_request(idempotency_key, rows[0][1], rows[0][0], request_hash)
        return _run(rows[0][1:])

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
        params.append(int(limit))
        params.append(max(int(offset), 0))
        return [_run(r) for r in self._read("listing runs", sql, params)]

    def queue_stats(self) -> QueueStats:
        pending, running, age = self._read("reading the queue's size", q.QUEUE_STATS, ())[0]
        return QueueStats(int(pending), int(running),
                          max(float(age), 0.0) if age is not None else None)

    def expire_pending_run(self, run_id: str, error: str) -> RunRow | None:
        with self._write(f"expiring run {run_id}") as conn:
            conn.execute(q.EXPIRE_PENDING_RUN, (error, run_id))
            row = conn.execute(q.GET_RUN, (run_id,)).fetchone()
        return _run(row) if row else None

    # --- workers -------------------------------------------------------------------
    def register_worker(self, worker: WorkerInfo, ttl: float) -> None:
        with self._write(f"registering worker {worker.name}") as conn:
            conn.execute(q.FORGET_DEAD_WORKERS, (worker.worker_id,))
            conn.execute(q.REGISTER_WORKER, (
                worker.worker_id, worker.name, json.dumps(list(worker.graph_ids)),
                int(worker.allow_pickled), worker.slots, worker.running, float(ttl)))

    def remove_worker(self, worker_id: str) -> None:
        with self._write(f"removing worker {worker_id}") as conn:
            conn.execute(q.REMOVE_WORKER, (worker_id,))

    def list_workers(self, graph_id: str | None = None) -> list[WorkerInfo]:
        live = [_worker(r) for r in self._read("listing workers", q.LIVE_WORKERS, ())]
        return live if graph_id is None else [w for w in live if serves(w, graph_id)]

    # --- tasks ---------------------------------------------------------------------
    def submit_task(self, task: NewTask) -> TaskRow:
        with self._write(f"submitting task {task.task_key}") as conn:
            conn.execute(
                q.INSERT_TASK,
                (task.task_key, task.run_id, task.thread_id, task.graph_id, task.node,
                 task.payload, task.max_attempts),
            )
            conn.execute(
                q.RESET_FAILED_TASK,
                (task.run_id, task.thread_id, task.graph_id, task.node, task.payload,
                 task.max_attempts, task.task_key, task.run_id),
            )
            row = conn.execute(q.GET_TASK, (task.task_key,)).fetchone()
        return _task(row)

    def claim_tasks(
        self, worker: str, graph_ids: Sequence[str], allow_pickled: bool, ttl: float, limit: int,
        lock: int | None = None,
    ) -> list[TaskRow]:
        if limit <= 0:
            return []
        with self._write("claiming tasks") as conn:
            rows = conn.execute(
                q.CLAIM_TASKS,
                (worker, lock, ttl, json.dumps(list(graph_ids)), int(allow_pickled), int(limit)),
            ).fetchall()
        rows.sort(key=lambda r: r[-1])  # RETURNING has no order: by seq
        return [_task(r[:-1]) for r in rows]

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
        with self._write(f"finishing task {task_key}") as conn:
            done = conn.execute(q.FINISH_TASK, (status, result, error, task_key, epoch)).rowcount
        return done == 1

    def get_tasks(self, task_keys: Sequence[str]) -> list[TaskRow]:
        if not task_keys:
            return []
        rows = self._read("reading tasks", q.GET_TASKS, (json.dumps(list(task_keys)),))
        return [_task(r) for r in rows]

    def list_tasks(self, run_id: str) -> list[TaskRow]:
        return [_task(r) for r in self._read(f"listing tasks of run {run_id}", q.LIST_TASKS,
                                              (run_id,))]

    # --- stream events -------------------------------------------------------------
    def put_events(self, run_id: str, epoch: int, events: Sequence[Event]) -> bool:
        with self._write(f"recording events of run {run_id}") as conn:
            row = conn.execute(q.RUN_EPOCH_STATUS, (run_id,)).fetchone()
            if row is None or row[0] != epoch or row[1] != "running":
                return False
            for start in range(0, len(events), _EVENT_CHUNK):
                chunk = events[start : start + _EVENT_CHUNK]
                conn.execute(
                    q.INSERT_EVENTS_HEAD + q.values(len(chunk), 4),
                    [v for e in chunk for v in (run_id, e.seq, e.kind, e.data)],
                )
        return True

    def read_events(self, run_id: str, after_seq: int, limit: int = 1000) -> list[Event]:
        rows = self._read(f"reading events of run {run_id}", q.READ_EVENTS,
                          (run_id, after_seq, int(limit)))
        return [Event(seq=r[0], kind=r[1], data=r[2]) for r in rows]

    # --- graphs shipped by value ---------------------------------------------------
    def put_graph(self, graph_id: str, blob: bytes) -> None:
        with self._write(f"storing graph {graph_id}") as conn:
            conn.execute(q.PUT_GRAPH, (graph_id, blob))

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        def run(conn: Any) -> int:
            deleted = 0
            for run_id in run_ids:
                cur = conn.execute(q.DELETE_RUN, (run_id,))
                if cur.rowcount:
                    deleted += cur.rowcount
                    conn.execute(q.DELETE_RUN_TASKS, (run_id,))
                    conn.execute(q.DELETE_RUN_EVENTS, (run_id,))
            return deleted

        with self._write("deleting runs") as conn:
            return run(conn)

    def purge_events(self, older_than: float) -> int:
        with self._write("purging old stream events") as conn:
            return int(conn.execute(q.PURGE_EVENTS, (self.now() - older_than,)).rowcount or 0)

    def get_graph(self, graph_id: str) -> bytes | None:
        rows = self._read(f"reading graph {graph_id}", q.GET_GRAPH, (graph_id,))
        return bytes(rows[0][0]) if rows else None
