"""The SQLite group-commit batch: fencing decided in Python, rows written in bulk.

Fencing is decided per operation, in order (a claim counts for the operations after it);
the rows of the accepted operations are then written with one multi-row statement per
kind, which keeps a large batch (a fan-out's task writes) cheap. The outcome equals
applying them one by one: keep-first writes go before replacing ones, and a replacing
write wins either way. The statements are the ``sqlite_*`` ones of ``sql/sqlite.sql``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from treadle.errors import FencedWriteError, StoreError
from treadle.store.checkpoints import ClaimThread, PutCheckpoint, PutWrites, WriteOp, metadata_json

__all__ = ["apply_ops"]

# Rows per statement: far below SQLite's 32,766 bound variables at 11 columns.
_CHUNK = 500

Owners = dict[str, tuple[int, str | None]]


def apply_ops(conn: sqlite3.Connection, queries: Mapping[str, str], ops: list[WriteOp]) -> list[Any]:
    """Apply ``ops`` on ``conn``, inside the transaction the caller opened."""
    owners: Owners = {}
    rows = _Rows()
    results = [_accept(conn, queries, op, owners, rows) for op in ops]
    rows.write(conn, queries)
    return results


def _accept(conn: sqlite3.Connection, q: Mapping[str, str], op: WriteOp, owners: Owners,
            rows: _Rows) -> Any:
    if isinstance(op, ClaimThread):
        if op.run_id is not None and conn.execute(
            q["sqlite_run_holds_claim"], (op.run_id, op.run_epoch)
        ).fetchone() is None:
            # The run's lease was taken over: the thread keeps its owner.
            return FencedWriteError(op.thread_id, _owner(conn, q, op.thread_id, owners)[0])
        (epoch,) = conn.execute(q["sqlite_claim_thread"], (op.thread_id, op.token)).fetchone()
        owners[op.thread_id] = (epoch, op.token)
        return epoch
    if op.token is not None:
        current = _owner(conn, q, op.thread_id, owners)
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
             metadata_json(r.metadata))
        )
        return None
    if isinstance(op, PutWrites):
        (rows.replace if op.upsert else rows.keep).extend(
            (op.thread_id, op.checkpoint_ns, op.checkpoint_id, w.task_id, w.idx, w.channel,
             w.type, w.blob, w.task_path) for w in op.rows
        )
        return None
    raise StoreError(f"unknown store operation {type(op).__name__}")


def _owner(conn: sqlite3.Connection, q: Mapping[str, str], thread_id: str,
           owners: Owners) -> tuple[int, str | None]:
    """The thread's (epoch, owner token) as of this point of the batch."""
    current = owners.get(thread_id)
    if current is None:
        row = conn.execute(q["sqlite_thread_owner"], (thread_id,)).fetchone()
        current = owners[thread_id] = (row[0], row[1]) if row else (0, None)
    return current


class _Rows:
    """The rows of one batch's accepted operations, grouped by statement."""

    __slots__ = ("blobs", "checkpoints", "keep", "replace", "threads")

    def __init__(self) -> None:
        self.threads: list[tuple[Any, ...]] = []
        self.blobs: list[tuple[Any, ...]] = []
        self.checkpoints: list[tuple[Any, ...]] = []
        self.keep: list[tuple[Any, ...]] = []
        self.replace: list[tuple[Any, ...]] = []

    def write(self, conn: sqlite3.Connection, q: Mapping[str, str]) -> None:
        for head, group, batch in (
            ("sqlite_touch_threads", "(?, 0)", self.threads),
            ("sqlite_put_blobs", _group(6), self.blobs),
            ("sqlite_put_checkpoints", _group(11), self.checkpoints),
            ("sqlite_put_writes_keep", _group(9), self.keep),
            ("sqlite_put_writes_replace", _group(9), self.replace),
        ):
            for start in range(0, len(batch), _CHUNK):
                chunk = batch[start : start + _CHUNK]
                conn.execute(q[head] + " " + ", ".join([group] * len(chunk)),
                             [v for row in chunk for v in row])


def _group(columns: int) -> str:
    """``(?, ?, ...)``: one row's placeholders."""
    return "(" + ", ".join("?" * columns) + ")"
