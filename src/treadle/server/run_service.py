"""Creating runs on behalf of the HTTP API (and of crons).

A run created here is a :class:`~treadle.cluster.spec.RunSpec` with the assistant's
graph, merged config and the stream options, queued by :func:`treadle.cluster.submit.submit`;
any ``treadle worker`` (or the server's own in-process worker) executes it. Waiting and
streaming read the store (``treadle.cluster.watch``), so any replica can serve them.
Refusals are domain errors (NotFoundError, ConflictError, InputError), which the app maps
to HTTP statuses.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import HTTPException

from treadle.cluster.spec import RunSpec
from treadle.cluster.submit import submit
from treadle.config import merge_config
from treadle.errors import ConflictError, IdempotencyKeyError, InputError, NotFoundError, ThreadBusyError
from treadle.graphs.registry import REF_PREFIX
from treadle.server.authz_deps import AUTH_CONFIG_KEYS, Authz
from treadle.server.context import Ctx
from treadle.server.encryption_context import with_encryption_context
from treadle.server.idempotency_header import RunKey
from treadle.server.run_config import check_client_config
from treadle.server.schemas import RunCreate
from treadle.server.served_graphs import default_assistant_id
from treadle.store.queue import RunRow
from treadle.store.thread_records import Thread

__all__ = ["authorize_run", "check_run", "create_run", "find_assistant", "new_thread_metadata",
           "stream_modes"]

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


async def find_assistant(ctx: Ctx, assistant_id: str, authz: Authz | None = None,
                         action: str = "read") -> Any:
    """The assistant (or the default assistant of graph ``assistant_id``), if the user may
    ``action`` it; NotFoundError (also when it may not)."""
    store = ctx.store
    access = None
    if authz is not None:
        try:
            access = await authz.resource("assistants", action, {"assistant_id": assistant_id},
                                          f"assistant {assistant_id!r} not found")
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
            raise NotFoundError(str(exc.detail)) from None
    found = await asyncio.to_thread(store.get_assistant, assistant_id, access=access)
    if found is None and ctx.graphs.has(assistant_id):
        found = await asyncio.to_thread(store.get_assistant, default_assistant_id(assistant_id),
                                        access=access)
    if found is None:
        raise NotFoundError(f"assistant {assistant_id!r} not found")
    return found


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
        raise InputError(f"run_timeout must be a positive number of seconds, not {value!r}")
    return float(value)


async def check_run(ctx: Ctx, body: RunCreate) -> Any:
    """The run's assistant, or the NotFoundError / InputError that refuses the run
    (nothing is written)."""
    assistant = await find_assistant(ctx, body.assistant_id)
    ctx.graphs.get(assistant.graph_id)  # 404 unless this deployment serves the graph
    if body.input is not None and body.command is not None:
        raise InputError("give either input or command, not both")
    if body.after_seconds:
        raise InputError("after_seconds (delayed runs) is not supported by treadle: "
                                 "create the run when it is due, or use a cron")
    if body.webhook:  # checked again, against the address it resolves to, when sent
        await ctx.webhooks.check(body.webhook, timeout=ctx.settings.webhook_timeout)
    return assistant


async def authorize_run(ctx: Ctx, authz: Authz, body: RunCreate, thread_id: str | None,
                        stateless: bool) -> tuple[RunCreate, dict[str, Any] | None]:
    """Authorize a run: reading its assistant (404) and ``threads.create_run`` (403), whose
    handler sees a ``RunsCreate`` value and may change its metadata and kwargs. The run as
    changed, and the filter its thread must match."""
    await find_assistant(ctx, body.assistant_id, authz)
    kwargs: dict[str, Any] = {
        "input": body.input, "command": body.command, "config": dict(body.config or {}),
        "context": body.context, "stream_mode": body.stream_mode,
        "interrupt_before": body.interrupt_before, "interrupt_after": body.interrupt_after,
        "webhook": body.webhook, "feedback_keys": body.feedback_keys,
        "subgraphs": body.stream_subgraphs, "temporary": stateless}
    value: dict[str, Any] = {
        "thread_id": thread_id, "assistant_id": body.assistant_id, "run_id": None,
        "status": "pending", "metadata": dict(body.metadata or {}),
        "prevent_insert_if_inflight": True,
        "multitask_strategy": body.multitask_strategy or "enqueue",
        "if_not_exists": body.if_not_exists or "reject",
        "after_seconds": body.after_seconds or 0, "kwargs": kwargs, "action": None}
    access = await authz.action("threads", "create_run", value)
    kwargs = value.get("kwargs") or {}
    changed = body.model_copy(update={
        "metadata": value.get("metadata"), "input": kwargs.get("input"),
        "command": kwargs.get("command"), "config": kwargs.get("config"),
        "context": kwargs.get("context")})
    return changed, access


async def _authorized_thread(ctx: Ctx, authz: Authz | None, thread_id: str,
                             access: dict[str, Any] | None) -> None:
    """NotFoundError unless the run's existing thread matches ``access``."""
    if authz is not None and access is not None and await asyncio.to_thread(
            ctx.store.get_thread, thread_id, access=access) is None:
        raise NotFoundError(f"thread {thread_id!r} not found")


