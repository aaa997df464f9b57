"""The store: one database (SQLite embedded, PostgreSQL for clusters) holding treadle's
durable state — checkpoints (:mod:`~treadle.store.checkpoints`), the run queue
(:mod:`~treadle.store.run_records`, :mod:`~treadle.store.task_records`), the API resources
(:mod:`~treadle.store.resources`, with thread TTLs: :mod:`~treadle.store.retention`), memory items (:mod:`~treadle.store.items`), the audit
log (:mod:`~treadle.store.audit_log`) and the built-in auth's API keys
(:mod:`~treadle.store.api_keys`) — each written once over a connector
(:mod:`~treadle.store.connector`).

A store is synchronous; the checkpointer gives it async twins. Every checkpoint write goes
through the store's one :class:`~treadle.store.writer.GroupCommitter`, so concurrent
writers share commits (group commit) and the fencing check runs inside the same
transaction as the write it guards.
"""

from __future__ import annotations

from typing import Any, cast

from treadle.store import migrate as migrations
from treadle.store.api_keys import ApiKeyStore
from treadle.store.audit_log import AuditLogStore
from treadle.store.checkpoints import CheckpointStore, ClaimThread, WriteOp
from treadle.store.connector import Connector
from treadle.store.encryption import PLAIN, AtRest
from treadle.store.items import ItemStore
from treadle.store.resources import ResourceStore
from treadle.store.retention import RetentionStore
from treadle.store.run_records import RunStore
from treadle.store.task_records import TaskStore
from treadle.store.urls import redact
from treadle.store.writer import GroupCommitter

__all__ = ["Store"]


class Store(CheckpointStore, RunStore, TaskStore, ResourceStore, ItemStore, AuditLogStore,
            ApiKeyStore, RetentionStore):
    """A database holding treadle's durable state, over the connector ``db``. Opening it
    connects (PostgreSQL: the writer, then the reader pool); it does not migrate."""

    def __init__(self, db: Connector, *, linger: float = 0.002, at_rest: AtRest = PLAIN) -> None:
        self.db = db
        self.at_rest = at_rest  # encryption at rest of every user value (store.encryption)
        self.url = db.url
        self._closed = False
        try:
            db.open()
            self._committer: GroupCommitter[Any] = GroupCommitter(
                db.writer, db.apply_batch, db.close_writer, linger=linger,
                name=db.writer_name, is_disconnect=db.is_disconnect, retire=db.retire,
            )
        except BaseException:
            db.close()
            raise

    # --- writes (through the group committer) ---------------------------------------------
    def submit(self, op: WriteOp) -> Any:
        """Queue ``op``; return a concurrent.futures.Future of its result."""
        return self._committer.submit(op)

    def submit_async(self, op: WriteOp) -> Any:
        """Queue ``op`` from a coroutine; returns an asyncio future of its result."""
        return self._committer.submit_async(op)

    def apply(self, op: WriteOp) -> Any:
        """Commit ``op`` (grouped with concurrent writes) and return its result."""
        return self._committer.call(op)

    def claim_thread(self, thread_id: str, token: str) -> int:
        """Claim ``thread_id`` for the execution holding ``token``; wait for the commit."""
        return cast(int, self.apply(ClaimThread(thread_id, token=token)))

    def claim_thread_async(self, thread_id: str, token: str) -> Any:
        """Queue the claim without waiting: it commits before (or with) our next write."""
        return self.submit(ClaimThread(thread_id, token=token))

    # --- schema (treadle.store.migrate) ---------------------------------------------------
    def migrate(self, phase: str = "all") -> list[str]:
        """Apply pending migrations of ``phase`` (pre, post or all; see
        :mod:`treadle.store.migrate`); return the names applied."""
        return migrations.migrate(self.db, phase)

    def check_schema(self) -> None:
        """Raise :class:`~treadle.errors.SchemaError` unless this code can use the schema
        as it is (what a process that does not migrate checks on start)."""
        migrations.check_schema(self.db)

    def schema_version(self) -> int:
        return migrations.schema_version(self.db)

    # --- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_audit()  # what is queued is written before the connections go
        self._committer.close()
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"
