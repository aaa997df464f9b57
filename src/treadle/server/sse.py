"""Server-sent events for runs: recorded stream chunks -> LangGraph Platform SSE events.

Each recorded chunk has a sequence number in the store; it is the SSE ``id``. A client
that reconnects with ``Last-Event-ID: N`` receives every event after ``N`` (from the
store, so from any replica) and then the live tail. The first event of a fresh stream
is ``metadata`` (``{"run_id", "attempt"}``, id ``0``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from treadle import metrics
from treadle.cluster.events import decode_chunk
from treadle.cluster.watch import watch
from treadle.jsonable import dumps, to_json
from treadle.server.context import Ctx
from treadle.server.serialize import run_output
from treadle.store.queue import RunRow

__all__ = ["ChunkFormatter", "EventStream", "follow_run"]

Message = dict[str, Any]  # {"event": ..., "data": str, "id": str | None}


class EventStream(EventSourceResponse):
    """An SSE response, counted in ``treadle_stream_subscribers`` while it is open."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with metrics.STREAM_SUBSCRIBERS.track_inprogress():
            await super().__call__(scope, receive, send)


class ChunkFormatter:
    """Turns engine chunks into (event, data) pairs for the modes a client asked for."""

    def __init__(self, modes: list[str], subgraphs: bool) -> None:
        self.modes = set(modes)
        self.subgraphs = subgraphs
        self._seen_messages: set[str] = set()
        self._partial: dict[str, Any] = {}

    def format(self, chunk: Any) -> list[tuple[str, Any]]:
        if isinstance(chunk, tuple) and len(chunk) == 3:
            ns, mode, data = chunk
        elif isinstance(chunk, tuple) and len(chunk) == 2:
            ns, (mode, data) = (), chunk
        else:  # a single-mode stream
            ns, mode, data = (), "values", chunk
        suffix = ("|" + "|".join(ns)) if ns else ""
        out: list[tuple[str, Any]] = []
        if mode == "messages":
            msg, meta = data if isinstance(data, (tuple, list)) and len(data) == 2 else (data, {})
            if "messages-tuple" in self.modes:
                out.append(("messages" + suffix, [msg, meta]))
            if "messages" in self.modes:
                out.extend(self._messages(msg, meta, suffix))
            return out
        if mode in self.modes:
            out.append((mode + suffix, data))
        return out

    def _messages(self, msg: Any, meta: Any, suffix: str) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        msg_id = getattr(msg, "id", None) or ""
        if msg_id not in self._seen_messages:
            self._seen_messages.add(msg_id)
            out.append(("messages/metadata" + suffix, {msg_id: {"metadata": meta}}))
        is_chunk = type(msg).__name__.endswith("Chunk")
        if is_chunk:
            previous = self._partial.get(msg_id)
            merged = msg if previous is None else previous + msg
            self._partial[msg_id] = merged
            out.append(("messages/partial" + suffix, [merged]))
        else:
            self._partial.pop(msg_id, None)
            out.append(("messages/complete" + suffix, [msg]))
        return out


def _message(event: str, data: Any, ident: int | None) -> Message:
    return {"event": event, "data": dumps(data).decode(),
            "id": None if ident is None else str(ident)}


async def follow_run(ctx: Ctx, run_id: str, modes: list[str], subgraphs: bool, *,
                     last_event_id: str | None = None, metadata: bool = True
                     ) -> AsyncIterator[Message]:
    """The SSE messages of run ``run_id``, after ``last_event_id``, until it ends."""
    after = 0
    if last_event_id is not None:
        try:
            after = max(0, int(last_event_id))
        except ValueError:
            after = 0
    row = await asyncio.to_thread(ctx.store.get_run, run_id)
    if row is None:
        yield _message("error", {"error": "NotFound", "message": f"run {run_id} not found"}, None)
        return
    if metadata and last_event_id is None:
        yield _message("metadata", {"run_id": run_id, "attempt": max(row.attempt, 1)}, 0)
    formatter = ChunkFormatter(modes, subgraphs)
    async for item in watch(ctx.store, run_id, after):
        if isinstance(item, RunRow):
            if item.status in ("error", "timeout"):
                yield _message("error", run_output(item)["__error__"], None)
            elif not item.stream and "values" in formatter.modes and item.result is not None:
                # A run that recorded no events (created by /wait): its final values.
                yield _message("values", run_output(item), None)
            return
        for name, data in formatter.format(decode_chunk(item.data)):
            yield _message(name, to_json(data), item.seq)
