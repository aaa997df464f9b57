"""The LangGraph Platform API resources: assistants (with versions), threads, crons.

Every backend implements :class:`ResourceStore` beside the checkpoint store and the run
queue, in the same database. Values are plain JSON (dicts, lists, scalars); times are Unix
seconds (float) from the *database's* clock, as in :mod:`treadle.store.queue`.

Assistants
    A graph with a configuration. Every change (:meth:`~ResourceStore.patch_assistant`)
    stores a new numbered version holding the whole record; one version is the current
    one (:meth:`~ResourceStore.set_latest_assistant_version` can go back to an older one).

Threads
    The API's view of a thread: metadata, a status (``idle | busy | interrupted |
    error``) and the latest state values and interrupts, kept in step by the workers
    (:meth:`~ResourceStore.set_thread_state`). The checkpoints themselves stay in the
    checkpoint store; deleting a thread means :meth:`~treadle.store.base.Store.delete_thread`
    (checkpoints) and :meth:`~ResourceStore.delete_thread_record` (this record).

Crons
    A schedule that creates a run on every tick. Schedulers on several replicas may see
    the same due cron; :meth:`~ResourceStore.advance_cron` is a compare-and-set of its
    next tick, so exactly one of them fires it.

Filters
    ``metadata`` (and a thread's ``values``) filters match rows whose JSON object has every
    given top-level key with an equal value (values may be nested JSON; numbers compare
    by value, so ``1`` equals ``1.0`` at the top level). An empty filter matches every row.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "ThreadUpdate",
    "ASSISTANT_SORT",
    "CRON_SORT",
    "IF_EXISTS",
    "SORT_ORDERS",
    "THREAD_SORT",
    "THREAD_STATUSES",
    "UNSET",
    "Unset",
    "Assistant",
    "Cron",
    "ResourceStore",
    "Thread",
    "check_choice",
    "merge_metadata",
    "patch_assistant_record",
    "patch_cron_record",
]

THREAD_STATUSES = ("idle", "busy", "interrupted", "error")
IF_EXISTS = ("raise", "do_nothing")
SORT_ORDERS = ("asc", "desc")
ASSISTANT_SORT = ("assistant_id", "graph_id", "name", "created_at", "updated_at")
THREAD_SORT = ("thread_id", "status", "created_at", "updated_at")
CRON_SORT = ("cron_id", "assistant_id", "thread_id", "next_run_at", "created_at", "updated_at")


class Unset:
    """The type of :data:`UNSET`: "not given", where None is a meaningful value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()