async def new_thread_metadata(authz: Authz | None, thread_id: str,
                               metadata: dict[str, Any]) -> dict[str, Any]:
    """A thread a run creates is authorized as ``threads.create`` (its handler may add
    metadata, such as the owner)."""
    if authz is None or not authz.on:
        return metadata
    value: dict[str, Any] = {"thread_id": thread_id, "metadata": metadata, "if_exists": "raise"}
    await authz.action("threads", "create", value)
    return dict(value.get("metadata") or {})


async def create_run(ctx: Ctx, body: RunCreate, thread_id: str | None, *, stream: bool,
                     stateless: bool = False, key: RunKey | None = None,
                     authz: Authz | None = None, thread_metadata: dict[str, Any] | None = None,
                     cron_id: str | None = None) -> tuple[RunRow, RunSpec | None]:
    """Queue a run; NotFoundError for an unknown assistant/thread, ConflictError when the
    thread is busy and ``multitask_strategy`` is ``reject``. Nothing is written on a
    rejection. Returns the run and its spec (None: unreadable, a run queued otherwise).

    ``key`` (the Idempotency-Key header, see treadle.server.idempotency_header): the run first
    created with it, if any, instead of a new one; InputError if that was another request.

    ``authz`` (every HTTP request passes one; the cron scheduler, running what was
    authorized when the cron was made, does not): see :func:`authorize_run`; the run's
    ``configurable`` gets the user (and loses what the client sent under those keys).
    ``thread_metadata``: more metadata for the thread a stateless run creates (a cron's
    ticks: what its creator's ``threads.create`` handler gave, such as the owner).
    ``cron_id``: the cron whose tick this is (langgraph.json's ``priority`` handler sees it).
    """
    store = ctx.store
    access = None
    if authz is not None and authz.on:
        body, access = await authorize_run(ctx, authz, body, thread_id, stateless)
    if key is not None:
        found = await _keyed_run(ctx, key)
        if found is not None:
            await _authorized_thread(ctx, authz, found.thread_id, access)
            spec = RunSpec.read(found.payload)
            await _heal_graph(ctx, found, spec)
            return found, spec
    assistant = await check_run(ctx, body)
    config = merge_config(assistant.config, body.config)
    check_client_config(config)  # an assistant stored before the check was made
    timeout_s = _run_timeout(body, config)  # a 4xx here writes nothing
    if authz is not None:
        for name in AUTH_CONFIG_KEYS:
            config["configurable"].pop(name, None)
        config["configurable"].update(authz.run_configurable())
    with_encryption_context(config["configurable"])
    on_completion = body.on_completion
    regraph = False
    given_thread = not stateless and thread_id is not None
    thread: Thread | None
    if stateless or thread_id is None:
        thread_id = key.stateless_thread_id() if key is not None else str(uuid.uuid4())
        thread = await asyncio.to_thread(
            store.ensure_thread, thread_id, metadata=await new_thread_metadata(
                authz, thread_id, {**(thread_metadata or {}), "graph_id": assistant.graph_id,
                                   "assistant_id": assistant.assistant_id}))
        on_completion = on_completion or "delete"
    else:
        thread = await asyncio.to_thread(store.get_thread, thread_id)
        if thread is None:
            if body.if_not_exists != "create":
                raise NotFoundError(f"thread {thread_id!r} not found "
                                    "(create it first, or pass if_not_exists='create')")
            thread = await asyncio.to_thread(store.ensure_thread, thread_id,
                                             metadata=await new_thread_metadata(authz, thread_id, {}))
        await _authorized_thread(ctx, authz, thread_id, access)
        regraph = (thread.metadata or {}).get("graph_id") != assistant.graph_id
    if ctx.priority is not None:  # the thread's settings, decided at its first run
        await ctx.priority.settle(
            store, thread_id, user=authz.user if authz is not None else None,
            given_thread=given_thread, thread_metadata=thread.metadata if thread else {},
            assistant=assistant, run_metadata=body.metadata or {}, cron_id=cron_id)
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
    spec = RunSpec(
        input=body.input, command=body.command, config=config, kwargs=kwargs,
        assistant_id=assistant.assistant_id, multitask_strategy=multitask,
        webhook=body.webhook, on_completion=on_completion, thread_record=True,
        stream_mode=requested, context=context or None,
        interrupt_before=body.interrupt_before, interrupt_after=body.interrupt_after,
    )
    run_id = str(uuid.uuid4())
    try:
        row, spec = await asyncio.to_thread(
            submit, store, spec, run_id=run_id, thread_id=thread_id,
            graph_id=REF_PREFIX + assistant.graph_id, stream=stream,
            max_attempts=ctx.settings.run_max_attempts, timeout_s=timeout_s, metadata=metadata,
            multitask=multitask, idempotency_key=key.key if key is not None else None,
            request_hash=key.request_hash if key is not None else None,
            span_attributes={"treadle.assistant_id": assistant.assistant_id})
    except ThreadBusyError as exc:
        raise ConflictError(f"thread {thread_id} is busy with another run "
                            "(multitask_strategy=reject)") from exc
    except IdempotencyKeyError as exc:
        raise (key.refused(exc.run_id) if key else InputError(str(exc))) from exc
    if row.run_id != run_id:  # a concurrent request with the same key queued it first
        found_spec = RunSpec.read(row.payload)
        await _heal_graph(ctx, row, found_spec)
        return row, found_spec
    if regraph:  # once queued (a refused run leaves the thread as it was):
        # the thread's state belongs to this graph from now on (state reads use it).
        await asyncio.to_thread(store.patch_thread, thread_id, metadata={
            "graph_id": assistant.graph_id, "assistant_id": assistant.assistant_id})
    return row, spec


