"""The run queue protocol: durable runs, node tasks, stream events and shipped graphs.

Every backend implements :class:`RunQueue` beside the checkpoint store (the cluster
layer in ``treadle.cluster`` drives it). Timestamps are Unix seconds (float) taken
from the *database's* clock, so leases mean the same on every machine.

Runs
    ``pending -> running -> success | error | interrupted | cancelled | timeout``.
    At most one run per thread is ``running`` (a partial unique index enforces it)
    and a thread's pending runs start in the order they were queued. Each claim
    raises the run's ``epoch``; every later write of that execution names the epoch
    and is refused once another claim has raised it (fencing).

Tasks
    A node task sent to the cluster: ``pending -> running -> success | error``.
    Keyed by ``task_key`` (``thread_id:checkpoint_ns:task_id``), so an orchestrator
    that resumes a run finds the results of tasks that already ran. Tasks have their
    own lease and epoch, with the same fencing.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from treadle.store.resources import ThreadUpdate

__all__ = [
    "ACTIVE",
    "CANCEL_ACTIONS",
    "MULTITASK_STRATEGIES",
    "RUN_STATUSES",
    "TASK_OUTCOMES",
    "DEFAULT_MAX_WORKER_LOSSES",
    "SESSION_GRACE",
    "TERMINAL",
    "Event",
    "Heartbeat",
    "Listener",
    "NewRun",
    "NewTask",
    "QueueStats",
    "RunQueue",
    "RunRow",
    "TaskRow",
    "WorkerInfo",
    "WorkerSession",
    "check",
    "same_request",
    "serves",
]

RUN_STATUSES = ("pending", "running", "success", "error", "interrupted", "cancelled", "timeout")
ACTIVE = ("pending", "running")
TERMINAL = ("success", "error", "interrupted", "cancelled", "timeout")
MULTITASK_STRATEGIES = ("reject", "enqueue", "interrupt", "rollback")
CANCEL_ACTIONS = ("cancel", "interrupt", "rollback")
# Final status of a run stopped by each cancel action.
CANCEL_STATUS = {"cancel": "cancelled", "interrupt": "interrupted", "rollback": "cancelled"}
TASK_OUTCOMES = ("success", "error")
# Worker losses (killed, OOM, stalled past its lease) a run survives before it errors.
DEFAULT_MAX_WORKER_LOSSES = 10
# Seconds after a database (re)start, or after a worker's own session came back, during
# which sessions are not judged: workers reconnecting after a restart take their locks again.
SESSION_GRACE = 2.0

_ALLOWED = {
    "multitask strategy": MULTITASK_STRATEGIES,
    "cancel action": CANCEL_ACTIONS,
    "final run status": TERMINAL,
    "final task status": TASK_OUTCOMES,
}


def check(kind: str, value: str) -> None:
    """Raise ConfigError unless ``value`` is one of the allowed values of ``kind``."""
    from treadle.errors import ConfigError

    allowed = _ALLOWED[kind]
    if value not in allowed:
        raise ConfigError(f"unknown {kind} {value!r} (use one of {', '.join(allowed)})")

def same_request(key: str, run_id: str, stored_hash: str | None, request_hash: str | None) -> None:
    """Raise IdempotencyKeyError unless the run found under ``key`` came from this request."""
    from treadle.errors import IdempotencyKeyError

    if (stored_hash or None) != (request_hash or None):
        raise IdempotencyKeyError(key, run_id)


# Notification channels (PostgreSQL LISTEN/NOTIFY; payload in brackets).
CHANNEL_RUNS = "treadle_runs"  # a run became claimable [run_id]
CHANNEL_RUN_DONE = "treadle_run_done"  # a run reached a terminal status [run_id]
CHANNEL_CANCEL = "treadle_cancel"  # a running run was asked to stop [run_id]
CHANNEL_TASKS = "treadle_tasks"  # a task became claimable [task_key]
CHANNEL_TASK_DONE = "treadle_task_done"  # a task finished [task_key]
CHANNEL_EVENTS = "treadle_events"  # a run has new stream events [run_id]
CHANNELS = (CHANNEL_RUNS, CHANNEL_RUN_DONE, CHANNEL_CANCEL, CHANNEL_TASKS, CHANNEL_TASK_DONE,
            CHANNEL_EVENTS)


@dataclass(slots=True)
class NewRun:
    run_id: str
    thread_id: str
    graph_id: str  # "ref:<name>" (loaded by reference) or "pickle:<sha256>" (shipped by value)
    payload: bytes  # opaque to the store (the cluster's codec: input, config, kwargs)
    max_attempts: int = 3
    timeout_s: float | None = None  # run timeout, counted from the first start
    stream: bool = False  # the caller wants stream events recorded
    metadata: str = "{}"  # JSON object
    # Creating the run is idempotent under this key (unique in the store): a second
    # enqueue with it returns the first run, or raises IdempotencyKeyError when its
    # request_hash differs (the key was reused for another request).
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(slots=True)
class RunRow:
    run_id: str
    thread_id: str
    graph_id: str
    payload: bytes
    status: str
    attempt: int  # claims so far that counted (a graceful hand-off gives its attempt back)
    max_attempts: int
    epoch: int  # raised by every claim
    worker: str | None
    lease_expires_at: float | None
    timeout_s: float | None
    stream: bool
    cancel: str | None  # a requested cancel action, see CANCEL_ACTIONS
    metadata: str
    result: bytes | None
    error: str | None
    created_at: float
    started_at: float | None  # first claim
    ended_at: float | None
    lost: int = 0  # times the sweeper took it back from a lost worker (see sweep)


@dataclass(slots=True)
class NewTask:
    task_key: str
    run_id: str
    thread_id: str
    graph_id: str
    node: str
    payload: bytes
    max_attempts: int = 3  # lease expiries tolerated before the task errors


@dataclass(slots=True)
class TaskRow:
    task_key: str
    run_id: str
    thread_id: str
    graph_id: str
    node: str
    payload: bytes
    status: str  # pending | running | success | error
    attempt: int
    max_attempts: int
    epoch: int
    worker: str | None
    lease_expires_at: float | None
    result: bytes | None
    error: str | None
    created_at: float
    ended_at: float | None


@dataclass(slots=True)
class Event:
    seq: int
    kind: str  # e.g. "values", "updates", "custom", "end"
    data: bytes


@dataclass(slots=True)
class WorkerInfo:
    """A live worker as it advertises itself (``treadle_workers``), refreshed by its heartbeat."""

    worker_id: str  # unique per worker instance (treadle.cluster.worker.new_worker_id)
    name: str  # host:pid:suffix, the name its leases carry (RunRow.worker)
    graph_ids: list[str]  # the "ref:<name>" graphs it loaded
    allow_pickled: bool  # it also serves every "pickle:<sha>" graph
    slots: int  # runs it executes at once
    running: int  # runs it held at its last heartbeat
    started_at: float
    heartbeat_at: float
    expires_at: float  # dead (not listed) from then on unless it beats again


def serves(worker: WorkerInfo, graph_id: str) -> bool:
    """True when ``worker`` can claim runs of ``graph_id`` (the claim's graph filter)."""
    return graph_id in worker.graph_ids or (
        worker.allow_pickled and graph_id.startswith("pickle:"))


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What the run queue holds right now (metrics and autoscaling read it)."""

    pending: int  # runs waiting for a worker: the autoscaling signal
    running: int  # runs a worker holds a lease on
    oldest_pending_age: float | None  # seconds the oldest pending run has waited; None: none


@dataclass(slots=True)
class Heartbeat:
    """What a heartbeat found: the leases still held, and cancel requests for them."""

    runs: dict[str, str | None] = field(default_factory=dict)  # run_id -> cancel action or None
    tasks: set[str] = field(default_factory=set)  # task keys still held


class Listener(abc.ABC):
    """Wake-ups pushed by the database (PostgreSQL LISTEN/NOTIFY).

    Never the only path: callers also poll, so a lost notification only delays.
    """

    @abc.abstractmethod
    def wait(self, timeout: float) -> list[tuple[str, str]]:
        """Block up to ``timeout`` s; return the (channel, payload) pairs received.

        Returns early when a notification arrives. On a lost connection, returns
        ``[]`` and reconnects on a later call (never raises for that)."""

    @abc.abstractmethod
    def close(self) -> None: ...


class WorkerSession(abc.ABC):
    """A worker's liveness as the store sees it, released the moment the worker's process
    dies: on PostgreSQL a session-level advisory lock on a dedicated connection (the
    server ends the session when the kernel closes its socket), on SQLite a ``flock`` on
    a file beside the store (the kernel drops it with the process).

    Claims made with this session's ``key`` are recovered by any sweeper as soon as the
    session is gone, without waiting for their leases."""

    key: int
    held_since: float | None  # time.monotonic() when the lock was last (re)taken
    reconnected: bool  # the lock was taken again after its session was lost

    @abc.abstractmethod
    def held(self) -> bool:
        """Check that the session is alive and holds its lock; reconnect and take the lock
        again when it was dropped. False while the database cannot be reached (then claim
        nothing: the sweepers will take back what is claimed)."""

    @abc.abstractmethod
    def close(self) -> None: ...


class RunQueue(abc.ABC):
    """Durable runs and node tasks. Every method is one short transaction."""

    # --- runs --------------------------------------------------------------------
    @abc.abstractmethod
    def enqueue_run(self, run: NewRun, *, multitask: str = "enqueue") -> RunRow:
        """Queue ``run`` as ``pending``; return it. Notifies CHANNEL_RUNS.

        When the thread has active runs (pending or running), ``multitask`` decides,
        atomically with the insert (the thread's row is locked):
        ``reject`` raises ThreadBusyError and writes nothing; ``enqueue`` queues
        behind them; ``interrupt`` / ``rollback`` cancel pending ones at once (status
        ``interrupted`` / ``cancelled``) and set ``cancel`` on the running one, whose
        worker stops it; the new run starts when the thread is free.

        With ``run.idempotency_key``, the key's run is looked up first, in the same
        transaction (concurrent enqueues with one key are serialised): if there is one,
        it is returned as it is now and nothing else happens (no multitask decision);
        IdempotencyKeyError if its request_hash differs from ``run.request_hash``.
        """

    @abc.abstractmethod
    def get_run_by_key(self, idempotency_key: str, request_hash: str | None) -> RunRow | None:
        """The run created under ``idempotency_key`` (None: none, or it was deleted);
        IdempotencyKeyError if it was created with a different ``request_hash``."""

    @abc.abstractmethod
    def claim_run(
        self, worker: str, graph_ids: Sequence[str], allow_pickled: bool, ttl: float,
        lock: int | None = None,
    ) -> RunRow | None:
        """Claim the oldest claimable run, or None.

        ``lock``: the key of the claimer's :class:`WorkerSession` (the run is recovered as
        soon as that session ends); None: the lease alone decides.

        Claimable: ``pending``; ``graph_id`` in ``graph_ids`` (or a ``pickle:`` id when
        ``allow_pickled``); no run of its thread is ``running``; no older pending run
        on its thread. The claim sets running, ``worker``, ``epoch + 1``,
        ``attempt + 1``, ``lease_expires_at = now + ttl``, ``started_at`` if unset; the
        thread's record (threads made through the HTTP API) becomes ``busy`` in the same
        transaction.
        Concurrent claimers never get the same run (``FOR UPDATE SKIP LOCKED``).
        """

    @abc.abstractmethod
    def heartbeat(
        self,
        worker: str,
        runs: Sequence[tuple[str, int]],
        tasks: Sequence[tuple[str, int]],
        ttl: float,
    ) -> Heartbeat:
        """Extend the leases of ``(run_id, epoch)`` runs and ``(task_key, epoch)`` tasks
        that are still ``running`` under that epoch and worker; report which are."""

    @abc.abstractmethod
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

        ``thread``: also record the thread's new state (its record, if it has one) in
        the same transaction, and only if the run's status was recorded.

        Clears worker and lease, sets ``ended_at``. Notifies CHANNEL_RUN_DONE and,
        since its thread may now be free, CHANNEL_RUNS. False when fenced."""

    @abc.abstractmethod
    def release_run(self, run_id: str, epoch: int) -> bool:
        """Hand a running run back (graceful shutdown): ``pending``, no worker, no
        lease, ``attempt - 1``. Notifies CHANNEL_RUNS. False when fenced."""

    @abc.abstractmethod
    def cancel_run(self, run_id: str, action: str = "cancel") -> RunRow | None:
        """Ask a run to stop. Pending: terminal at once (CANCEL_STATUS[action]).
        Running: sets ``cancel`` and notifies CHANNEL_CANCEL; its worker stops it.
        Terminal: unchanged. Returns the row after the change (None: unknown id)."""

    @abc.abstractmethod
    def sweep(self, max_losses: int = DEFAULT_MAX_WORKER_LOSSES, *,
              check_sessions: bool = False) -> list[tuple[str, str]]:
        """Recover from dead workers; return ``(run_id or task_key, new status)``.

        A running run or task is lost when its lease expired or, with ``check_sessions``,
        when it was claimed with a :class:`WorkerSession` key whose session has ended
        (its worker died; on PostgreSQL not within SESSION_GRACE of the server's start,
        when workers are taking their locks again). A lost run: with a ``cancel`` request,
        terminal (CANCEL_STATUS); when this is its ``max_losses``-th loss, ``error``
        (error names the losses and keeps the previous error); otherwise back to
        ``pending`` (error notes the loss; epoch unchanged: the next claim raises it).
        Either way ``lost`` rises by one; ``max_attempts`` is not consulted. A lost
        task: back to ``pending`` or, at its ``max_attempts``, ``error``.
        Notifies CHANNEL_RUNS / CHANNEL_TASKS / CHANNEL_RUN_DONE as fits."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRow | None: ...

    @abc.abstractmethod
    def list_runs(
        self, *, thread_id: str | None = None, status: str | None = None, limit: int = 100,
        offset: int = 0,
    ) -> list[RunRow]:
        """Newest first."""

    @abc.abstractmethod
    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete finished runs (with their tasks and events); active ones are kept.
        Returns how many were deleted."""

    @abc.abstractmethod
    def purge_events(self, older_than: float) -> int:
        """Delete the stream events of runs that ended more than ``older_than`` seconds
        ago; returns how many events went."""

    @abc.abstractmethod
    def queue_stats(self) -> QueueStats:
        """Pending and running runs, and the age of the oldest pending one (one read).

        ``pending`` counts every run with status ``pending`` — also those waiting behind
        a running run of their thread — exactly what an autoscaler counting
        ``SELECT count(*) FROM treadle_runs WHERE status = 'pending'`` sees."""

    def queue_depth(self) -> tuple[int, float | None]:
        """(pending runs, age in seconds of the oldest pending run or None)."""
        stats = self.queue_stats()
        return stats.pending, stats.oldest_pending_age

    @abc.abstractmethod
    def expire_pending_run(self, run_id: str, error: str) -> RunRow | None:
        """End a run that is still ``pending`` as ``cancelled`` with ``error`` (its
        ``queue_timeout`` passed before any worker claimed it). A run claimed meanwhile is
        left alone. Notifies CHANNEL_RUN_DONE when it ended it. Returns the row after the
        change (None: unknown id)."""

    # --- workers -----------------------------------------------------------------
    @abc.abstractmethod
    def register_worker(self, worker: WorkerInfo, ttl: float) -> None:
        """Insert or refresh ``worker``'s advertisement: ``heartbeat_at = now``,
        ``expires_at = now + ttl`` (``started_at`` is kept from the first call; the
        given timestamps are ignored). Also forgets workers that expired."""

    @abc.abstractmethod
    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker at once (its clean stop)."""

    @abc.abstractmethod
    def list_workers(self, graph_id: str | None = None) -> list[WorkerInfo]:
        """Live workers (``expires_at`` in the future), oldest first; with ``graph_id``
        only those that serve it (see :func:`serves`)."""

    # --- tasks -------------------------------------------------------------------
    @abc.abstractmethod
    def submit_task(self, task: NewTask) -> TaskRow:
        """Insert ``task`` as pending unless its key exists; return the row as it is.

        An existing ``error`` row is reset to pending (the orchestrator retries it), and
        a ``pending`` row of another run is adopted by ``task.run_id`` (so a run resuming a
        thread whose earlier run ended can get it claimed); rows in any other status are
        returned unchanged (a resumed orchestrator
        reuses a finished result or waits for a running one). Notifies CHANNEL_TASKS
        when it (re)queued the task."""

    @abc.abstractmethod
    def claim_tasks(
        self, worker: str, graph_ids: Sequence[str], allow_pickled: bool, ttl: float, limit: int,
        lock: int | None = None,
    ) -> list[TaskRow]:
        """Claim up to ``limit`` pending tasks, oldest first (graph filter as for runs).
        Each: running, ``worker``, ``epoch + 1``, ``attempt + 1``, lease now + ttl.
        Tasks whose run is no longer ``running`` are not claimed."""

    @abc.abstractmethod
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

    @abc.abstractmethod
    def get_tasks(self, task_keys: Sequence[str]) -> list[TaskRow]: ...

    @abc.abstractmethod
    def list_tasks(self, run_id: str) -> list[TaskRow]: ...

    # --- stream events -----------------------------------------------------------
    @abc.abstractmethod
    def put_events(self, run_id: str, epoch: int, events: Sequence[Event]) -> bool:
        """Append events if the run is ``running`` under ``epoch`` (duplicates of a seq
        are ignored). Notifies CHANNEL_EVENTS. False when fenced."""

    @abc.abstractmethod
    def read_events(self, run_id: str, after_seq: int, limit: int = 1000) -> list[Event]:
        """Events with ``seq > after_seq``, in order."""

    # --- graphs shipped by value -------------------------------------------------
    @abc.abstractmethod
    def put_graph(self, graph_id: str, blob: bytes) -> None:
        """Store a pickled graph under its content hash (idempotent)."""

    @abc.abstractmethod
    def get_graph(self, graph_id: str) -> bytes | None: ...

    # --- wake-ups ------------------------------------------------------------------
    def worker_session(self, key: int) -> WorkerSession | None:
        """A :class:`WorkerSession` under ``key`` (not taken yet: call ``held``), or None
        when the backend has none (then the lease alone decides)."""
        return None

    def listener(self, channels: Sequence[str]) -> Listener | None:
        """A :class:`Listener` for ``channels``, or None when the backend has none
        (SQLite: callers poll)."""
        return None

    def now(self) -> float:
        """The database clock, Unix seconds."""
        import time

        return time.time()
