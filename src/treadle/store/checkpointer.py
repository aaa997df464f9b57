"""treadle's LangGraph checkpointer: ``BaseCheckpointSaver`` over any treadle store.

Channel values are stored once per (channel, version) and shared by every
checkpoint that references them, so a long thread does not rewrite its whole state
at each step. Writes carrying a claim token (the run context's ``token``, see
treadle.run_context, set by the runtime for each execution of a thread) are refused
once another execution has claimed the thread; unfenced writes (direct saver use, time travel
from user code) are accepted as LangGraph's own savers accept them.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, cast

import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from treadle.run_context import fencing_token
from treadle.store import chunked, serde_policy
from treadle.store.base import Store
from treadle.store.checkpoints import (
    BlobRow,
    CheckpointRecord,
    CheckpointRow,
    PutCheckpoint,
    PutWrites,
    WriteRow,
)

__all__ = ["TreadleSaver"]


def _versions_json(versions: ChannelVersions) -> str:
    """The channel_versions column: {channel: version as text}, as JSON text."""
    doc = {k: str(v) for k, v in versions.items()}
    try:
        return orjson.dumps(doc).decode()
    except TypeError:  # what orjson refuses (a lone surrogate in a name): as before
        return json.dumps(doc)


class TreadleSaver(BaseCheckpointSaver[str]):
    """Checkpointer over a treadle :class:`~treadle.store.base.Store`, sync and async."""

    def __init__(self, store: Store, *, serde: SerializerProtocol | None = None) -> None:
        # The process's serializer (langgraph.json's allow-lists, serde_policy) unless one is
        # given (e.g. LangGraph's EncryptedSerializer); the store's encryption at rest seals
        # what it writes.
        inner = serde or serde_policy.serializer()
        super().__init__(serde=store.at_rest.serde(inner))
        self.store = store
        # Chunked lists: serialized in plaintext (so equal chunks hash alike), then sealed.
        self._plain = inner
        self._seal: Callable[[bytes], bytes] = (
            (lambda data: data) if self.serde is inner
            else (lambda data: store.at_rest.seal(data, "checkpoint", "blob")))
        self._chunks = chunked.ChunkCache()

    # --- versions ----------------------------------------------------------------
    def get_next_version(self, current: str | None, channel: None = None) -> str:  # type: ignore[override]
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(str(current).split(".")[0])
        # A random suffix keeps versions from two forks of a thread apart.
        return f"{current_v + 1:032}.{random.random():016}"

    # --- write -------------------------------------------------------------------
    def _put_op(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[PutCheckpoint, RunnableConfig]:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns") or ""
        values = checkpoint.get("channel_values") or {}
        blobs = self._blobs(thread_id, ns, values, new_versions, parent=conf.get("checkpoint_id"),
                            own=checkpoint["id"])
        stripped = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        stripped["channel_values"] = {}
        cp_type, cp_bytes = self.serde.dumps_typed(stripped)
        md = get_checkpoint_metadata(config, metadata)
        md_type, md_bytes = self.serde.dumps_typed(md)
        run_id = md.get("run_id")
        row = CheckpointRow(
            thread_id=thread_id,
            checkpoint_ns=ns,
            checkpoint_id=checkpoint["id"],
            parent_checkpoint_id=conf.get("checkpoint_id"),
            run_id=str(run_id) if run_id is not None else None,
            type=cp_type,
            checkpoint=cp_bytes,
            channel_versions=_versions_json(checkpoint.get("channel_versions", {})),
            metadata_type=md_type,
            metadata_blob=md_bytes,
            metadata=self._metadata_json(md),
        )
        next_config: RunnableConfig = {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}
        }
        return PutCheckpoint(thread_id, row=row, blobs=blobs, token=fencing_token(config)), next_config

    def _blobs(self, thread_id: str, ns: str, values: dict[str, Any],
               new_versions: ChannelVersions, *, parent: str | None, own: str) -> list[BlobRow]:
        """The rows of the channels' new versions: long lists chunked (store/chunked.py),
        reusing the chunks of ``parent``'s values when this process wrote or read it last."""
        blobs: list[BlobRow] = []
        written: dict[str, list[chunked.Chunk]] = {}
        for ch, ver in new_versions.items():
            written[ch] = []
            if ch not in values:
                blobs.append(BlobRow(ch, str(ver), "empty", None))
                continue
            value = values[ch]
            if type(value) is not list or len(value) < chunked.MIN_LENGTH:
                blobs.append(BlobRow(ch, str(ver), *self.serde.dumps_typed(value)))
                continue
            (kind, data), new_rows, written[ch] = chunked.encode(
                value, self._chunks.chunks((thread_id, ns), parent, ch), self._plain.dumps_typed,
                self._seal, self.serde.dumps_typed)
            blobs.extend(BlobRow(ch, version, k, b) for version, k, b in new_rows)
            blobs.append(BlobRow(ch, str(ver), kind, data))
        self._chunks.wrote((thread_id, ns), parent, own, written)
        return blobs

    def _values(self, rec: CheckpointRecord) -> dict[str, Any]:
        """The channel values of a checkpoint read back (chunked ones reassembled)."""
        out: dict[str, Any] = {}
        known: dict[str, list[chunked.Chunk]] = {}
        for b in rec.blobs:
            if b.type == "empty":
                continue
            if not b.type.startswith(chunked.TYPE_PREFIX):
                out[b.channel] = self.serde.loads_typed(cast("tuple[str, bytes]", (b.type, b.blob)))
                continue
            out[b.channel], known[b.channel] = chunked.decode(
                b.type, cast("bytes", b.blob), rec.chunks.get(b.channel, {}), self.serde.loads_typed)
        self._chunks.read((rec.row.thread_id, rec.row.checkpoint_ns), rec.row.checkpoint_id, known)
        return out

    def _metadata_json(self, md: CheckpointMetadata) -> str:
        """The metadata column (for filters): the chosen keys sealed when encryption is on."""
        text = json.dumps(md, default=str)
        at_rest = self.store.at_rest
        return text if not at_rest.enabled else json.dumps(
            at_rest.seal_metadata(json.loads(text), "checkpoint"))

    def _writes_op(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> PutWrites:
        conf = config["configurable"]
        rows = [
            WriteRow(
                task_id=task_id,
                idx=WRITES_IDX_MAP.get(channel, idx),
                channel=channel,
                type=(typed := self.serde.dumps_typed(value))[0],
                blob=typed[1],
                task_path=task_path,
            )
            for idx, (channel, value) in enumerate(writes)
        ]
        return PutWrites(
            str(conf["thread_id"]),
            checkpoint_ns=conf.get("checkpoint_ns") or "",
            checkpoint_id=conf["checkpoint_id"],
            rows=rows,
            upsert=all(w[0] in WRITES_IDX_MAP for w in writes),
            token=fencing_token(config),
        )

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        op, next_config = self._put_op(config, checkpoint, metadata, new_versions)
        self.store.apply(op)
        return next_config

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        op, next_config = self._put_op(config, checkpoint, metadata, new_versions)
        await self.store.submit_async(op)
        return next_config

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        if writes:
            self.store.apply(self._writes_op(config, writes, task_id, task_path))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        if writes:
            await self.store.submit_async(self._writes_op(config, writes, task_id, task_path))

    # --- read --------------------------------------------------------------------
    def _tuple(self, rec: CheckpointRecord) -> CheckpointTuple:
        row = rec.row
        checkpoint: Checkpoint = self.serde.loads_typed((row.type, row.checkpoint))
        # Blob columns are nullable (an "empty" channel, skipped here, stores no bytes);
        # the serde gets each row as stored.
        checkpoint["channel_values"] = self._values(rec)
        metadata = self.serde.loads_typed((row.metadata_type, row.metadata_blob))
        conf = {"thread_id": row.thread_id, "checkpoint_ns": row.checkpoint_ns}
        parent = (
            {"configurable": {**conf, "checkpoint_id": row.parent_checkpoint_id}}
            if row.parent_checkpoint_id
            else None
        )
        return CheckpointTuple(
            config={"configurable": {**conf, "checkpoint_id": row.checkpoint_id}},
            checkpoint=checkpoint,
            metadata=metadata,
            parent_config=parent,  # type: ignore[arg-type]
            pending_writes=[
                (w.task_id, w.channel, self.serde.loads_typed(cast("tuple[str, bytes]", (w.type, w.blob))))
                for w in rec.writes
            ],
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        rec = self.store.get_checkpoint(
            str(conf["thread_id"]), conf.get("checkpoint_ns") or "", conf.get("checkpoint_id")
        )
        return self._tuple(rec) if rec else None

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        conf = (config or {}).get("configurable", {})
        thread_id = conf.get("thread_id")
        ns = conf.get("checkpoint_ns")
        self.store.at_rest.check_filterable(filter or (), by_auth=False)  # sealed: no match
        for rec in self.store.list_checkpoints(
            str(thread_id) if thread_id is not None else None,
            ns,
            filter=filter,
            before=(before or {}).get("configurable", {}).get("checkpoint_id"),
            limit=limit,
        ):
            yield self._tuple(rec)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in items:
            yield item

    # --- maintenance ------------------------------------------------------------------
    def delete_thread(self, thread_id: str) -> None:
        self.store.delete_thread(str(thread_id))

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.store.delete_thread, str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.store.delete_for_runs([str(r) for r in run_ids])

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.store.copy_thread(str(source_thread_id), str(target_thread_id))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.store.prune([str(t) for t in thread_ids], strategy)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
