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
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from treadle.cluster.events import decode_chunk
from treadle.cluster.notify import notifier_for
from treadle.cluster.watch import wait, watch
from treadle.errors import TreadleError
from treadle.jsonable import dumps, to_json
from treadle.server.app import http_status
from treadle.server.authz_deps import Authz
from treadle.server.context import Ctx
from treadle.server.protocol import Out, RunConverter, error_text, split_chunk
from treadle.server.run_service import create_run, stream_modes
from treadle.server.schemas import RunCreate
from treadle.server.serialize import RUN_STATUS, run_output, run_spec
from treadle.server.sse import ChunkFormatter
from treadle.store.queue import ACTIVE, CHANNEL_CHANGED, CHANNEL_RUNS, RunRow
from treadle.store.thread_records import Thread

__all__ = ["CHANNELS", "PROTOCOL_STREAM_MODES", "EventFilter", "join_thread",
           "protocol_events", "run_command", "seq_of"]

RUN_BITS = 24  # positions per run: 16.7 million protocol events
FOLLOW_SAFETY = 1.0  # seconds between two reads of a thread's runs when nothing is notified
FOLLOW_SPACING = 0.05  # shortest seconds between two reads of a thread's runs
CHANNELS = ("values", "updates", "messages", "tools", "lifecycle", "input", "checkpoints",
            "tasks", "custom")
# What a run started through the protocol records (subgraphs included).
PROTOCOL_STREAM_MODES = ["values", "updates", "messages", "custom", "tasks", "tools"]

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
    # Woken by a run queued or ended (this process's emits, PostgreSQL's NOTIFY) or, on
    # SQLite, by a commit of another connection; reads at most every FOLLOW_SPACING s, and
    # every FOLLOW_SAFETY s whatever was notified.
    channels = (CHANNEL_RUNS, CHANNEL_CHANGED) if notifier.detects_changes else (CHANNEL_RUNS,)
    wake, sub = notifier.async_event(channels)
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
                    await asyncio.wait_for(wake.wait(), FOLLOW_SAFETY)
                except TimeoutError:
                    pass
                await asyncio.sleep(FOLLOW_SPACING)
    finally:
        sub.close()


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
    spec = run_spec(row)
    formatter = ChunkFormatter(stream_modes(spec.stream_mode), bool(spec.kwargs.get("subgraphs")))
    if resume_after is None and wanted & {"run_modes", "lifecycle"}:
        yield _sse("metadata", {"run_id": run_id, "attempt": max(row.attempt, 1)}, f"{run_id}:0")
    streamed = False
    async for item in watch(ctx.store, run_id, after):
        if isinstance(item, RunRow):
            row = item
            break
        streamed = True
        chunk = decode_chunk(item.data)
        ident = f"{run_id}:{item.seq}"
        if "run_modes" in wanted:
            for name, data in formatter.format(chunk):
                yield _sse(name, to_json(data), ident)
        if "state_update" in wanted and not ("run_modes" in wanted and "values" in formatter.modes):
            ns, mode, data = split_chunk(chunk)
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
            info["error"] = error_text(row)
        yield _sse("run_done", info, done)


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
    async for item in watch(ctx.store, row.run_id):
        items = conv.finish(item) if isinstance(item, RunRow) else conv.chunk(
            decode_chunk(item.data))
        for envelope in envelopes(items):
            yield envelope


