"""Checkpoints: LangGraph's saved states, their channel blobs and pending writes, and the
fencing of the threads they belong to — written once over the connector.

Writes go through the store's group committer (:mod:`~treadle.store.writer`) as the
operations below; each driver applies a batch of them in one transaction
(``apply_batch``), deciding fencing per operation. Reads and maintenance are named queries
(section "checkpoints and fencing" of ``sql/<dialect>.sql``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from treadle.errors import ConfigError
from treadle.store import chunked
from treadle.store.connector import Connector, Row, Sql, Tx

__all__ = [
    "BlobRow",
    "CheckpointRecord",
    "CheckpointRow",
    "CheckpointStore",
    "ClaimThread",
    "ClaimThreadNow",
    "PutCheckpoint",
    "PutWrites",
    "ThreadInfo",
    "WriteOp",
    "WriteRow",
    "metadata_json",
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
    # The chunk rows its chunked values name (store/chunked.py): channel -> version -> row.
    chunks: dict[str, dict[str, tuple[str, bytes | None]]] = field(default_factory=dict)


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


# A JSON ``\u0000`` escape not preceded by another backslash.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def metadata_json(text: str) -> str:
    """JSON text without NUL characters (``\\u0000`` escapes), as the metadata column and
    its filters hold it: the column only serves filtering (``metadata_blob`` is the real
    value), and PostgreSQL's jsonb cannot hold NUL (LangGraph's PostgresSaver drops it too)."""
    return _JSON_NUL.sub(r"\1", text) if "\\u0000" in text else text


def _record(row: Row, blobs: list[Row], writes: list[Row]) -> CheckpointRecord:
    return CheckpointRecord(
        CheckpointRow(*row),
        [BlobRow(*b) for b in blobs],
        [WriteRow(task_id=w[0], idx=w[1], channel=w[2], type=w[3], blob=w[4], task_path=w[5])
         for w in writes],
    )


class CheckpointStore:
    """Checkpoint reads and maintenance, over ``self.db``."""

    db: Connector

    # --- reads -----------------------------------------------------------------------
    def _read_checkpoints(self, doing: str, where: list[tuple[str, Sequence[Any]]],
                          limit: int | None) -> list[CheckpointRecord]:
        """The checkpoints meeting the ``where`` fragments (name, params), newest first,
        each with its blobs and pending writes (one query on PostgreSQL)."""
        sql = self.db.sql("checkpoints_select")
        if where:
            sql += " WHERE " + " AND ".join(self.db.sql(name) for name, _ in where)
        sql += " " + self.db.sql("checkpoints_order")
        params = [p for _, values in where for p in values]
        if limit is not None:
            sql += " " + self.db.sql("checkpoints_limit")
            params.append(int(limit))
        sql += "\n" + self.db.sql("checkpoints_tail")
        records = [_record(*r) for r in self.db.read_checkpoints(doing, Sql(sql), params)]
        self._attach_chunks(doing, records)
        return records

    def _attach_chunks(self, doing: str, records: list[CheckpointRecord]) -> None:
        """Read the chunk rows the records' chunked values name: one query per (thread,
        namespace, channel)."""
        wanted: dict[tuple[str, str, str], set[str]] = {}
        for rec in records:
            for b in rec.blobs:
                if b.type.startswith(chunked.TYPE_PREFIX):
                    key = (rec.row.thread_id, rec.row.checkpoint_ns, b.channel)
                    wanted.setdefault(key, set()).update(chunked.chunk_ids(b.blob))
        for (thread_id, ns, channel), versions in wanted.items():
            rows = self.db.all(doing, "checkpoint_chunks", (thread_id, ns, channel, sorted(versions)))
            found = {str(r[0]): (str(r[1]), r[2]) for r in rows}
            for rec in records:
                if rec.row.thread_id == thread_id and rec.row.checkpoint_ns == ns:
                    rec.chunks[channel] = found

    def get_checkpoint(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRecord | None:
        where: list[tuple[str, Sequence[Any]]] = [
            ("checkpoint_where_thread", (thread_id,)), ("checkpoint_where_ns", (checkpoint_ns,))]
        if checkpoint_id:
            where.append(("checkpoint_where_id", (checkpoint_id,)))
        found = self._read_checkpoints("reading a checkpoint", where, 1)
        return found[0] if found else None

    def list_checkpoints(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        filter: dict[str, Any] | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointRecord]:
        """Checkpoints newest first. ``filter``: metadata keys with equal values (a None
        value matches a null or missing key)."""
        where: list[tuple[str, Sequence[Any]]] = []
        if thread_id is not None:
            where.append(("checkpoint_where_thread", (thread_id,)))
        if checkpoint_ns is not None:
            where.append(("checkpoint_where_ns", (checkpoint_ns,)))
        if before is not None:
            where.append(("checkpoint_where_before", (before,)))
        for key, value in (filter or {}).items():
            if value is None:
                where.append(("checkpoint_where_metadata_null", (str(key),)))
            else:
                value_json = metadata_json(json.dumps(value, default=str))
                where.append(("checkpoint_where_metadata", (str(key), value_json)))
        yield from self._read_checkpoints("listing checkpoints", where, limit)

    def list_threads(self, limit: int = 50) -> list[ThreadInfo]:
        return [ThreadInfo(*r) for r in self.db.all("listing threads", "threads_list", (limit,))]

    def thread_epoch(self, thread_id: str) -> int:
        row = self.db.one("reading a thread epoch", "thread_epoch", (thread_id,))
        return int(row[0]) if row else 0

    # --- maintenance ---------------------------------------------------------------------
    def _maintain(self, doing: str, names: Sequence[str], *params: Any) -> None:
        """The statements ``names``, each with ``params``, in one transaction."""

        def run(tx: Tx) -> None:
            for name in names:
                tx.execute(name, params)

        self.db.transact(doing, run)

    def _delete_threads(self, thread_ids: list[str]) -> None:
        if thread_ids:
            self._maintain("deleting threads", ("threads_fence", "threads_delete_writes",
                                                "threads_delete_blobs", "threads_delete_checkpoints"),
                           thread_ids)

    def delete_thread(self, thread_id: str) -> None:
        """Delete the thread's checkpoints; its epoch rises, fencing a writer still on it."""
        self._delete_threads([thread_id])

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        ids = [str(r) for r in run_ids]
        if ids:
            self._maintain("deleting runs", ("runs_delete_writes", "runs_delete_checkpoints"), ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        def run(tx: Tx) -> None:
            tx.execute("thread_copy_row", (target_thread_id,))
            for name in ("thread_copy_checkpoints", "thread_copy_blobs", "thread_copy_writes"):
                tx.execute(name, (target_thread_id, source_thread_id))

        self.db.transact("copying a thread", run)

    def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        """``keep_latest``: keep each namespace's newest checkpoint; ``delete``: all."""
        if strategy not in ("keep_latest", "delete"):
            raise ConfigError(f"unknown prune strategy {strategy!r} (use keep_latest or delete)")
        ids = [str(t) for t in thread_ids]
        if strategy == "delete":
            self._delete_threads(ids)
        elif ids:
            def run(tx: Tx) -> None:
                for name in ("threads_prune_checkpoints", "threads_prune_writes",
                             "threads_prune_blobs"):
                    tx.execute(name, (ids,))
                _drop_unreferenced_chunks(tx, ids)

            self.db.transact("pruning threads", run)


def _drop_unreferenced_chunks(tx: Tx, thread_ids: list[str]) -> None:
    """Delete the chunk rows of ``thread_ids`` that no remaining value names (after a prune,
    which keeps every chunk row: their references are inside the values' rows)."""
    keep = {(str(t), str(ns), str(ch), version)
            for t, ns, ch, kind, blob in tx.all("threads_chunked_values", (thread_ids,))
            for version in chunked.referenced([(str(kind), blob)])}
    drop = [(t, ns, ch, v) for t, ns, ch, v in
            ((str(r[0]), str(r[1]), str(r[2]), str(r[3]))
             for r in tx.all("threads_chunk_rows", (thread_ids,)))
            if (t, ns, ch, v) not in keep]
    if drop:
        tx.many("chunk_delete", drop)
