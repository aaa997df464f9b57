"""The batch format of ``treadle_apply`` (PostgreSQL migrations 0002/0003/0012): each write
operation as one JSON document, bytes base64-encoded; and the per-operation results."""

from __future__ import annotations

from typing import Any

from treadle.errors import FencedWriteError, StoreError
from treadle.store.checkpoints import ClaimThread, PutCheckpoint, PutWrites, WriteOp, metadata_json
from treadle.store.drivers.postgres_options import b64

__all__ = ["op_json", "op_result"]


def op_json(op: WriteOp) -> dict[str, Any]:
    """One operation as ``treadle_apply`` reads it (bytes travel base64-encoded)."""
    if isinstance(op, ClaimThread):
        claim: dict[str, Any] = {"k": "claim", "thread_id": op.thread_id, "token": op.token}
        if op.run_id is not None:
            # A cluster run's claim: refused unless the run still runs under run_epoch.
            claim["run_id"] = op.run_id
            claim["run_epoch"] = op.run_epoch
        return claim
    if isinstance(op, PutCheckpoint):
        r = op.row
        doc: dict[str, Any] = {
            "k": "checkpoint",
            "thread_id": r.thread_id,
            "ns": r.checkpoint_ns,
            "id": r.checkpoint_id,
            "parent": r.parent_checkpoint_id,
            "run_id": r.run_id,
            "type": r.type,
            "checkpoint": b64(r.checkpoint),
            "versions": r.channel_versions,
            "metadata_type": r.metadata_type,
            "metadata_blob": b64(r.metadata_blob),
            "metadata": metadata_json(r.metadata),
            "blobs": [
                {"c": b.channel, "v": b.version, "t": b.type, "b": b64(b.blob)}
                for b in op.blobs
            ],
        }
    elif isinstance(op, PutWrites):
        rows = op.rows
        if op.upsert:
            # One statement may not update a row twice: the last write of a key wins,
            # as it does with SQLite's INSERT OR REPLACE.
            rows = list({(w.task_id, w.idx): w for w in rows}.values())
        doc = {
            "k": "writes",
            "thread_id": op.thread_id,
            "ns": op.checkpoint_ns,
            "id": op.checkpoint_id,
            "upsert": op.upsert,
            "rows": [
                {"k": w.task_id, "i": w.idx, "c": w.channel, "t": w.type,
                 "b": b64(w.blob), "p": w.task_path}
                for w in rows
            ],
        }
    else:
        raise StoreError(f"unknown store operation {type(op).__name__}")
    if op.token is not None:
        doc["token"] = op.token
    return doc

def op_result(op: WriteOp, result: Any) -> Any:
    """An operation's result as ``treadle_apply`` returned it: a refusal becomes its error."""
    if isinstance(result, dict) and "fenced" in result:
        return FencedWriteError(op.thread_id, int(result["fenced"]))
    return result
