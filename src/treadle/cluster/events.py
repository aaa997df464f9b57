"""A streaming run's chunks in the store: written by its worker, read by its caller.

Each chunk is one event (kind ``chunk``) encoded with the run codec; an attempt that
runs to the end closes its stream with an ``END`` event. msgpack has no tuple, so a
chunk records which parts were tuples (``(mode, data)``, ``(namespace, mode, data)``)
and the reader restores them: a follower sees what a local ``stream`` yields.
"""

from __future__ import annotations

import asyncio
from typing import Any

from treadle.cluster.codec import decode, encode
from treadle.cluster.notify import notifier_for
from treadle.errors import FencedWriteError, InputError
from treadle.store import Store
from treadle.store.queue import CHANNEL_EVENTS, Event

__all__ = ["END", "EventWriter", "decode_chunk"]

END = "__end__"  # kind of the event closing a run attempt's stream


_TASK_MODES = frozenset({"debug", "tasks", "checkpoints"})  # their tasks carry "error"


def _masked_errors(value: Any) -> Any:
    """``value`` with each task's ``error`` (the text of a node's exception) made text
    with its secrets masked, as the run's own error is (cluster.attempt.clean_error)."""
    if isinstance(value, dict):
        return {k: _masked_error(v) if k == "error" else _masked_errors(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_masked_errors(v) for v in value]
    return value


def _masked_error(error: Any) -> Any:
    from treadle.jsonable import to_json
    from treadle.redaction import redact

    text = to_json(error) if isinstance(error, BaseException) else error
    return redact(text) if isinstance(text, str) else _masked_errors(text)


def _encode_chunk(chunk: Any) -> bytes:
    if isinstance(chunk, tuple) and len(chunk) >= 2 and chunk[-2] in _TASK_MODES:
        chunk = (*chunk[:-1], _masked_errors(chunk[-1]))
    is_tuple = isinstance(chunk, tuple)
    ns = is_tuple and bool(chunk) and isinstance(chunk[0], tuple)
    try:
        return encode({"c": chunk, "t": is_tuple, "ns": ns})
    except InputError:
        # Payloads of the debug / tasks / checkpoints modes carry the run's config,
        # which holds runtime objects (the execution, pools): record them as JSON.
        from treadle.jsonable import to_json

        if is_tuple:
            chunk = (*chunk[:-1], to_json(chunk[-1]))
        else:
            chunk = to_json(chunk)
        return encode({"c": chunk, "t": is_tuple, "ns": ns})


def decode_chunk(data: bytes) -> Any:
    doc = decode(data)
    chunk = doc["c"]
    if doc.get("t"):
        chunk = tuple(chunk)
        if doc.get("ns"):
            chunk = (tuple(chunk[0]), *chunk[1:])
    return chunk


class EventWriter:
    """Appends a run attempt's chunks, coalescing them into batches, fenced by its epoch."""

    def __init__(self, store: Store, run_id: str, epoch: int, thread_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.epoch = epoch
        self.thread_id = thread_id
        self.seq = 0
        self.buffer: list[Event] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A resumed attempt continues after the events its predecessors wrote.
        last = await asyncio.to_thread(self.store.read_events, self.run_id, 0, 1_000_000)
        self.seq = last[-1].seq if last else 0

    def add(self, chunk: Any) -> None:
        self.seq += 1
        self.buffer.append(Event(self.seq, "chunk", _encode_chunk(chunk)))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write())

    def add_end(self) -> None:
        self.seq += 1
        self.buffer.append(Event(self.seq, END, b""))

    async def _write(self) -> None:
        while self.buffer:
            batch, self.buffer = self.buffer, []
            ok = await asyncio.to_thread(self.store.put_events, self.run_id, self.epoch, batch)
            if not ok:
                raise FencedWriteError(self.thread_id, self.epoch)
            notifier_for(self.store).emit(CHANNEL_EVENTS, self.run_id)

    async def flush(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)
        await self._write()