# --- protocol commands -----------------------------------------------------------------------
class CommandError(TreadleError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _success(ident: int, result: dict[str, Any], meta: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    return {"type": "success", "id": ident, "result": result} | ({"meta": meta} if meta else {})


def error_response(ident: int | None, code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "id": ident, "error": code, "message": message}


_RESPOND_WAIT = 10.0  # seconds input.respond waits for the interrupted run to end
_HTTP_CODES = {400: "invalid_argument", 404: "invalid_argument", 409: "invalid_argument",
               422: "invalid_argument"}


async def run_command(ctx: Ctx, thread_id: str, command: Any, authz: Authz | None = None
                      ) -> dict[str, Any]:
    """Execute one protocol command on the thread as the user of ``authz``; the success or
    error response."""
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
        result, meta = await handler(ctx, thread_id, params, authz or Authz())
    except CommandError as exc:
        return error_response(ident, exc.code, str(exc))
    except HTTPException as exc:  # refused by authorization
        return error_response(ident, "permission_denied" if exc.status_code in (401, 403)
                              else "invalid_argument", str(exc.detail))
    except TreadleError as exc:
        status = http_status(exc)
        if status not in _HTTP_CODES:
            raise
        return error_response(ident, _HTTP_CODES[status], str(exc))
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


async def _start(ctx: Ctx, thread_id: str, fields: dict[str, Any], authz: Authz
                 ) -> dict[str, Any]:
    body = RunCreate.model_validate({**fields, "stream_mode": PROTOCOL_STREAM_MODES,
                                     "stream_subgraphs": True, "if_not_exists": "create"})
    row, _spec = await create_run(ctx, body, thread_id, stream=True, authz=authz)
    return {"run_id": row.run_id, **await _applied_through(ctx, thread_id, row.run_id)}


async def _settled(ctx: Ctx, thread_id: str) -> tuple[Thread | None, list[RunRow]]:
    """The thread's record once its latest run has recorded its end (waiting at most
    ``_RESPOND_WAIT``: an interrupt is streamed before its run records it on the thread),
    and its runs."""
    runs = await _thread_runs(ctx, thread_id)
    if runs and runs[-1].status in ACTIVE:
        await wait(ctx.store, runs[-1].run_id, timeout=_RESPOND_WAIT)
    return await asyncio.to_thread(ctx.store.get_thread, thread_id), runs


async def _run_start(ctx: Ctx, thread_id: str, params: dict[str, Any], authz: Authz
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    assistant_id = params.get("assistant_id")
    if not isinstance(assistant_id, str) or not assistant_id:
        raise CommandError("invalid_argument", "run.start needs an assistant_id")
    multitask = params.get("multitask_strategy", params.get("multitaskStrategy"))
    if multitask not in (None, "reject", "interrupt", "rollback", "enqueue"):
        raise CommandError("invalid_argument", f"unknown multitask strategy {multitask!r}")
    # As LangGraph Platform decides (and RemoteGraph's v3 stream relies on): input given
    # to a thread stopped at an interrupt is the answer to it.
    given = params.get("input")
    resume = given is not None and (
        (thread := (await _settled(ctx, thread_id))[0]) is not None
        and thread.status == "interrupted")
    started = await _start(ctx, thread_id, {
        "assistant_id": assistant_id, "input": None if resume else given,
        "command": {"resume": given} if resume else None,
        "config": _dict_or_none(params, "config"), "metadata": _dict_or_none(params, "metadata"),
        "multitask_strategy": multitask}, authz)
    run_id = started.pop("run_id")
    return {"run_id": run_id}, started


async def _input_respond(ctx: Ctx, thread_id: str, params: dict[str, Any], authz: Authz
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    entries = params["responses"] if isinstance(params.get("responses"), list) else [params]
    resume: dict[str, Any] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("interrupt_id"), str):
            raise CommandError("invalid_argument", "input.respond needs an interrupt_id per response")
        resume[entry["interrupt_id"]] = entry.get("response")
    if not resume:
        raise CommandError("invalid_argument", "input.respond needs at least one response")
    thread, runs = await _settled(ctx, thread_id)
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
        assistant_id = run_spec(runs[-1]).assistant_id if runs else None
    if not isinstance(assistant_id, str):
        raise CommandError("no_such_run", "the thread has no run to resume")
    command: dict[str, Any] = {"resume": resume}
    for key in ("update", "goto"):
        if params.get(key) is not None:
            command[key] = params[key]
    started = await _start(ctx, thread_id, {
        "assistant_id": assistant_id, "command": command,
        "config": _dict_or_none(params, "config"), "metadata": _dict_or_none(params, "metadata")},
        authz)
    started.pop("run_id")
    return {}, started


async def _state_get(ctx: Ctx, thread_id: str, params: dict[str, Any], authz: Authz
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    from treadle.server.routes.threads import thread_graph

    access = await authz.resource("threads", "read", {"thread_id": thread_id},
                                  f"thread {thread_id!r} not found")
    thread = await asyncio.to_thread(ctx.store.get_thread, thread_id, access=access)
    if thread is None:
        return {"values": {}}, {}
    async with thread_graph(ctx, thread, "threads.read") as graph:
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
