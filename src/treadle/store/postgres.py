"""PostgreSQL backend: for several processes or machines sharing one store.

Writes go through one :class:`~treadle.store.writer.GroupCommitter` per store, on a
dedicated autocommit connection. A whole batch is one statement,
``SELECT treadle_apply(batch)`` (the PL/pgSQL function of migrations 0002/0003): one round
trip and one transaction, whatever the batch holds; fencing is checked inside it.
Operations travel as JSON with bytes base64-encoded, both encoded in C — psycopg's
Python-level array adaptation cost more CPU per step than the commit itself.

Reads use a ``psycopg_pool.ConnectionPool``; a checkpoint with its blobs and pending
writes is one query. URL options and error classification are in
:mod:`treadle.store.postgres_options`. The run queue's methods come from
:class:`~treadle.store.run_records.RunStore` and :class:`~treadle.store.tasks.TaskStore`, the API
resources' from :class:`~treadle.store.resources.ResourceStore`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import psycopg
from psycopg.types.numeric import Int8

from treadle.errors import (
    ConfigError,
    StoreError,
    TreadleError,
)
from treadle.store import postgres_queries as q
from treadle.store.base import (
    BlobRow,
    CheckpointRecord,
    CheckpointRow,
    Store,
    ThreadInfo,
    WriteOp,
    WriteRow,
)
from treadle.store.drivers.postgres import PostgresConnector
from treadle.store.migrate import check, load_migrations, select
from treadle.store.postgres_batch import op_json, op_result
from treadle.store.postgres_buffers import RETIRE_AFTER, is_big
from treadle.store.postgres_options import (
    is_dead,
    metadata_json,
)
from treadle.store.urls import redact
from treadle.store.writer import GroupCommitter

__all__ = ["PostgresStore"]

T = TypeVar("T")


class PostgresStore(Store):
    db: PostgresConnector

    def __init__(self, url: str, *, linger: float = 0.002, auto_migrate: bool = True,
                 connect_timeout: float | None = None) -> None:
        if connect_timeout is None:
            from treadle.config import get_settings

            connect_timeout = get_settings().connect_timeout
        self.url = url
        self.db = PostgresConnector(url, connect_timeout=connect_timeout)
        self._where = self.db.where
        self._writer: psycopg.Connection[Any] | None = None
        self._committer: GroupCommitter[psycopg.Connection[Any]] | None = None
        self._closed = False
        self._writer_sent = 0  # the size of the last batch the writer sent
        try:
            # Connecting the writer first checks the server is there, fast and clearly.
            self._writer = self._connect()
            if auto_migrate:
                self.migrate()
            self.db.open_pool()
            self._committer = GroupCommitter(
                self._writer_connection,
                self._apply,
                self._close_conn,
                linger=linger,
                name=f"treadle-pg-writer:{self._where}",
                is_disconnect=self._is_disconnect,
                retire=self._retire,
            )
        except BaseException:
            self.close()
            raise

    # --- connections (the connector's) -------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        return self.db.connect()

    def _writer_connection(self) -> psycopg.Connection[Any]:
        # The connection opened by __init__ first, then fresh ones after a disconnect.
        conn = self._writer
        if conn is None or conn.closed:
            conn = self._writer = self._connect()
        return conn

    def _close_conn(self, conn: psycopg.Connection[Any]) -> None:
        if conn is self._writer:
            self._writer = None
        conn.close()

    def _is_disconnect(self, exc: BaseException) -> bool:
        cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
        if not isinstance(cause, (psycopg.OperationalError, psycopg.InterfaceError)):
            return False
        conn = self._writer
        return conn is None or conn.closed or conn.broken or is_dead(cause)

    def _retire(self, conn: psycopg.Connection[Any]) -> bool:
        """Close the writer after a batch of RETIRE_AFTER bytes or more."""
        sent, self._writer_sent = self._writer_sent, 0
        return sent >= RETIRE_AFTER

    def _translate(self, exc: psycopg.Error, doing: str) -> StoreError:
        return self.db.error(doing, exc)

    def _with_conn(self, doing: str, fn: Callable[[psycopg.Connection[Any]], T],
                   big: Callable[[T], bool] = lambda result: False) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        return self.db.with_conn(doing, fn, big)

    # --- writes ------------------------------------------------------------------
    def submit(self, op: WriteOp) -> Any:
        if self._committer is None:
            raise StoreError("the store is closed")
        return self._committer.submit(op)

    def submit_async(self, op: WriteOp) -> Any:
        if self._committer is None:
            raise StoreError("the store is closed")
        return self._committer.submit_async(op)

    def apply(self, op: WriteOp) -> Any:
        if self._committer is None:
            raise StoreError("the store is closed")
        return self._committer.call(op)

    def _apply(self, conn: psycopg.Connection[Any], ops: list[WriteOp]) -> list[Any]:
        """Apply ``ops`` with one call of ``treadle_apply``: one statement, so one
        transaction (autocommit) and one round trip, whatever the batch holds."""
        payload = json.dumps([op_json(op) for op in ops])  # before any I/O: may raise
        self._writer_sent = len(payload)
        try:
            (results,) = conn.execute(q.APPLY_BATCH, (payload,)).fetchone()  # type: ignore[misc]
        except psycopg.Error as exc:
            raise self._translate(exc, "writing") from exc
        return [op_result(op, r) for op, r in zip(ops, results, strict=True)]

    # --- reads -------------------------------------------------------------------
    @staticmethod
    def _record(row: Sequence[Any]) -> CheckpointRecord:
        cp = CheckpointRow(*row[:11])
        b_channels, b_versions, b_types, b_blobs = row[11:15]
        blobs = (
            [BlobRow(*b) for b in zip(b_channels, b_versions, b_types, b_blobs, strict=True)]
            if b_channels
            else []
        )
        w_tasks, w_idxs, w_channels, w_types, w_blobs, w_paths = row[15:21]
        writes = (
            [
                WriteRow(task_id=t, idx=i, channel=c, type=ty, blob=bl, task_path=p)
                for t, i, c, ty, bl, p in zip(
                    w_tasks, w_idxs, w_channels, w_types, w_blobs, w_paths, strict=True
                )
            ]
            if w_tasks
            else []
        )
        return CheckpointRecord(cp, blobs, writes)

    def get_checkpoint(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRecord | None:
        params: tuple[str, ...]
        if checkpoint_id:
            sql, params = q.GET_CHECKPOINT_BY_ID, (thread_id, checkpoint_ns, checkpoint_id)
        else:
            sql, params = q.GET_LATEST_CHECKPOINT, (thread_id, checkpoint_ns)
        row = self._with_conn(
            "reading a checkpoint", lambda conn: conn.execute(sql, params, binary=True).fetchone(),
            is_big)
        return self._record(row) if row else None

    def list_checkpoints(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        filter: dict[str, Any] | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointRecord]:
        where: list[str] = []
        params: list[Any] = []
        if thread_id is not None:
            where.append(q.LIST_WHERE_THREAD)
            params.append(thread_id)
        if checkpoint_ns is not None:
            where.append(q.LIST_WHERE_NS)
            params.append(checkpoint_ns)
        if before is not None:
            where.append(q.LIST_WHERE_BEFORE)
            params.append(before)
        if filter:
            present = {str(k): v for k, v in filter.items() if v is not None}
            if present:
                where.append(q.LIST_WHERE_METADATA)
                params.append(metadata_json(json.dumps(present, default=str)))
            for key, value in filter.items():
                if value is None:
                    where.append(q.LIST_WHERE_METADATA_NULL)
                    params.append(str(key))
        sql = q.LIST_HEAD
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += q.LIST_ORDER
        if limit is not None:
            sql += q.LIST_LIMIT
            params.append(Int8(int(limit)))
        sql += q.LIST_TAIL
        rows = self._with_conn(
            "listing checkpoints", lambda conn: conn.execute(sql, params, binary=True).fetchall(),
            is_big)
        for row in rows:
            yield self._record(row)

    def list_threads(self, limit: int = 50) -> list[ThreadInfo]:
        rows = self._with_conn(
            "listing threads", lambda conn: conn.execute(q.LIST_THREADS, (Int8(limit),)).fetchall()
        )
        return [ThreadInfo(*r) for r in rows]

    def thread_epoch(self, thread_id: str) -> int:
        row = self._with_conn(
            "reading a thread epoch",
            lambda conn: conn.execute(q.THREAD_EPOCH, (thread_id,)).fetchone(),
        )
        return row[0] if row else 0

    # --- maintenance ---------------------------------------------------------------
    def _write_tx(self, doing: str, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                for sql, params in statements:
                    conn.execute(sql, params)

        self._with_conn(doing, run)

    def _delete_threads(self, thread_ids: list[str]) -> None:
        if not thread_ids:
            return
        self._write_tx("deleting threads", [
            (q.FENCE_THREADS, (thread_ids,)),
            (q.DELETE_THREADS_WRITES, (thread_ids,)),
            (q.DELETE_THREADS_BLOBS, (thread_ids,)),
            (q.DELETE_THREADS_CHECKPOINTS, (thread_ids,)),
        ])

    def delete_thread(self, thread_id: str) -> None:
        self._delete_threads([thread_id])

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        ids = [str(r) for r in run_ids]
        if ids:
            self._write_tx("deleting runs", [
                (q.DELETE_RUNS_WRITES, (ids,)),
                (q.DELETE_RUNS_CHECKPOINTS, (ids,)),
            ])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        pair = (target_thread_id, source_thread_id)
        self._write_tx("copying a thread", [
            (q.COPY_THREAD_ROW, (target_thread_id,)),
            (q.COPY_CHECKPOINTS, pair),
            (q.COPY_BLOBS, pair),
            (q.COPY_WRITES, pair),
        ])

    def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ConfigError(f"unknown prune strategy {strategy!r} (use keep_latest or delete)")
        ids = [str(t) for t in thread_ids]
        if not ids:
            return
        if strategy == "delete":
            self._delete_threads(ids)
            return
        self._write_tx("pruning threads", [
            (q.PRUNE_CHECKPOINTS, (ids,)),
            (q.PRUNE_WRITES, (ids,)),
            (q.PRUNE_BLOBS, (ids,)),
        ])

    def migrate(self, phase: str = "all") -> list[str]:
        known = load_migrations("postgres")
        conn = self._connect()
        try:
            with conn.transaction():
                # Concurrent migrate() calls (several pods starting) queue here; the
                # lock is released with the transaction.
                conn.execute(q.MIGRATION_LOCK, (q.MIGRATION_LOCK_KEY,), prepare=False)
                conn.execute(q.CREATE_MIGRATIONS, prepare=False)
                applied = {r[0] for r in conn.execute(q.APPLIED_MIGRATIONS, prepare=False)}
                todo = select(applied, known, phase, url=redact(self.url))
                for m in todo:
                    # No parameters: sent as a simple query, so a file may hold many statements.
                    conn.execute(m.sql.encode(), prepare=False)  # type: ignore[call-overload]
                    conn.execute(q.RECORD_MIGRATION, (m.version, m.name), prepare=False)
        except TreadleError:
            raise
        except psycopg.Error as exc:
            raise self._translate(exc, "migrating") from exc
        finally:
            conn.close()
        return [m.name for m in todo]

    def check_schema(self) -> None:
        def read(conn: psycopg.Connection[Any]) -> dict[int, str]:
            try:
                return {r[0]: r[1] for r in conn.execute(q.APPLIED_MIGRATIONS)}
            except psycopg.errors.UndefinedTable:
                return {}

        applied = self._with_conn("reading the applied migrations", read)
        check(applied, load_migrations("postgres"), url=redact(self.url))

    def schema_version(self) -> int:
        def read(conn: psycopg.Connection[Any]) -> int:
            try:
                # An aggregate query always returns exactly one row.
                return cast("tuple[int]", conn.execute(q.SCHEMA_VERSION).fetchone())[0]
            except psycopg.errors.UndefinedTable:
                return 0

        return self._with_conn("reading the schema version", read)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._committer is not None:
            self._committer.close()  # closes the writer connection
        elif self._writer is not None:
            self._writer.close()
        self._writer = None
        self.db.close()

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"
