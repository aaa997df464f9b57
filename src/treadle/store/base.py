"""The store protocol: what every backend (SQLite, PostgreSQL) provides.

A backend is synchronous; the checkpointer gives it async twins. Every write goes
through one :class:`~treadle.store.writer.GroupCommitter` per backend instance, so
concurrent writers share commits (group commit) and the fencing check runs inside
the same transaction as the write it guards.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from treadle.store.items import ItemStore
from treadle.store.resources import ResourceStore
from treadle.store.run_records import RunStore
from treadle.store.tasks import TaskStore

__all__ = [
    "BlobRow",
    "CheckpointRecord",
    "CheckpointRow",
    "ClaimThread",
    "ClaimThreadNow",
    "PutCheckpoint",
    "PutWrites",
    "Store",
    "ThreadInfo",
    "WriteOp",
    "WriteRow",
]


@dataclass(slots=True)
class CheckpointRow:
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    run_id: str | None
    type: str
    checkpoint: bytes
    channel_versions: str  # JSON object {channel: version-as-text}
    metadata_type: str
    metadata_blob: bytes
    metadata: str  # JSON, for filtering


@dataclass(slots=True)
class BlobRow:
    channel: str
    version: str
    type: str
    blob: bytes | None


@dataclass(slots=True)
class WriteRow:
    task_id: str
    idx: int
    channel: str
    type: str | None
    blob: bytes | None
    task_path: str = ""


@dataclass(slots=True)
class CheckpointRecord:
    """A checkpoint as read back: its row, the blobs it references, its pending writes."""

    row: CheckpointRow
    blobs: list[BlobRow]
    writes: list[WriteRow]


@dataclass(slots=True)
class ThreadInfo:
    thread_id: str
    epoch: int
    created_at: str
    updated_at: str
    checkpoints: int
    latest_checkpoint_id: str | None


# --- write operations, executed by the group committer -------------------------


@dataclass(slots=True)
class WriteOp:
    """Base of the operations a committer batches.

    ``token`` is the claim token of the execution that writes; None means unfenced.
    """

    thread_id: str
    token: str | None = field(default=None, kw_only=True)
    # Writes of a finished task may wait a little (``linger`` times this scale) to
    # share a commit with the checkpoint that follows them; scale 0 commits at once.
    linger_scale = 0.0


@dataclass(slots=True)
class ClaimThread(WriteOp):
    """Make ``token`` the thread's owner and raise its epoch; returns the new epoch.

    Writes carrying any other token are refused from this commit on. A claim may
    linger longer than task writes: the run's first checkpoint follows it as soon as
    LangGraph has read the thread, and sharing that commit saves one per execution.
    """

    linger_scale = 10.0
    # A cluster run's claim: refused (a FencedWriteError result) unless the run is
    # still ``running`` under ``run_epoch``, so a worker whose lease was taken over
    # can never take the thread back.
    run_id: str | None = field(default=None, kw_only=True)
    run_epoch: int | None = field(default=None, kw_only=True)


@dataclass(slots=True)
class ClaimThreadNow(ClaimThread):
    """A claim its caller waits for before anything else is written (a worker claims
    the thread before reading it): committing it at once, not lingering, is faster."""

    linger_scale = 0.0


@dataclass(slots=True)
class PutCheckpoint(WriteOp):
    row: CheckpointRow
    blobs: list[BlobRow]


@dataclass(slots=True)
class PutWrites(WriteOp):
    checkpoint_ns: str
    checkpoint_id: str
    rows: list[WriteRow]
    upsert: bool  # special channels replace; regular writes are kept as first written
    linger_scale = 1.0


class Store(RunStore, TaskStore, ResourceStore, ItemStore, abc.ABC):
    """A database holding treadle's durable state: checkpoints (here), the run queue
    (:class:`~treadle.store.run_records.RunStore`, :class:`~treadle.store.tasks.TaskStore`) and
    the API resources (:class:`~treadle.store.resources.ResourceStore`)."""

    url: str

    # writes (through the group committer) ----------------------------------
    @abc.abstractmethod
    def submit(self, op: WriteOp) -> Any:
        """Queue ``op``; return a concurrent.futures.Future of its result."""

    def submit_async(self, op: WriteOp) -> Any:
        """Queue ``op`` from a coroutine; returns an asyncio future of its result."""
        import asyncio

        return asyncio.wrap_future(self.submit(op))

    def apply(self, op: WriteOp) -> Any:
        """Commit ``op`` (grouped with concurrent writes) and return its result."""
        return self.submit(op).result()

    def claim_thread(self, thread_id: str, token: str) -> int:
        """Claim ``thread_id`` for the execution holding ``token``; wait for the commit."""
        return cast(int, self.apply(ClaimThread(thread_id, token=token)))

    def claim_thread_async(self, thread_id: str, token: str) -> Any:
        """Queue the claim without waiting: it commits before (or with) our next write."""
        return self.submit(ClaimThread(thread_id, token=token))

    # reads ------------------------------------------------------------------
    @abc.abstractmethod
    def get_checkpoint(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRecord | None: ...

    @abc.abstractmethod
    def list_checkpoints(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        filter: dict[str, Any] | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointRecord]: ...

    @abc.abstractmethod
    def list_threads(self, limit: int = 50) -> list[ThreadInfo]: ...

    @abc.abstractmethod
    def thread_epoch(self, thread_id: str) -> int: ...

    # maintenance --------------------------------------------------------------
    @abc.abstractmethod
    def delete_thread(self, thread_id: str) -> None: ...

    @abc.abstractmethod
    def delete_for_runs(self, run_ids: Sequence[str]) -> None: ...

    @abc.abstractmethod
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None: ...

    @abc.abstractmethod
    def prune(self, thread_ids: Sequence[str], strategy: str) -> None: ...

    @abc.abstractmethod
    def migrate(self, phase: str = "all") -> list[str]:
        """Apply pending migrations of ``phase`` (pre, post or all; see
        :mod:`treadle.store.migrate`); return the names applied."""

    @abc.abstractmethod
    def check_schema(self) -> None:
        """Raise :class:`~treadle.errors.SchemaError` unless this code can use the schema
        as it is (what a process that does not migrate checks on start)."""

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
