"""Creating, waiting for and cancelling runs on behalf of the HTTP API.

A run created here is a row in the run queue (``treadle.store.queue``) with the
assistant's graph, merged config and the stream options in its payload; any
``treadle worker`` (or the server's own in-process worker) executes it. Waiting
and streaming read the store, so any replica can serve them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from fastapi import HTTPException

from treadle import tracing
from treadle.cluster.codec import decode, encode
from treadle.cluster.notify import notifier_for
from treadle.errors import IdempotencyKeyError, ThreadBusyError
from treadle.graphs.registry import REF_PREFIX
from treadle.jsonable import to_json
from treadle.server.context import Ctx
from treadle.server.idempotency_header import RunKey
from treadle.server.run_config import check_client_config
from treadle.server.schemas import RunCreate
from treadle.server.serialize import run_payload
from treadle.server.served_graphs import default_assistant_id
from treadle.store.queue import CHANNEL_RUN_DONE, CHANNEL_RUNS, TERMINAL, NewRun, RunRow

__all__ = ["check_run", "create_run", "get_assistant_or_404", "run_output", "stream_modes", "wait_for_run"]

# LangGraph stream modes behind each API stream mode ("values" is always recorded: it
# is a streamed run's result).
_ENGINE_MODES = {"values": "values", "updates": "updates", "messages": "messages",
                 "messages-tuple": "messages", "custom": "custom", "debug": "debug",
                 "tasks": "tasks", "checkpoints": "checkpoints", "events": "events",
                 "tools": "tools"}


def stream_modes(requested: Any) -> list[str]:
    if requested is None:
        return ["values"]
    return [requested] if isinstance(requested, str) else list(requested) or ["values"]


async def get_assistant_or_404(ctx: Ctx, assistant_id: str) -> Any:
    store = ctx.store
    found = await asyncio.to_thread(store.get_assistant, assistant_id)
    if found is None and ctx.graphs.has(assistant_id):
        found = await asyncio.to_thread(store.get_assistant, default_assistant_id(assistant_id))
    if found is None:
        raise HTTPException(404, f"assistant {assistant_id!r} not found")
    return found


def _merge_config(base: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    merged = {**base, **(given or {})}
    conf = {**(base.get("configurable") or {}), **((given or {}).get("configurable") or {})}
    merged["configurable"] = conf
    return merged


def _run_timeout(body: RunCreate, config: dict[str, Any]) -> float | None:
    """The run's ``run_timeout`` (seconds): a body field, or a key of its config (top level
    or ``configurable``, removed from it: it steers the run, not the graph); 422 unless a
    positive number. None: the worker's default (TREADLE_RUN_TIMEOUT) applies."""
    found = [v for v in ((body.model_extra or {}).get("run_timeout"),
                         config.pop("run_timeout", None),
                         config["configurable"].pop("run_timeout", None)) if v is not None]
    if not found:
        return None
    value = found[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e12:
        raise HTTPException(422, f"run_timeout must be a positive number of seconds, not {value!r}")
    return float(value)


async def check_run(ctx: Ctx, body: RunCreate) -> Any:
    """The run's assistant, or the 404/422 that refuses the run (nothing is written)."""
    assistant = await get_assistant_or_404(ctx, body.assistant_id)
    ctx.graphs.get(assistant.graph_id)  # 404 unless this deployment serves the graph
    if body.input is not None and body.command is not None:
        raise HTTPException(422, "give either input or command, not both")
    if body.after_seconds:
        raise HTTPException(422, "after_seconds (delayed runs) is not supported by treadle: "
                                 "create the run when it is due, or use a cron")
    return assistant


async def create_run(ctx: Ctx, body: RunCreate, thread_id: str | None, *, stream: bool,
                     stateless: bool = False, key: RunKey | None = None
                     ) -> tuple[RunRow, dict[str, Any]]:
    """Queue a run; 404 for an unknown assistant/thread, 409 when the thread is busy
    and ``multitask_strategy`` is ``reject``. Nothing is written on a rejection.

    ``key`` (the Idempotency-Key header, see treadle.server.idempotency_header): the run first
    created with it, if any, instead of a new one; 422 if that was another request."""
    store = ctx.store
    if key is not None:
        found = await _keyed_run(ctx, key)
        if found is not None:
            return found, run_payload(found)
    assistant = await check_run(ctx, body)
    config = _merge_config(assistant.config or {}, body.config)
    check_client_config(config)  # an assistant stored before the check was made
    timeout_s = _run_timeout(body, config)  # a 4xx here writes nothing
    on_completion = body.on_completion
    regraph = False
    if stateless or thread_id is None:
        thread_id = key.stateless_thread_id() if key is not None else str(uuid.uuid4())
        await asyncio.to_thread(store.ensure_thread, thread_id, metadata={
            "graph_id": assistant.graph_id, "assistant_id": assistant.assistant_id})
        on_completion = on_completion or "delete"
    else:
        thread = await asyncio.to_thread(store.get_thread, thread_id)
        if thread is None:
            if body.if_not_exists != "create":
                raise HTTPException(404, f"thread {thread_id!r} not found "
                                         "(create it first, or pass if_not_exists='create')")
            thread = await asyncio.to_thread(store.ensure_thread, thread_id, metadata={})
        regraph = (thread.metadata or {}).get("graph_id") != assistant.graph_id
    conf = config["configurable"]
    conf.setdefault("assistant_id", assistant.assistant_id)
    conf.setdefault("graph_id", assistant.graph_id)
    checkpoint_id = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id")
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
        conf.setdefault("checkpoint_ns", (body.checkpoint or {}).get("checkpoint_ns", ""))
    context = {**(assistant.context or {}), **(body.context or {})}
    requested = stream_modes(body.stream_mode)
    engine = sorted({_ENGINE_MODES[m] for m in requested if m in _ENGINE_MODES} | {"values"}
                    - {"events"})
    kwargs: dict[str, Any] = {"stream_mode": engine, "subgraphs": bool(body.stream_subgraphs)}
    if body.interrupt_before is not None:
        kwargs["interrupt_before"] = body.interrupt_before
    if body.interrupt_after is not None:
        kwargs["interrupt_after"] = body.interrupt_after
    if context:
        kwargs["context"] = context
    if body.durability:
        kwargs["durability"] = body.durability
    multitask = body.multitask_strategy or "enqueue"
    metadata = {**(body.metadata or {}), "assistant_id": assistant.assistant_id,
                "graph_id": assistant.graph_id}
    config["metadata"] = {**(config.get("metadata") or {}), **metadata}
    payload: dict[str, Any] = {
        "input": body.input, "command": body.command, "config": config, "kwargs": kwargs,
        "assistant_id": assistant.assistant_id, "multitask_strategy": multitask,
        "webhook": body.webhook, "on_completion": on_completion, "thread_record": True,
        "stream_mode": requested, "context": context or None,
        "interrupt_before": body.interrupt_before, "interrupt_after": body.interrupt_after,
    }
    run_id = str(uuid.uuid4())
    # The run's trace starts here; its context rides in the payload to every attempt.
    with tracing.span("treadle.run.enqueue", {
            "treadle.run_id": run_id, "treadle.thread_id": thread_id,
            "treadle.graph_id": REF_PREFIX + assistant.graph_id,
            "treadle.assistant_id": assistant.assistant_id}, kind="producer"):
        payload[tracing.TRACE_KEY] = tracing.carrier()
        run = NewRun(
            run_id=run_id, thread_id=thread_id, graph_id=REF_PREFIX + assistant.graph_id,
            payload=encode(payload), max_attempts=ctx.settings.run_max_attempts, stream=stream,
            timeout_s=timeout_s, metadata=json.dumps(metadata, default=str),
            idempotency_key=key.key if key is not None else None,
            request_hash=key.request_hash if key is not None else None,
        )
        try:
            row = await asyncio.to_thread(store.enqueue_run, run, multitask=multitask)
        except ThreadBusyError as exc:
            raise HTTPException(409, f"thread {thread_id} is busy with another run "
                                     "(multitask_strategy=reject)") from exc
        except IdempotencyKeyError as exc:
            raise (key.refused(exc.run_id) if key else HTTPException(422, str(exc))) from exc
    if row.run_id != run_id:  # a concurrent request with the same key queued it first
        return row, run_payload(row)
    if regraph:  # once queued (a refused run leaves the thread as it was):
        # the thread's state belongs to this graph from now on (state reads use it).
        await asyncio.to_thread(store.patch_thread, thread_id, metadata={
            "graph_id": assistant.graph_id, "assistant_id": assistant.assistant_id})
    notifier_for(store).emit(CHANNEL_RUNS, row.run_id)
    return row, payload


async def _keyed_run(ctx: Ctx, key: RunKey) -> RunRow | None:
    try:
        return await asyncio.to_thread(ctx.store.get_run_by_key, key.key, key.request_hash)
    except IdempotencyKeyError as exc:
        raise key.refused(exc.run_id) from exc


async def wait_for_run(ctx: Ctx, run_id: str, timeout: float | None = None) -> RunRow | None:
    """The run once terminal (None: it was deleted). ``timeout``: return it as it is then."""
    store = ctx.store
    notifier = notifier_for(store)
    poll = 1.0 if notifier.pushes else 0.05
    ev, sub = notifier.async_event(CHANNEL_RUN_DONE, run_id)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    try:
        while True:
            ev.clear()
            row = await asyncio.to_thread(store.get_run, run_id)
            if row is None or row.status in TERMINAL:
                return row
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return row
            try:
                await asyncio.wait_for(ev.wait(), poll if left is None else min(poll, left))
            except TimeoutError:
                pass
    finally:
        sub.close()


def run_output(row: RunRow) -> Any:
    """What ``/runs/wait`` and ``/join`` return: the final values, or ``__error__``."""
    if row.status in ("success", "interrupted") or (row.status == "cancelled" and row.result):
        return to_json(decode(row.result)) if row.result is not None else None
    error = row.error or row.status
    kind, sep, message = error.partition(": ")
    if not sep:
        kind, message = row.status, error
    return {"__error__": {"error": kind, "message": message}}
