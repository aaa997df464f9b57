"""A thread's runs as one stream: the thread join stream and LangGraph's v3 thread protocol.

Both follow every run of a thread in creation order (the order the queue starts them),
from the store, so any replica serves them and a client may reconnect to any other:

* ``join_thread`` (``GET /threads/{id}/stream``, the SDK's ``threads.join_stream``): each
  run's own SSE events, as its run stream sends them, between a ``metadata`` and a
  ``run_done`` event. Event ids are ``<run_id>:<seq>`` (``<run_id>:done`` for the events
  that close a run), so ``Last-Event-ID`` resumes across runs; ``-`` replays every run
  whose events are still kept.
* ``protocol_events`` and ``run_command`` (``/threads/{id}/stream/events`` and
  ``/threads/{id}/commands``, the SDK's ``threads.stream(...)``): the recorded chunks of
  each run become protocol events (``langchain_protocol``): a root ``lifecycle`` event when
  the run starts and when it ends, ``values``, ``updates``, ``messages`` (chat model tokens
  as ``message-start`` / ``content-block-*`` / ``message-finish``), ``tools``, ``custom``,
  ``tasks``, ``checkpoints``, ``lifecycle`` of subgraphs and ``input.requested`` for
  interrupts. An event's ``seq`` is ``ordinal << 24 | position``: the run's place among the
  thread's runs and the event's place in the run, the same on every replica, so a client's
  ``since`` resumes after any event of any run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from treadle.cluster.events import END, decode_chunk
from treadle.cluster.notify import notifier_for
from treadle.jsonable import dumps, to_json
from treadle.server.context import Ctx
from treadle.server.runs import create_run, run_output, stream_modes
from treadle.server.schemas import RunCreate
from treadle.server.serialize import RUN_STATUS, run_payload
from treadle.server.sse import ChunkFormatter
from treadle.store.queue import (
    ACTIVE,
    CHANNEL_EVENTS,
    CHANNEL_RUN_DONE,
    CHANNEL_RUNS,
    TERMINAL,
    RunRow,
)
from treadle.store.queue import Event as RecordedEvent

__all__ = ["CHANNELS", "PROTOCOL_STREAM_MODES", "EventFilter", "join_thread",
           "protocol_events", "run_command", "seq_of"]

RUN_BITS = 24  # positions per run: 16.7 million protocol events
CHANNELS = ("values", "updates", "messages", "tools", "lifecycle", "input", "checkpoints",
            "tasks", "custom")
# What a run started through the protocol records (subgraphs included).
PROTOCOL_STREAM_MODES = ["values", "updates", "messages", "custom", "tasks", "tools"]
JOIN_MODES = ("run_modes", "lifecycle", "state_update")

Out = tuple[str, list[str], Any]  # (method, namespace, data) of one protocol event


def seq_of(ordinal: int, position: int) -> int:
    return (ordinal << RUN_BITS) | position


# --- following a thread's runs ------------------------------------------------------------
def _order(row: RunRow) -> tuple[float, str]:
    return (row.created_at, row.run_id)


async def _thread_runs(ctx: Ctx, thread_id: str) -> list[RunRow]:
    rows = await asyncio.to_thread(ctx.store.list_runs, thread_id=thread_id, limit=100_000)
    return sorted(rows, key=_order)


async def _follow_runs(ctx: Ctx, thread_id: str, first: Callable[[list[RunRow]], int]
                       ) -> AsyncIterator[tuple[int, RunRow]]:
    """``(ordinal, run)`` for the thread's runs in order, from index ``first(runs)`` on,
    then every run created later, forever. A run is handed over once; the caller follows it
    to its end before asking for the next."""
    notifier = notifier_for(ctx.store)
    poll = 1.0 if notifier.pushes else 0.25
    wake, sub = notifier.async_event(CHANNEL_RUNS)
    floor: tuple[float, str] | None = None
    done: set[str] = set()
    try:
        while True:
            wake.clear()
            runs = await _thread_runs(ctx, thread_id)
            if floor is None:
                start = first(runs)
                floor = _order(runs[start]) if start < len(runs) else (
                    (_order(runs[-1])[0], runs[-1].run_id + "\x00") if runs else (0.0, ""))
            todo = [(i + 1, r) for i, r in enumerate(runs)
                    if _order(r) >= floor and r.run_id not in done]
            for ordinal, row in todo:
                done.add(row.run_id)
                yield ordinal, row
            if not todo:
                try:
                    await asyncio.wait_for(wake.wait(), poll)
                except TimeoutError:
                    pass
    finally:
        sub.close()


async def _run_events(ctx: Ctx, run_id: str, after: int = 0
                      ) -> AsyncIterator[RecordedEvent | RunRow]:
    """The run's recorded events after ``after`` as they are written, then the run once it
    has ended (nothing more if it was deleted)."""
    store = ctx.store
    notifier = notifier_for(store)
    poll = 1.0 if notifier.pushes else 0.05
    wake, sub = notifier.async_event((CHANNEL_EVENTS, CHANNEL_RUN_DONE), run_id)
    try:
        while True:
            wake.clear()
            events = await asyncio.to_thread(store.read_events, run_id, after)
            for event in events:
                after = event.seq
                if event.kind != END:
                    yield event
            if events:
                continue
            row = await asyncio.to_thread(store.get_run, run_id)
            if row is None:
                return
            if row.status in TERMINAL:
                if await asyncio.to_thread(store.read_events, run_id, after, 1):
                    continue  # written just before the status: send them first
                yield row
                return
            try:
                await asyncio.wait_for(wake.wait(), poll)
            except TimeoutError:
                pass
    finally:
        sub.close()


def _split(chunk: Any) -> tuple[tuple[str, ...], str, Any]:
    if isinstance(chunk, tuple) and len(chunk) == 3:
        return tuple(chunk[0]), chunk[1], chunk[2]
    if isinstance(chunk, tuple) and len(chunk) == 2:
        return (), chunk[0], chunk[1]
    return (), "values", chunk


def _error_text(row: RunRow) -> str:
    err = run_output(row)
    if isinstance(err, dict) and isinstance(err.get("__error__"), dict):
        e = err["__error__"]
        return f"{e.get('error')}: {e.get('message')}"
    return row.error or row.status


# --- GET /threads/{id}/stream ---------------------------------------------------------------
Message = dict[str, Any]  # an SSE message: {"event", "data", "id"}


def _sse(event: str, data: Any, ident: str) -> Message:
    return {"event": event, "data": dumps(data).decode(), "id": ident}


async def join_thread(ctx: Ctx, thread_id: str, modes: Iterable[str],
                      last_event_id: str | None = None) -> AsyncIterator[Message]:
    """The SSE messages of the thread's runs, one run after the other, forever.

    ``modes``: ``run_modes`` (each run's events as its own stream sends them),
    ``lifecycle`` (only ``metadata`` when a run starts and ``run_done`` when it ends),
    ``state_update`` (the root graph's ``values``). Without ``last_event_id`` the stream
    starts at the thread's active run (or the next one); ``-`` starts at its first run."""
    wanted = set(modes) or {"run_modes"}
    resume_run, resume_seq = None, 0
    if last_event_id and last_event_id != "-":
        run_part, _, seq_part = last_event_id.rpartition(":")
        resume_run = run_part or None
        resume_seq = -1 if seq_part == "done" else int(seq_part) if seq_part.isdigit() else 0

    def first(runs: list[RunRow]) -> int:
        if last_event_id == "-":
            return 0
        ids = [r.run_id for r in runs]
        if resume_run in ids:
            at = ids.index(resume_run)
            return at + 1 if resume_seq < 0 else at
        active = [i for i, r in enumerate(runs) if r.status in ACTIVE]
        return active[0] if active else len(runs)

    async for _ordinal, row in _follow_runs(ctx, thread_id, first):
        resumed = row.run_id == resume_run
        async for message in _join_run(ctx, row, wanted, max(resume_seq, 0) if resumed else None):
            yield message


async def _join_run(ctx: Ctx, row: RunRow, wanted: set[str], resume_after: int | None
                    ) -> AsyncIterator[Message]:
    """One run's messages; ``resume_after``: the seq a client saw last of this run."""
    run_id = row.run_id
    after = resume_after or 0
    payload = run_payload(row)
    formatter = ChunkFormatter(stream_modes(payload.get("stream_mode")),
                               bool((payload.get("kwargs") or {}).get("subgraphs")))
    if resume_after is None and wanted & {"run_modes", "lifecycle"}:
        yield _sse("metadata", {"run_id": run_id, "attempt": max(row.attempt, 1)}, f"{run_id}:0")
    streamed = False
    async for item in _run_events(ctx, run_id, after):
        if isinstance(item, RunRow):
            row = item
            break
        streamed = True
        chunk = decode_chunk(item.data)
        ident = f"{run_id}:{item.seq}"
        if "run_modes" in wanted:
            for name, data in formatter.format(chunk):
                yield _sse(name, to_json(data), ident)
        elif "state_update" in wanted:
            ns, mode, data = _split(chunk)
            if mode == "values" and not ns:
                yield _sse("values", to_json(data), ident)
    else:
        return  # the run was deleted
    done = f"{run_id}:done"
    failed = row.status in ("error", "timeout")
    if "run_modes" in wanted:
        if failed:
            yield _sse("error", run_output(row)["__error__"], done)
        elif not streamed and "values" in formatter.modes and row.result is not None:
            yield _sse("values", run_output(row), done)  # a /wait run: no events, its values
    if wanted & {"run_modes", "lifecycle"}:
        info = {"run_id": run_id, "status": RUN_STATUS.get(row.status, row.status)}
        if failed:
            info["error"] = _error_text(row)
        yield _sse("run_done", info, done)


# --- protocol events: recorded chunks -> langchain_protocol events --------------------------
_CALL_CHUNKS = {"tool_call_chunk": "tool_call", "server_tool_call_chunk": "server_tool_call"}
_HEAVY = frozenset({"args", "data", "output", "transcript", "value"})


def _content_blocks(msg: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(stable key, block) of a message's protocol content blocks (LangChain's view)."""
    try:
        raw = msg.content_blocks
    except Exception:  # noqa: BLE001 - a provider's content LangChain cannot read
        return []
    out: list[tuple[Any, dict[str, Any]]] = []
    for i, block in enumerate(raw):
        if isinstance(block, dict):
            index = block.get("index")
            out.append((index if index is not None else ("", block.get("type"), i), dict(block)))
    return out


def _skeleton(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind in ("text", "reasoning"):
        skel = {k: v for k, v in block.items() if k not in (kind, "index", "annotations")}
        return {**skel, kind: ""}
    if kind in _CALL_CHUNKS:
        skel = {"type": kind, "id": block.get("id"), "name": block.get("name"), "args": ""}
        return skel | ({"index": block["index"]} if block.get("index") is not None else {})
    skel = {k: v for k, v in block.items() if k not in _HEAVY}
    if kind in ("tool_call", "server_tool_call"):
        skel["args"] = {}
    elif kind == "non_standard":
        skel["value"] = {}
    return skel


def _delta(block: dict[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind in ("text", "reasoning"):
        text = block.get(kind)
        return {"type": f"{kind}-delta", kind: text} if text else None
    if kind in _CALL_CHUNKS:
        return {"type": "tool-call-delta", "args": block["args"]} if block.get("args") else None
    if block.get("data"):
        delta = {"type": "data-delta", "data": block["data"]}
        return delta | ({"encoding": "base64"} if block.get("encoding") == "base64" else {})
    return None


def _merge(acc: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind != acc.get("type"):
        return dict(block)
    if kind in ("text", "reasoning"):
        return {**block, **acc, kind: (acc.get(kind) or "") + (block.get(kind) or "")}
    if kind in _CALL_CHUNKS:
        merged = {**acc, "args": (acc.get("args") or "") + (block.get("args") or "")}
        for key in ("id", "name"):
            if merged.get(key) is None and block.get(key) is not None:
                merged[key] = block[key]
        return merged
    return dict(block)  # self-contained blocks: the latest is the block


def _finalize(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind in _CALL_CHUNKS:
        raw = block.get("args") or ""
        try:
            args = json.loads(raw) if raw else {}
        except ValueError:
            args = None
        if not isinstance(args, dict):
            return {"type": "invalid_tool_call", "id": block.get("id"), "name": block.get("name"),
                    "args": raw, "error": "the arguments are not a JSON object"}
        return {"type": _CALL_CHUNKS[kind], "id": block.get("id") or "",
                "name": block.get("name") or "", "args": args}
    return {k: v for k, v in block.items() if k != "index"}


def _role(msg: Any) -> str | None:
    kind = str(getattr(msg, "type", "")).lower()
    for prefix, role in (("ai", "ai"), ("human", "human"), ("system", "system")):
        if kind.startswith(prefix):
            return role
    return None  # tool messages belong to the tools channel


@dataclass
class _OpenMessage:
    message_id: str
    blocks: dict[Any, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


class _Messages:
    """Chat model messages (streamed chunks or whole messages) -> ``messages`` events, one
    ``message-start`` ... ``message-finish`` lifecycle per message id and namespace."""

    def __init__(self) -> None:
        self.open: dict[tuple[tuple[str, ...], str], _OpenMessage] = {}
        self.finished: set[tuple[tuple[str, ...], str]] = set()

    def feed(self, ns: tuple[str, ...], msg: Any, meta: Any) -> list[Out]:
        role = _role(msg)
        if role is None:
            return []
        message_id = str(getattr(msg, "id", None) or "")
        key = (ns, message_id)
        is_chunk = type(msg).__name__.endswith("Chunk")
        out: list[dict[str, Any]] = []
        current = self.open.get(key)
        if current is None:
            if key in self.finished:
                return []
            current = self.open[key] = _OpenMessage(message_id)
            start: dict[str, Any] = {"event": "message-start", "role": role, "id": message_id}
            node = meta.get("langgraph_node") if isinstance(meta, dict) else None
            info = {k: v for k, v in (("langgraph_node", node),) if isinstance(v, str)}
            start["metadata"] = info
            out.append(start)
        elif not is_chunk:  # the whole message of one that was streamed: it is complete
            return self._wrap(ns, self._close(key), message_id)
        for block_key, block in _content_blocks(msg):
            found = current.blocks.get(block_key)
            if found is None:
                wire = len(current.blocks)
                current.blocks[block_key] = (wire, block)
                out.append({"event": "content-block-start", "index": wire,
                            "content": _skeleton(block)})
            else:
                wire = found[0]
                current.blocks[block_key] = (wire, _merge(found[1], block))
            delta = _delta(block)
            if delta is not None:
                out.append({"event": "content-block-delta", "index": wire, "delta": delta})
        for name, count in (getattr(msg, "usage_metadata", None) or {}).items():
            if name in ("input_tokens", "output_tokens", "total_tokens") and isinstance(count, int):
                current.usage[name] = current.usage.get(name, 0) + count
        current.metadata.update(to_json(getattr(msg, "response_metadata", None) or {}))
        if not is_chunk or getattr(msg, "chunk_position", None) == "last":
            out.extend(self._close(key))
        return self._wrap(ns, out, message_id)

    def _close(self, key: tuple[tuple[str, ...], str], error: str | None = None
               ) -> list[dict[str, Any]]:
        current = self.open.pop(key)
        self.finished.add(key)
        if error is not None:
            return [{"event": "error", "message": error}]
        out: list[dict[str, Any]] = [
            {"event": "content-block-finish", "index": wire, "content": _finalize(block)}
            for wire, block in current.blocks.values()]
        finish: dict[str, Any] = {"event": "message-finish"}
        if current.usage:
            finish["usage"] = current.usage
        if current.metadata:
            finish["metadata"] = current.metadata
        return [*out, finish]

    def close_all(self, error: str | None) -> list[Out]:
        out: list[Out] = []
        for key in list(self.open):
            out.extend(self._wrap(key[0], self._close(key, error), key[1]))
        return out

    @staticmethod
    def _wrap(ns: tuple[str, ...], datas: list[dict[str, Any]], message_id: str) -> list[Out]:
        for data in datas:
            if data["event"] != "message-start":
                data["message_id"] = message_id  # routes the event when messages interleave
        return [("messages", list(ns), data) for data in datas]


def _interrupts(value: Any) -> list[tuple[str, Any]]:
    """(id, value) of the ``Interrupt`` objects (or their JSON) in ``value``."""
    out: list[tuple[str, Any]] = []
    for item in value if isinstance(value, (list, tuple)) else ():
        ident = getattr(item, "id", None) if not isinstance(item, dict) else item.get("id")
        val = getattr(item, "value", None) if not isinstance(item, dict) else item.get("value")
        if isinstance(ident, str):
            out.append((ident, to_json(val)))
    return out


class RunConverter:
    """One run's recorded chunks -> protocol events. Deterministic: replaying the same
    chunks gives the same events in the same order (positions are derived from it)."""

    def __init__(self, row: RunRow) -> None:
        self.graph_name = row.graph_id.removeprefix("ref:")
        self.messages = _Messages()
        self.asked: set[str] = set()  # interrupt ids already sent as input.requested
        self.subgraphs: dict[tuple[str, ...], str] = {}  # open namespace -> its parent task
        self.seen: set[tuple[str, ...]] = set()

    def start(self) -> list[Out]:
        return [("lifecycle", [], {"event": "running", "graph_name": self.graph_name})]

    def chunk(self, chunk: Any) -> list[Out]:
        ns, mode, data = _split(chunk)
        out = self._discover(ns)
        if mode == "messages":
            msg, meta = data if isinstance(data, (tuple, list)) and len(data) == 2 else (data, {})
            return out + self.messages.feed(ns, msg, meta)
        if mode == "values":
            if isinstance(data, dict) and "__interrupt__" in data:
                out += self._ask(ns, data["__interrupt__"])
                data = {k: v for k, v in data.items() if k != "__interrupt__"}
                if not data:
                    return out
            return [*out, ("values", list(ns), to_json(data))]
        if mode == "updates":
            for node, values in (data.items() if isinstance(data, dict) else ()):
                if node == "__interrupt__":
                    out += self._ask(ns, values)
                else:
                    out.append(("updates", list(ns), {"node": node, "values": to_json(values)}))
            return out
        if mode == "tasks":
            if isinstance(data, dict) and "result" in data:
                out += self._task_result(ns, data)
            return [*out, ("tasks", list(ns), to_json(data))]
        if mode == "custom":
            return [*out, ("custom", list(ns), {"payload": to_json(data)})]
        if mode == "tools":
            return [*out, ("tools", list(ns), to_json(data))]
        if mode == "checkpoints":
            return [*out, ("checkpoints", list(ns), _checkpoint(data))]
        return out  # debug / events: not part of the protocol

    def finish(self, row: RunRow) -> list[Out]:
        if row.status == "success":
            status, error = "completed", None
        elif row.status == "interrupted" and not row.error:
            status, error = "interrupted", None  # interrupt(): waits for input.respond
        else:  # failed, timed out or stopped on request
            status, error = "failed", _error_text(row)
        out = self.messages.close_all(error)
        for ns in sorted(self.subgraphs, key=len, reverse=True):
            out.append(("lifecycle", list(ns), {"event": status,
                                                "graph_name": ns[-1].split(":")[0]}))
        self.subgraphs.clear()
        root: dict[str, Any] = {"event": status, "graph_name": self.graph_name}
        if error is not None:
            root["error"] = error
        return [*out, ("lifecycle", [], root)]

    def _ask(self, ns: tuple[str, ...], interrupts: Any) -> list[Out]:
        out: list[Out] = []
        for ident, value in _interrupts(interrupts):
            if ident not in self.asked:
                self.asked.add(ident)
                # `payload` is the protocol's field, `value` the one the Python SDK reads.
                out.append(("input.requested", list(ns),
                            {"interrupt_id": ident, "payload": value, "value": value}))
        return out

    def _discover(self, ns: tuple[str, ...]) -> list[Out]:
        out: list[Out] = []
        for depth in range(1, len(ns) + 1):
            prefix = ns[:depth]
            if prefix in self.seen:
                continue
            self.seen.add(prefix)
            name, _, trigger = prefix[-1].partition(":")
            if trigger:
                self.subgraphs[prefix] = trigger
                out.append(("lifecycle", list(prefix), {"event": "started", "graph_name": name,
                                                        "trigger_call_id": trigger}))
        return out

    def _task_result(self, ns: tuple[str, ...], data: dict[str, Any]) -> list[Out]:
        out: list[Out] = []
        for child, trigger in list(self.subgraphs.items()):
            if child[:-1] == ns and trigger == data.get("id"):
                del self.subgraphs[child]
                info: dict[str, Any] = {"event": "completed", "graph_name": child[-1].split(":")[0]}
                if data.get("interrupts"):
                    info["event"] = "interrupted"
                elif data.get("error"):
                    info.update(event="failed", error=str(data["error"]))
                out.append(("lifecycle", list(child), info))
        return out


def _checkpoint(data: Any) -> Any:
    if not isinstance(data, dict):
        return to_json(data)
    conf = (data.get("config") or {}).get("configurable") or {}
    parent = (data.get("parent_config") or {}).get("configurable") or {}
    meta = data.get("metadata") or {}
    out = {"id": conf.get("checkpoint_id"), "step": meta.get("step"), "source": meta.get("source")}
    if parent.get("checkpoint_id"):
        out["parent_id"] = parent["checkpoint_id"]
    return to_json(out)


# --- protocol events: filtering and following ------------------------------------------------
def _channel(method: str, data: Any) -> str | None:
    if method in CHANNELS:
        if method == "custom" and isinstance(data, dict) and data.get("name"):
            return f"custom:{data['name']}"
        return method
    return "input" if method == "input.requested" else None


def _prefix_match(namespace: list[str], prefix: list[str]) -> bool:
    if len(prefix) > len(namespace):
        return False
    for want, have in zip(prefix, namespace, strict=False):
        # A segment without ":" names a subgraph whatever its task id.
        if have != want and (":" in want or have.split(":")[0] != want):
            return False
    return True


@dataclass
class EventFilter:
    """Which events a subscription receives (the protocol's ``SubscribeParams``)."""

    channels: set[str]
    namespaces: list[list[str]] | None = None
    depth: int | None = None

    def matches(self, method: str, namespace: list[str], data: Any) -> bool:
        channel = _channel(method, data)
        if channel is None or not (channel in self.channels or (
                channel.startswith("custom:") and "custom" in self.channels)):
            return False
        if not self.namespaces:
            return True
        return any(_prefix_match(namespace, p) and (
            self.depth is None or len(namespace) - len(p) <= self.depth) for p in self.namespaces)


def _envelope(method: str, namespace: list[str], data: Any, seq: int, event_id: str
              ) -> dict[str, Any]:
    return {"type": "event", "method": method, "seq": seq, "event_id": event_id,
            "params": {"namespace": namespace, "timestamp": int(time.time() * 1000), "data": data}}


async def protocol_events(ctx: Ctx, thread_id: str, since: int | None, filt: EventFilter
                          ) -> AsyncIterator[dict[str, Any]]:
    """The thread's protocol events after ``since`` that ``filt`` lets through: every run
    from the first (or the one ``since`` names) on, then each new run, forever."""
    floor = since if since is not None else -1

    def first(runs: list[RunRow]) -> int:
        return max(0, (floor >> RUN_BITS) - 1) if floor > 0 else 0

    async for ordinal, row in _follow_runs(ctx, thread_id, first):
        if seq_of(ordinal + 1, 0) <= floor:
            continue  # wholly before `since` (it moved down: a run before it was deleted)
        async for envelope in _run_protocol_events(ctx, row, ordinal, floor, filt):
            yield envelope


async def _run_protocol_events(ctx: Ctx, row: RunRow, ordinal: int, floor: int,
                               filt: EventFilter) -> AsyncIterator[dict[str, Any]]:
    # The run is converted from its first event even when `since` is inside it: positions
    # (and message state) depend on everything before.
    conv = RunConverter(row)
    position = 0

    def envelopes(items: list[Out]) -> list[dict[str, Any]]:
        nonlocal position
        out = []
        for method, namespace, data in items:
            position += 1
            seq = seq_of(ordinal, position)
            if seq > floor and filt.matches(method, namespace, data):
                out.append(_envelope(method, namespace, data, seq, f"{row.run_id}:{position}"))
        return out

    for envelope in envelopes(conv.start()):
        yield envelope
    async for item in _run_events(ctx, row.run_id):
        items = conv.finish(item) if isinstance(item, RunRow) else conv.chunk(
            decode_chunk(item.data))
        for envelope in envelopes(items):
            yield envelope


# --- protocol commands -----------------------------------------------------------------------
class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _success(ident: int, result: dict[str, Any], meta: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    return {"type": "success", "id": ident, "result": result} | ({"meta": meta} if meta else {})


def error_response(ident: int | None, code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "id": ident, "error": code, "message": message}


_HTTP_CODES = {404: "invalid_argument", 409: "invalid_argument", 422: "invalid_argument"}


async def run_command(ctx: Ctx, thread_id: str, command: Any) -> dict[str, Any]:
    """Execute one protocol command on the thread; the success or error response."""
    if not isinstance(command, dict) or not isinstance(command.get("id"), int) \
            or not isinstance(command.get("method"), str):
        return error_response(None, "invalid_argument",
                              "a command is {\"id\": <integer>, \"method\": <string>, \"params\"}")
    ident, method = command["id"], command["method"]
    params = command.get("params") or {}
    handlers = {"run.start": _run_start, "input.respond": _input_respond, "state.get": _state_get}
    handler = handlers.get(method)
    if handler is None:
        if method.startswith(("subscription.", "agent.", "state.", "input.")):
            hint = (" (subscribe by opening /threads/{id}/stream/events)"
                    if method.startswith("subscription.") else "")
            return error_response(ident, "not_supported", f"{method} is not supported by treadle{hint}")
        return error_response(ident, "unknown_command", f"unknown command {method!r}")
    if not isinstance(params, dict):
        return error_response(ident, "invalid_argument", "params must be an object")
    try:
        result, meta = await handler(ctx, thread_id, params)
    except CommandError as exc:
        return error_response(ident, exc.code, str(exc))
    except HTTPException as exc:
        return error_response(ident, _HTTP_CODES.get(exc.status_code, "unknown_error"),
                              str(exc.detail))
    except ValidationError as exc:
        return error_response(ident, "invalid_argument", str(exc))
    return _success(ident, result, meta)


async def _applied_through(ctx: Ctx, thread_id: str, run_id: str) -> dict[str, Any]:
    """The seq just before the run's first event: a stream opened with it as ``since``
    gets the run from its start and nothing of the runs before it."""
    runs = await _thread_runs(ctx, thread_id)
    ordinal = next((i + 1 for i, r in enumerate(runs) if r.run_id == run_id), len(runs))
    return {"applied_through_seq": seq_of(ordinal, 0), "thread_id": thread_id}


def _dict_or_none(params: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = params.get(key)
    if value is not None and not isinstance(value, dict):
        raise CommandError("invalid_argument", f"{key} must be an object")
    return value


async def _start(ctx: Ctx, thread_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    body = RunCreate.model_validate({**fields, "stream_mode": PROTOCOL_STREAM_MODES,
                                     "stream_subgraphs": True, "if_not_exists": "create"})
    row, _payload = await create_run(ctx, body, thread_id, stream=True)
    return {"run_id": row.run_id, **await _applied_through(ctx, thread_id, row.run_id)}


async def _run_start(ctx: Ctx, thread_id: str, params: dict[str, Any]
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    assistant_id = params.get("assistant_id")
    if not isinstance(assistant_id, str) or not assistant_id:
        raise CommandError("invalid_argument", "run.start needs an assistant_id")
    multitask = params.get("multitask_strategy", params.get("multitaskStrategy"))
    if multitask not in (None, "reject", "interrupt", "rollback", "enqueue"):
        raise CommandError("invalid_argument", f"unknown multitask strategy {multitask!r}")
    started = await _start(ctx, thread_id, {
        "assistant_id": assistant_id, "input": params.get("input"),
        "config": _dict_or_none(params, "config"), "metadata": _dict_or_none(params, "metadata"),
        "multitask_strategy": multitask})
    run_id = started.pop("run_id")
    return {"run_id": run_id}, started


async def _input_respond(ctx: Ctx, thread_id: str, params: dict[str, Any]
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    entries = params["responses"] if isinstance(params.get("responses"), list) else [params]
    resume: dict[str, Any] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("interrupt_id"), str):
            raise CommandError("invalid_argument", "input.respond needs an interrupt_id per response")
        resume[entry["interrupt_id"]] = entry.get("response")
    if not resume:
        raise CommandError("invalid_argument", "input.respond needs at least one response")
    thread = await asyncio.to_thread(ctx.store.get_thread, thread_id)
    if thread is None:
        raise CommandError("no_such_run", f"thread {thread_id!r} not found")
    pending = {i.get("id") for found in (thread.interrupts or {}).values()
               for i in (found if isinstance(found, list) else []) if isinstance(i, dict)}
    unknown = sorted(set(resume) - pending)
    if unknown:
        raise CommandError("no_such_interrupt", f"no pending interrupt {', '.join(unknown)} "
                                                f"on thread {thread_id}")
    assistant_id = (thread.metadata or {}).get("assistant_id")
    if not isinstance(assistant_id, str):
        runs = await _thread_runs(ctx, thread_id)
        assistant_id = run_payload(runs[-1]).get("assistant_id") if runs else None
    if not isinstance(assistant_id, str):
        raise CommandError("no_such_run", "the thread has no run to resume")
    command: dict[str, Any] = {"resume": resume}
    for key in ("update", "goto"):
        if params.get(key) is not None:
            command[key] = params[key]
    started = await _start(ctx, thread_id, {
        "assistant_id": assistant_id, "command": command,
        "config": _dict_or_none(params, "config"), "metadata": _dict_or_none(params, "metadata")})
    started.pop("run_id")
    return {}, started


async def _state_get(ctx: Ctx, thread_id: str, params: dict[str, Any]
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    from treadle.server.routes.threads import thread_graph

    thread = await asyncio.to_thread(ctx.store.get_thread, thread_id)
    graph = thread_graph(ctx, thread) if thread is not None else None
    if graph is None:
        return {"values": {}}, {}
    state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    values = to_json(state.values) if isinstance(state.values, dict) else {}
    keys = params.get("keys")
    if isinstance(keys, list):
        values = {k: v for k, v in values.items() if k in keys}
    result: dict[str, Any] = {"values": values}
    conf = (state.config or {}).get("configurable") or {}
    if conf.get("checkpoint_id"):
        result["checkpoint"] = {"id": conf["checkpoint_id"], "ns": conf.get("checkpoint_ns", "")}
    return result, {}
