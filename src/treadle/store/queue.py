"""The run queue's types and rules: durable runs, node tasks, stream events and shipped graphs.

The queue itself is :class:`~treadle.store.run_records.RunStore` (runs) and
:class:`~treadle.store.task_records.TaskStore` (tasks, workers, events, graphs), written
once over the connector; the cluster layer in ``treadle.cluster`` drives it. Timestamps are Unix seconds (float) taken
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
from dataclasses import dataclass, field

__all__ = [
    "ACTIVE",
    "CANCEL_ACTIONS",
    "MULTITASK_STRATEGIES",
    "RUN_STATUSES",
    "TASK_OUTCOMES",
    "DEFAULT_MAX_WORKER_LOSSES",
    "SESSION_GRACE",
    "TERMINAL",
    "DEFAULT_FAIR_GROUP",
    "MAX_FAIR_GROUP",
    "PRIORITY_RANGE",
    "Event",
    "Failover",
    "Heartbeat",
    "Listener",
    "NewRun",
    "NewTask",
    "QueueStats",
    "RunRow",
    "TaskRow",
    "ThreadPriority",
    "WorkerInfo",
    "WorkerSession",
    "check",
    "check_priority",
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


# A thread's priority settings (langgraph_sdk's PrioritySettings): claims take the lowest
# priority first, then the fairness group claimed from least recently, then the oldest run.
PRIORITY_RANGE = (-5, 5)
DEFAULT_FAIR_GROUP = "default"
MAX_FAIR_GROUP = 256  # characters


@dataclass(frozen=True, slots=True)
class ThreadPriority:
    """A thread's stored priority settings (``-5`` runs first, ``5`` last)."""

    priority: int = 0
    fair_group: str = DEFAULT_FAIR_GROUP


def check_priority(priority: object, fair_group: object) -> ThreadPriority:
    """Settings as the SDK defines them (None or ``""``: the default); ConfigError naming
    what is wrong otherwise."""
    from treadle.errors import ConfigError

    low, high = PRIORITY_RANGE
    if priority is None:
        priority = 0
    if isinstance(priority, bool) or not isinstance(priority, int) or not low <= priority <= high:
        raise ConfigError(f"priority {priority!r} is not an integer from {low} to {high}")
    if fair_group is None or fair_group == "":
        fair_group = DEFAULT_FAIR_GROUP
    if not isinstance(fair_group, str) or len(fair_group) > MAX_FAIR_GROUP:
        shown = fair_group if not isinstance(fair_group, str) else f"{fair_group[:20]}..."
        raise ConfigError(f"fairness_group {shown!r} is not a string of at most "
                          f"{MAX_FAIR_GROUP} characters")
    return ThreadPriority(priority, fair_group)


# Notification channels (PostgreSQL LISTEN/NOTIFY; payload in brackets).
CHANNEL_RUNS = "treadle_runs"  # a run became claimable [run_id]
CHANNEL_RUN_DONE = "treadle_run_done"  # a run reached a terminal status [run_id]
CHANNEL_CANCEL = "treadle_cancel"  # a running run was asked to stop [run_id]
CHANNEL_TASKS = "treadle_tasks"  # a task became claimable [task_key]
CHANNEL_TASK_DONE = "treadle_task_done"  # a task finished [task_key]
CHANNEL_EVENTS = "treadle_events"  # a run has new stream events [run_id]
CHANNELS = (CHANNEL_RUNS, CHANNEL_RUN_DONE, CHANNEL_CANCEL, CHANNEL_TASKS, CHANNEL_TASK_DONE,
            CHANNEL_EVENTS)
# Not a database channel: SQLite's change detector says "something was committed" on it
# (treadle.store.drivers.sqlite_listen); waiters then read what they wait for again.
CHANNEL_CHANGED = "treadle_changed"


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


@dataclass(frozen=True, slots=True)
class Failover:
    """A run the sweeper took back from a lost worker at least once (``RunRow.lost > 0``)."""

    run_id: str
    thread_id: str
    graph_id: str
    status: str  # as it is now: pending again, running on another worker, or ended
    lost: int  # times its worker was lost
    worker: str | None  # the worker holding it now (None unless running)
    error: str | None  # as stored now: until it ends, the sweeper's note naming the lost worker
    created_at: float
    started_at: float | None
    ended_at: float | None


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
    """Wake-ups from the database: PostgreSQL LISTEN/NOTIFY pushes each channel's
    notifications (``pushes``); SQLite's change detector only reports CHANNEL_CHANGED.

    Never the only path: callers also poll, so a lost notification only delays.
    """

    #: Whether it delivers the channels' own notifications (False: only CHANNEL_CHANGED).
    pushes: bool = True

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