async def _heal_graph(ctx: Ctx, run: RunRow, spec: RunSpec | None) -> None:
    """A retried keyed create finishes what the first one may not have: the process that
    queued the run can die before it gave the thread the run's graph (state reads use it).
    Done only while the run is still the thread's newest, so a later run's graph stays."""
    graph = run.graph_id.removeprefix(REF_PREFIX)
    if graph == run.graph_id:  # shipped by value: not an API run
        return
    thread = await asyncio.to_thread(ctx.store.get_thread, run.thread_id)
    if thread is None or (thread.metadata or {}).get("graph_id") == graph:
        return
    newest = await asyncio.to_thread(ctx.store.list_runs, thread_id=run.thread_id, limit=1)
    if [r.run_id for r in newest] == [run.run_id]:
        metadata = {"graph_id": graph}
        if spec is not None and spec.assistant_id:
            metadata["assistant_id"] = spec.assistant_id
        await asyncio.to_thread(ctx.store.patch_thread, run.thread_id, metadata=metadata)


async def _keyed_run(ctx: Ctx, key: RunKey) -> RunRow | None:
    try:
        return await asyncio.to_thread(ctx.store.get_run_by_key, key.key, key.request_hash)
    except IdempotencyKeyError as exc:
        raise key.refused(exc.run_id) from exc
