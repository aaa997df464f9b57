"""SQLite backend: the embedded default, one file, nothing to start.

WAL mode lets readers run beside the single writer; ``synchronous=FULL`` (the
default, override with ``?synchronous=NORMAL`` in the URL) makes every commit
survive power loss, not just a process crash. Several processes may share one
file: writes take SQLite's write lock (``BEGIN IMMEDIATE``) and wait up to
``busy_timeout`` for it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from treadle.errors import ConfigError, FencedWriteError, StoreError, StoreUnavailableError
from treadle.store import sqlite_queries as q
from treadle.store.base import (
    BlobRow,
    CheckpointRecord,
    CheckpointRow,
    ClaimThread,
    PutCheckpoint,
    PutWrites,
    Store,
    ThreadInfo,
    WriteOp,
    WriteRow,
)
from treadle.store.drivers.sqlite import SqliteConnector, is_data_error, sqlite_path
from treadle.store.migrate import check, load_migrations, select
from treadle.store.writer import GroupCommitter

__all__ = ["SqliteStore", "sqlite_path"]

class SqliteStore(Store):
    db: SqliteConnector

    def __init__(self, url: str, *, linger: float = 0.002, auto_migrate: bool = True) -> None:
        self.url = url
        self.db = SqliteConnector(url)
        self.path = self.db.path
        self._write_lock = self.db.write_lock
        self._closed = False
        if auto_migrate:
            self.migrate()
        self._committer: GroupCommitter[sqlite3.Connection] = GroupCommitter(
            self._connect, self._apply, lambda c: c.close(), linger=linger,
            name=f"treadle-sqlite-writer:{self.path.name}",
        )

    # --- connections (the connector's) -------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        return self.db.connect()

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("the store is closed")
        return self.db.reader()

    # --- writes ------------------------------------------------------------------
    def submit(self, op: WriteOp) -> Any:
        return self._committer.submit(op)

    def submit_async(self, op: WriteOp) -> Any:
        return self._committer.submit_async(op)

    def apply(self, op: WriteOp) -> Any:
        return self._committer.call(op)

    def _apply(self, conn: sqlite3.Connection, ops: list[WriteOp]) -> list[Any]:
        """Apply ``ops`` in one transaction.

        Fencing is decided per operation, in order (a claim counts for the operations
        after it); the rows of the accepted operations are then written with one
        ``executemany`` per statement, which keeps a large batch (a fan-out's task
        writes) cheap. The outcome equals applying them one by one: keep-first writes
        go before replacing ones, and a replacing write wins either way.
        """
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"cannot lock SQLite store {self.path}: {exc}") from exc
            try:
                owners: dict[str, tuple[int, str | None]] = {}
                rows = _Rows()
                results = [self._accept(conn, op, owners, rows) for op in ops]
                rows.write(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                conn.execute("ROLLBACK")
                if is_data_error(exc):
                    raise self.db.error("writing", exc) from exc
                raise
            return results

    def _accept(
        self,
        conn: sqlite3.Connection,
        op: WriteOp,
        owners: dict[str, tuple[int, str | None]],
        rows: _Rows,
    ) -> Any:
        if isinstance(op, ClaimThread):
            if op.run_id is not None and conn.execute(
                q.RUN_HOLDS_CLAIM, (op.run_id, op.run_epoch)
            ).fetchone() is None:
                # The run's lease was taken over: the thread keeps its owner.
                return FencedWriteError(op.thread_id, _owner(conn, op.thread_id, owners)[0])
            (epoch,) = conn.execute(q.CLAIM_THREAD, (op.thread_id, op.token)).fetchone()
            owners[op.thread_id] = (epoch, op.token)
            return epoch
        if op.token is not None:
            current = _owner(conn, op.thread_id, owners)
            if op.token != current[1]:
                return FencedWriteError(op.thread_id, current[0])
        if isinstance(op, PutCheckpoint):
            r = op.row
            rows.threads.append((r.thread_id,))
            rows.blobs += [
                (r.thread_id, r.checkpoint_ns, b.channel, b.version, b.type, b.blob) for b in op.blobs
            ]
            rows.checkpoints.append(
                (r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.parent_checkpoint_id, r.run_id,
                 r.type, r.checkpoint, r.channel_versions, r.metadata_type, r.metadata_blob,
                 r.metadata)
            )
            return None
        if isinstance(op, PutWrites):
            (rows.replace if op.upsert else rows.keep).extend(
                (op.thread_id, op.checkpoint_ns, op.checkpoint_id, w.task_id, w.idx, w.channel,
                 w.type, w.blob, w.task_path) for w in op.rows
            )
            return None
        raise StoreError(f"unknown store operation {type(op).__name__}")

    # --- reads -------------------------------------------------------------------
    def _record(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> CheckpointRecord:
        cp = CheckpointRow(*row)
        blobs = [
            BlobRow(*b)
            for b in conn.execute(q.GET_BLOBS, (cp.channel_versions, cp.thread_id, cp.checkpoint_ns))
        ]
        writes = [
            WriteRow(task_id=w[0], idx=w[1], channel=w[2], type=w[3], blob=w[4], task_path=w[5])
            for w in conn.execute(q.GET_WRITES, (cp.thread_id, cp.checkpoint_ns, cp.checkpoint_id))
        ]
        return CheckpointRecord(cp, blobs, writes)

    def get_checkpoint(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRecord | None:
        conn = self._reader()
        try:
            if checkpoint_id:
                row = conn.execute(
                    q.GET_CHECKPOINT_BY_ID, (thread_id, checkpoint_ns, checkpoint_id)
                ).fetchone()
            else:
                row = conn.execute(q.GET_LATEST_CHECKPOINT, (thread_id, checkpoint_ns)).fetchone()
            return self._record(conn, row) if row else None
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from exc

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
        for key, value in (filter or {}).items():
            where.append(q.LIST_WHERE_METADATA)
            params += ["$." + json.dumps(str(key)), json.dumps(value, default=str)]
        sql = q.LIST_CHECKPOINTS
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += q.LIST_ORDER
        if limit is not None:
            sql += q.LIST_LIMIT
            params.append(int(limit))
        conn = self._reader()
        rows = conn.execute(sql, params).fetchall()
        for row in rows:
            yield self._record(conn, row)

    def list_threads(self, limit: int = 50) -> list[ThreadInfo]:
        return [ThreadInfo(*r) for r in self._reader().execute(q.LIST_THREADS, (limit,))]

    def thread_epoch(self, thread_id: str) -> int:
        row = self._reader().execute(q.THREAD_EPOCH, (thread_id,)).fetchone()
        return row[0] if row else 0

    # --- maintenance ---------------------------------------------------------------
    def _write_tx(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self._write_lock:
            conn = self._reader()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def delete_thread(self, thread_id: str) -> None:
        self._write_tx([
            (q.FENCE_THREAD, (thread_id,)),
            (q.DELETE_THREAD_WRITES, (thread_id,)),
            (q.DELETE_THREAD_BLOBS, (thread_id,)),
            (q.DELETE_THREAD_CHECKPOINTS, (thread_id,)),
        ])

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        stmts: list[tuple[str, tuple[Any, ...]]] = []
        for run_id in run_ids:
            stmts += [(q.DELETE_RUN_WRITES, (run_id,)), (q.DELETE_RUN_CHECKPOINTS, (run_id,))]
        if stmts:
            self._write_tx(stmts)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        pair = (target_thread_id, source_thread_id)
        self._write_tx([
            (q.COPY_THREAD_ROW, (target_thread_id,)),
            (q.COPY_CHECKPOINTS, pair),
            (q.COPY_BLOBS, pair),
            (q.COPY_WRITES, pair),
        ])

    def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ConfigError(f"unknown prune strategy {strategy!r} (use keep_latest or delete)")
        if strategy == "delete":
            for tid in thread_ids:
                self.delete_thread(tid)
            return
        stmts: list[tuple[str, tuple[Any, ...]]] = []
        for tid in thread_ids:
            stmts += [(q.PRUNE_CHECKPOINTS, (tid,)), (q.PRUNE_WRITES, (tid,)), (q.PRUNE_BLOBS, (tid,))]
        if stmts:
            self._write_tx(stmts)

    def migrate(self, phase: str = "all") -> list[str]:
        known = load_migrations("sqlite")
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(q.CREATE_MIGRATIONS)
                applied = {r[0] for r in conn.execute(q.APPLIED_MIGRATIONS)}
                todo = select(applied, known, phase, url=self.url)
                for m in todo:
                    for statement in _statements(m.sql):
                        conn.execute(statement)
                    conn.execute(q.RECORD_MIGRATION, (m.version, m.name))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"migrating {self.path} failed: {exc}") from exc
        finally:
            conn.close()
        return [m.name for m in todo]

    def check_schema(self) -> None:
        try:
            applied = {r[0]: r[1] for r in self._reader().execute(q.APPLIED_MIGRATIONS)}
        except sqlite3.OperationalError:
            applied = {}
        check(applied, load_migrations("sqlite"), url=self.url)

    def schema_version(self) -> int:
        try:
            row = self._reader().execute("SELECT max(version) FROM treadle_migrations").fetchone()
        except sqlite3.OperationalError:
            return 0
        return row[0] or 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._committer.close()
        self.db.close()


def _owner(
    conn: sqlite3.Connection, thread_id: str, owners: dict[str, tuple[int, str | None]]
) -> tuple[int, str | None]:
    """The thread's (epoch, owner token) as of this point of the batch."""
    current = owners.get(thread_id)
    if current is None:
        row = conn.execute(q.THREAD_OWNER, (thread_id,)).fetchone()
        current = owners[thread_id] = (row[0], row[1]) if row else (0, None)
    return current


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (no semicolons inside our DDL)."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