def check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise InputError unless ``value`` is one of ``allowed``."""
    from treadle.errors import InputError

    if value not in allowed:
        raise InputError(f"unknown {kind} {value!r} (use one of {', '.join(allowed)})")


def merge_metadata(current: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    """Shallow merge: the keys of ``changes`` replace those of ``current``."""
    return {**current, **changes} if changes else dict(current)


@dataclass(slots=True)
class Assistant:
    assistant_id: str
    graph_id: str
    config: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    description: str | None = None
    version: int = 1  # set by the store
    created_at: float = 0.0  # set by the store; a version's: when it was made
    updated_at: float = 0.0  # set by the store; a version's: equals its created_at


@dataclass(slots=True)
class ThreadUpdate:
    """A thread record's new state, written with a run's status change (see
    ``RunQueue.finish_run``): one transaction, not two."""

    thread_id: str
    status: str
    values: Any = UNSET
    interrupts: dict[str, Any] | None = None
    error: str | None = None


@dataclass(slots=True)
class Thread:
    thread_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "idle"  # see THREAD_STATUSES
    values: Any = None  # the latest state values as JSON, or None
    interrupts: dict[str, Any] = field(default_factory=dict)  # {task_id: [interrupt, ...]}
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: float = 0.0  # set by the store
    updated_at: float = 0.0  # set by the store


@dataclass(slots=True)
class Cron:
    cron_id: str
    assistant_id: str
    thread_id: str | None  # None: each tick runs on a new thread
    schedule: str  # a cron expression, interpreted by the scheduler
    payload: dict[str, Any] = field(default_factory=dict)  # the run to create on each tick
    metadata: dict[str, Any] = field(default_factory=dict)
    end_time: float | None = None  # interpreted by the scheduler, not by the store
    next_run_at: float | None = None
    enabled: bool = True
    user_id: str | None = None
    created_at: float = 0.0  # set by the store
    updated_at: float = 0.0  # set by the store


def patch_assistant_record(
    current: Assistant,
    *,
    graph_id: str | None,
    config: dict[str, Any] | None,
    context: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    name: str | None,
    description: str | None,
) -> Assistant:
    """The record :meth:`ResourceStore.patch_assistant` stores (backends share it)."""
    return dataclasses.replace(
        current,
        graph_id=current.graph_id if graph_id is None else graph_id,
        config=current.config if config is None else config,
        context=current.context if context is None else context,
        metadata=merge_metadata(current.metadata, metadata),
        name=current.name if name is None else name,
        description=current.description if description is None else description,
    )


def patch_cron_record(
    current: Cron,
    *,
    schedule: str | None,
    payload: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    end_time: float | None | Unset,
    enabled: bool | None,
    next_run_at: float | None | Unset,
) -> Cron:
    """The record :meth:`ResourceStore.patch_cron` stores (backends share it)."""
    return dataclasses.replace(
        current,
        schedule=current.schedule if schedule is None else schedule,
        payload=current.payload if payload is None else payload,
        metadata=merge_metadata(current.metadata, metadata),
        end_time=current.end_time if isinstance(end_time, Unset) else end_time,
        enabled=current.enabled if enabled is None else enabled,
        next_run_at=current.next_run_at if isinstance(next_run_at, Unset) else next_run_at,
    )


class ResourceStore(abc.ABC):
    """Assistants, threads and crons. Every method is one short transaction.

    ``sort_by`` / ``sort_order`` / ``if_exists`` / thread statuses outside their allowed
    values raise :class:`~treadle.errors.InputError`; database failures raise
    :class:`~treadle.errors.StoreError`. Searches order by ``sort_by`` (empty values last),
    then by creation order in the same direction.
    """

    # --- assistants ----------------------------------------------------------------
    @abc.abstractmethod
    def put_assistant(self, a: Assistant, *, if_exists: str = "raise") -> Assistant:
        """Create ``a`` as version 1 (the store sets version and times); return it.

        When the id exists: ``raise`` raises :class:`~treadle.errors.ConflictError`,
        ``do_nothing`` returns the existing assistant unchanged."""

    @abc.abstractmethod
    def get_assistant(self, assistant_id: str) -> Assistant | None: ...

    @abc.abstractmethod
    def patch_assistant(
        self,
        assistant_id: str,
        *,
        graph_id: str | None = None,
        config: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> Assistant | None:
        """Store a new version (highest version + 1) from the current record and the
        given fields, and make it current; None for an unknown id.

        ``metadata`` is merged into the current metadata (top-level keys); the other
        fields replace theirs when given."""

    @abc.abstractmethod
    def delete_assistant(self, assistant_id: str) -> bool:
        """Delete the assistant and all its versions; False for an unknown id."""

    @abc.abstractmethod
    def search_assistants(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> list[Assistant]:
        """Current records. ``name``: case-insensitive substring (SQLite folds ASCII
        letters only); ``metadata``: see the module docstring."""

    @abc.abstractmethod
    def count_assistants(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int: ...

    @abc.abstractmethod
    def list_assistant_versions(
        self,
        assistant_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Assistant]:
        """The assistant's stored versions, newest version first."""

    @abc.abstractmethod
    def set_latest_assistant_version(self, assistant_id: str, version: int) -> Assistant | None:
        """Make stored ``version`` the current record (``updated_at`` is now); None when
        the assistant or that version is unknown."""

    # --- threads -------------------------------------------------------------------
    @abc.abstractmethod
    def put_thread(self, t: Thread, *, if_exists: str = "raise") -> Thread:
        """Create ``t`` (the store sets its times); ``if_exists`` as for assistants."""

    @abc.abstractmethod
    def get_thread(self, thread_id: str) -> Thread | None: ...

    @abc.abstractmethod
    def patch_thread(
        self, thread_id: str, *, metadata: dict[str, Any] | None = None
    ) -> Thread | None:
        """Merge ``metadata`` into the thread's and bump ``updated_at``; None for an
        unknown id."""

    @abc.abstractmethod
    def delete_thread_record(self, thread_id: str) -> bool:
        """Delete the thread's record (not its checkpoints); False for an unknown id."""

    @abc.abstractmethod
    def search_threads(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: str | None = None,
        ids: list[str] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> list[Thread]:
        """``metadata`` and ``values``: see the module docstring (a thread whose values
        are not a JSON object never matches a non-empty ``values`` filter); ``ids``:
        only these threads (an empty list matches none)."""

    @abc.abstractmethod
    def count_threads(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: str | None = None,
    ) -> int: ...

    @abc.abstractmethod
    def set_thread_state(
        self,
        thread_id: str,
        *,
        status: str,
        values: Any = UNSET,
        interrupts: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record a thread's new status (workers call this when a run starts and ends)
        and bump ``updated_at``. ``values`` stays as it is unless given (None stores
        None); ``interrupts`` and ``error`` are replaced (None clears them). False when
        the thread has no record (threads not made through the API)."""

    @abc.abstractmethod
    def ensure_thread(self, thread_id: str, *, metadata: dict[str, Any] | None = None) -> Thread:
        """The thread's record, created (``idle``, with ``metadata``) if missing."""

    # --- crons ---------------------------------------------------------------------
    @abc.abstractmethod
    def put_cron(self, c: Cron) -> Cron:
        """Create ``c`` (the store sets its times); ConflictError if the id exists."""

    @abc.abstractmethod
    def get_cron(self, cron_id: str) -> Cron | None: ...

    @abc.abstractmethod
    def patch_cron(
        self,
        cron_id: str,
        *,
        schedule: str | None = None,
        payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        end_time: float | None | Unset = UNSET,
        enabled: bool | None = None,
        next_run_at: float | None | Unset = UNSET,
    ) -> Cron | None:
        """Change the given fields and bump ``updated_at``; None for an unknown id.
        ``metadata`` is merged; ``end_time`` / ``next_run_at`` may be set to None."""

    @abc.abstractmethod
    def delete_cron(self, cron_id: str) -> bool: ...

    @abc.abstractmethod
    def delete_crons_of_thread(self, thread_id: str) -> int:
        """Delete the crons bound to ``thread_id``; return how many."""

    @abc.abstractmethod
    def search_crons(
        self,
        *,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        enabled: bool | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> list[Cron]: ...

    @abc.abstractmethod
    def count_crons(self, *, assistant_id: str | None = None, thread_id: str | None = None) -> int: ...

    @abc.abstractmethod
    def due_crons(self, now: float, limit: int = 100) -> list[Cron]:
        """Enabled crons with ``next_run_at <= now``, earliest tick first."""

    @abc.abstractmethod
    def advance_cron(self, cron_id: str, expected_next: float, new_next: float | None) -> bool:
        """Move an enabled cron's ``next_run_at`` from ``expected_next`` to ``new_next``
        (None: no more ticks, and the cron is disabled). Compare-and-set: of callers
        racing for one tick, exactly one gets True and should fire it."""
