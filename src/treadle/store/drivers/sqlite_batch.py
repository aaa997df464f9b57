"""The SQLite group-commit batch: fencing decided in Python, rows written in bulk.

Fencing is decided per operation, in order (a claim counts for the operations after it);
the rows of the accepted operations are then written with one multi-row statement per
kind (:meth:`SqliteTx.many <treadle.store.drivers.sqlite.SqliteTx.many>`), which keeps a
large batch (a fan-out's task writes) cheap. The outcome equals applying them one by one:
keep-first writes go before replacing ones, and a replacing write wins either way. The
statements are the ``sqlite_*`` ones of ``sql/sqlite.sql``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from treadle.errors import FencedWriteError, StoreError
from treadle.store.checkpoints import ClaimThread, PutCheckpoint, PutWrites, WriteOp, metadata_json

if TYPE_CHECKING:
    from treadle.store.connector import Tx

__all__ = ["apply_ops"]

Owners = dict[str, tuple[int, str | None]]
# The insert statements, in the order they run.
_STATEMENTS = ("sqlite_touch_threads", "sqlite_put_blobs", "sqlite_put_checkpoints",
               "sqlite_put_writes_keep", "sqlite_put_writes_replace")


def apply_ops(tx: Tx, ops: list[WriteOp]) -> list[Any]:
    """Apply ``ops`` through ``tx``, inside the transaction the caller opened."""
    owners: Owners = {}
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _STATEMENTS}
    results = [_accept(tx, op, owners, rows) for op in ops]
    for name, batch in rows.items():
        if batch:
            tx.many(name, batch)
    return results


def _accept(tx: Tx, op: WriteOp, owners: Owners, rows: dict[str, list[tuple[Any, ...]]]) -> Any:
    if isinstance(op, ClaimThread):
        if op.run_id is not None and tx.one("sqlite_run_holds_claim",
                                            (op.run_id, op.run_epoch)) is None:
            # The run's lease was taken over: the thread keeps its owner.
            return FencedWriteError(op.thread_id, _owner(tx, op.thread_id, owners)[0])
        claimed = tx.one("sqlite_claim_thread", (op.thread_id, op.token))
        assert claimed is not None
        owners[op.thread_id] = (claimed[0], op.token)
        return claimed[0]
    if op.token is not None:
        current = _owner(tx, op.thread_id, owners)
        if op.token != current[1]:
            return FencedWriteError(op.thread_id, current[0])
    if isinstance(op, PutCheckpoint):
        r = op.row
        rows["sqlite_touch_threads"].append((r.thread_id, 0))
        rows["sqlite_put_blobs"] += [
            (r.thread_id, r.checkpoint_ns, b.channel, b.version, b.type, b.blob) for b in op.blobs
        ]
        rows["sqlite_put_checkpoints"].append(
            (r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.parent_checkpoint_id, r.run_id,
             r.type, r.checkpoint, r.channel_versions, r.metadata_type, r.metadata_blob,
             metadata_json(r.metadata))
        )
        return None
    if isinstance(op, PutWrites):
        rows["sqlite_put_writes_replace" if op.upsert else "sqlite_put_writes_keep"].extend(
            (op.thread_id, op.checkpoint_ns, op.checkpoint_id, w.task_id, w.idx, w.channel,
             w.type, w.blob, w.task_path) for w in op.rows
        )
        return None
    raise StoreError(f"unknown store operation {type(op).__name__}")


def _owner(tx: Tx, thread_id: str, owners: Owners) -> tuple[int, str | None]:
    """The thread's (epoch, owner token) as of this point of the batch."""
    current = owners.get(thread_id)
    if current is None:
        row = tx.one("sqlite_thread_owner", (thread_id,))
        current = owners[thread_id] = (row[0], row[1]) if row else (0, None)
    return current