class _Rows:
    """The rows of one batch's accepted operations, grouped by statement."""

    __slots__ = ("blobs", "checkpoints", "keep", "replace", "threads")

    def __init__(self) -> None:
        self.threads: list[tuple[Any, ...]] = []
        self.blobs: list[tuple[Any, ...]] = []
        self.checkpoints: list[tuple[Any, ...]] = []
        self.keep: list[tuple[Any, ...]] = []
        self.replace: list[tuple[Any, ...]] = []

    def write(self, conn: sqlite3.Connection) -> None:
        for head, width, batch in (
            (q.TOUCH_THREADS_HEAD, 0, self.threads),
            (q.UPSERT_BLOBS_HEAD, 6, self.blobs),
            (q.UPSERT_CHECKPOINTS_HEAD, 11, self.checkpoints),
            (q.INSERT_WRITES_KEEP_HEAD, 9, self.keep),
            (q.INSERT_WRITES_REPLACE_HEAD, 9, self.replace),
        ):
            for start in range(0, len(batch), _CHUNK):
                chunk = batch[start : start + _CHUNK]
                groups = (
                    ", ".join([q.TOUCH_THREADS_ROW] * len(chunk)) if width == 0
                    else q.values(len(chunk), width)
                )
                conn.execute(head + groups, [v for row in chunk for v in row])


# Rows per statement: far below SQLite's 32,766 bound variables at 11 columns.
_CHUNK = 500
