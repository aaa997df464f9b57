"""Threads: create, search, count, get, patch, delete, copy, prune, state and history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from langgraph.errors import InvalidUpdateError

from treadle.errors import ConflictError
from treadle.jsonable import to_json
from treadle.server.authz_deps import AuthzDep, both
from treadle.server.context import Ctx, get_ctx
from treadle.server.schemas import (
    CountBody,
    ThreadCreate,
    ThreadHistory,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
    ThreadStateCheckpoint,
    ThreadStateUpdate,
)
from treadle.server.serialize import checkpoint_json, state_json, thread_json
from treadle.store.queue import ACTIVE

__all__ = ["authorized_thread", "delete_thread_data", "router", "thread_graph"]

router = APIRouter(tags=["threads"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]
# What LangGraph raises for a state update that does not fit the graph (unknown node,
# values of the wrong shape): the caller's mistake, so a 422.
_BAD_UPDATE = (InvalidUpdateError, ValueError, KeyError, TypeError)


def _missing(thread_id: str) -> str:
    return f"thread {thread_id!r} not found"


async def _thread_or_404(ctx: Ctx, thread_id: str, access: dict[str, Any] | None = None) -> Any:
    found = await asyncio.to_thread(ctx.store.get_thread, thread_id, access=access)
    if found is None:
        raise HTTPException(404, _missing(thread_id))
    return found


async def authorized_thread(ctx: Ctx, authz: AuthzDep, thread_id: str, action: str = "read",
                            **value: Any) -> Any:
    """The thread, if the user may ``action`` it (404 otherwise, as for a missing one)."""
    access = await authz.resource("threads", action, {"thread_id": thread_id, **value},
                                  _missing(thread_id))
    return await _thread_or_404(ctx, thread_id, access)


def _graph_id(ctx: Ctx, thread: Any) -> str | None:
    """The graph whose state a thread holds (named by its first run), if served here."""
    graph_id = (thread.metadata or {}).get("graph_id")
    return graph_id if graph_id and ctx.graphs.has(graph_id) else None


@asynccontextmanager
async def thread_graph(ctx: Ctx, thread: Any, access_context: str) -> AsyncIterator[Any]:
    """The thread's graph (or None) for ``"threads.read"`` or ``"threads.update"``."""
    graph_id = _graph_id(ctx, thread)
    if graph_id is None:
        yield None
        return
    conf = {"thread_id": thread.thread_id, "graph_id": graph_id}
    if (thread.metadata or {}).get("assistant_id"):
        conf["assistant_id"] = thread.metadata["assistant_id"]
    async with ctx.graphs.open(graph_id, access_context, {"configurable": conf}) as graph:
        yield graph


def _empty_state() -> dict[str, Any]:
    return {"values": {}, "next": [], "checkpoint": None, "metadata": {}, "created_at": None,
            "parent_checkpoint": None, "tasks": [], "interrupts": []}


def _config(thread_id: str, checkpoint: dict[str, Any] | None = None,
            checkpoint_id: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint:
        conf.update({k: v for k, v in checkpoint.items() if v is not None and k != "thread_id"})
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


async def _busy(ctx: Ctx, thread_id: str) -> bool:
    for status in ACTIVE:
        if await asyncio.to_thread(ctx.store.list_runs, thread_id=thread_id, status=status, limit=1):
            return True
    return False


@router.post("/threads", summary="Create a thread")
async def create_thread(body: ThreadCreate, ctx: CtxDep, authz: AuthzDep) -> dict[str, Any]:
    from treadle.server.ttl_sweep import thread_ttl_of
    from treadle.store.thread_records import Thread

    ttl = thread_ttl_of(body.ttl)  # None: langgraph.json's default_ttl, if any
    metadata = dict(body.metadata or {})
    if body.graph_id:
        ctx.graphs.get(body.graph_id)
        metadata.setdefault("graph_id", body.graph_id)
    value: dict[str, Any] = {"thread_id": body.thread_id or str(uuid.uuid4()), "metadata": metadata,
             "if_exists": body.if_exists}
    created_filter = await authz.action("threads", "create", value)
    metadata = value["metadata"]
    thread = Thread(thread_id=str(value["thread_id"]), metadata=metadata,
                    status="idle", values=None, interrupts={}, config={}, error=None,
                    created_at=0.0, updated_at=0.0)
    if body.supersteps and _graph_id(ctx, thread) is None:
        raise HTTPException(422, "supersteps need graph_id (the graph they apply to)")
    existed = body.if_exists == "do_nothing" and bool(body.supersteps) and (
        await asyncio.to_thread(ctx.store.get_thread, thread.thread_id) is not None)
    try:
        created = await asyncio.to_thread(ctx.store.put_thread, thread, if_exists=body.if_exists,
                                          ttl=ttl)
    except ConflictError as exc:
        raise HTTPException(409, f"thread {thread.thread_id} already exists") from exc
    if authz.on and body.if_exists == "do_nothing":  # an existing thread must be the user's
        read = await authz.action("threads", "read", {"thread_id": thread.thread_id})
        access = both(created_filter, read)
        if access is not None and await asyncio.to_thread(
                ctx.store.get_thread, thread.thread_id, access=access) is None:
            raise HTTPException(409, f"thread {thread.thread_id} already exists")
    if body.supersteps and not existed:  # applied once, on creation
        async with thread_graph(ctx, created, "threads.update") as graph:
            await _apply_supersteps(ctx, graph, created.thread_id, body)
        created = await _thread_or_404(ctx, created.thread_id)
    return thread_json(created)


async def _apply_supersteps(ctx: Ctx, graph: Any, thread_id: str, body: ThreadCreate) -> None:
    for i, step in enumerate(body.supersteps or ()):
        for j, update in enumerate(step.updates):
            try:
                await graph.aupdate_state(_config(thread_id), update.values,
                                          as_node=update.as_node)
            except _BAD_UPDATE as exc:
                await _delete_thread(ctx, thread_id)  # a rejection leaves nothing
                raise HTTPException(422, f"supersteps[{i}].updates[{j}] does not apply to "
                                         f"graph {body.graph_id!r}: {exc}") from exc
    state = await graph.aget_state(_config(thread_id))
    await asyncio.to_thread(ctx.store.set_thread_state, thread_id,
                            status="interrupted" if state.next else "idle",
                            values=to_json(state.values))


@router.post("/threads/search", summary="Search threads")
async def search_threads(body: ThreadSearch, ctx: CtxDep, authz: AuthzDep) -> list[dict[str, Any]]:
    value: dict[str, Any] = {"metadata": dict(body.metadata or {}), "values": body.values, "status": body.status,
             "limit": body.limit, "offset": body.offset, "ids": body.ids}
    access = await authz.action("threads", "search", value)
    found = await asyncio.to_thread(
        ctx.store.search_threads, metadata=value["metadata"], values=value["values"],
        status=value["status"], ids=body.ids, limit=body.limit, offset=body.offset,
        sort_by=body.sort_by or "created_at", sort_order=body.sort_order or "desc",
        access=access)
    return [_select(thread_json(t), body.select) for t in found]


def _select(doc: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k in fields} if fields else doc


@router.post("/threads/count", summary="Count threads")
async def count_threads(body: CountBody, ctx: CtxDep, authz: AuthzDep) -> int:
    value: dict[str, Any] = {"metadata": dict(body.metadata or {}), "values": body.values, "status": body.status}
    access = await authz.action("threads", "search", value)
    return await asyncio.to_thread(ctx.store.count_threads, metadata=value["metadata"],
                                   values=value["values"], status=value["status"], access=access)


@router.post("/threads/prune", summary="Delete threads, or all but their latest checkpoint")
async def prune_threads(body: ThreadPrune, ctx: CtxDep, authz: AuthzDep) -> dict[str, Any]:
    count = 0
    for thread_id in body.thread_ids:
        decided = await authz.decide("threads", "delete", {"thread_id": thread_id})
        if not decided.allowed or await asyncio.to_thread(
                ctx.store.get_thread, thread_id, access=decided.filters) is None:
            continue
        if body.strategy == "delete":
            await _delete_thread(ctx, thread_id)
        else:
            await asyncio.to_thread(ctx.store.prune, [thread_id], "keep_latest")
        count += 1
    return {"pruned_count": count}


@router.get("/threads/{thread_id}", summary="Get a thread")
async def get_thread(thread_id: str, ctx: CtxDep, authz: AuthzDep,
                     include: str | None = None) -> dict[str, Any]:
    found = thread_json(await authorized_thread(ctx, authz, thread_id))
    if "ttl" in (include or "").split(","):  # as langgraph-api: only when asked
        from treadle.server.ttl_sweep import ttl_json

        ttl = ttl_json(await asyncio.to_thread(ctx.store.thread_ttl, thread_id))
        if ttl is not None:
            found["ttl"] = ttl
    return found


@router.patch("/threads/{thread_id}", summary="Merge metadata into a thread")
async def patch_thread(thread_id: str, body: ThreadPatch, ctx: CtxDep,
                       authz: AuthzDep) -> dict[str, Any]:
    from treadle.server.ttl_sweep import thread_ttl_of

    ttl = thread_ttl_of(body.ttl)  # None: the thread keeps its TTL
    value: dict[str, Any] = {"thread_id": thread_id, "metadata": dict(body.metadata or {})}
    access = await authz.resource("threads", "update", value, _missing(thread_id))
    found = await asyncio.to_thread(ctx.store.patch_thread, thread_id,
                                    metadata=value["metadata"], access=access)
    if found is None:
        raise HTTPException(404, f"thread {thread_id!r} not found")
    if ttl is not None:
        await asyncio.to_thread(ctx.store.set_thread_ttl, thread_id, ttl)
    return thread_json(found)


async def _delete_thread(ctx: Ctx, thread_id: str) -> None:
    store = ctx.store
    for status in ACTIVE:
        for row in await asyncio.to_thread(store.list_runs, thread_id=thread_id, status=status,
                                           limit=10_000):
            await asyncio.to_thread(store.cancel_run, row.run_id, "cancel")
    await asyncio.to_thread(store.delete_crons_of_thread, thread_id)
    await asyncio.to_thread(store.delete_thread_record, thread_id)
    await asyncio.to_thread(store.delete_thread, thread_id)
    runs = await asyncio.to_thread(store.list_runs, thread_id=thread_id, limit=100_000)
    await asyncio.to_thread(store.delete_runs, [r.run_id for r in runs])


#: The delete path, shared with the thread TTL sweep (treadle.server.ttl_sweep).
delete_thread_data = _delete_thread


@router.delete("/threads/{thread_id}", status_code=204, summary="Delete a thread, its state and runs")
async def delete_thread(thread_id: str, ctx: CtxDep, authz: AuthzDep) -> Response:
    await authorized_thread(ctx, authz, thread_id, "delete")
    await _delete_thread(ctx, thread_id)
    return Response(status_code=204)


@router.post("/threads/{thread_id}/copy", summary="Copy a thread with its checkpoints")
async def copy_thread(thread_id: str, ctx: CtxDep, authz: AuthzDep) -> dict[str, Any]:
    from treadle.store.thread_records import Thread

    source = await authorized_thread(ctx, authz, thread_id)
    new_id = str(uuid.uuid4())
    value: dict[str, Any] = {"thread_id": new_id, "metadata": dict(source.metadata or {}), "if_exists": "raise"}
    await authz.action("threads", "create", value)  # the copy is the copier's
    await asyncio.to_thread(ctx.store.copy_thread, thread_id, new_id)
    copy = Thread(thread_id=new_id, metadata=value["metadata"], status="idle",
                  values=source.values, interrupts=source.interrupts or {}, config={},
                  error=None, created_at=0.0, updated_at=0.0)
    created = await asyncio.to_thread(ctx.store.put_thread, copy)
    if source.status == "interrupted":
        await asyncio.to_thread(ctx.store.set_thread_state, new_id, status="interrupted",
                                values=source.values, interrupts=source.interrupts)
        created = await _thread_or_404(ctx, new_id)
    return thread_json(created)


# --- state -----------------------------------------------------------------------------
@router.get("/threads/{thread_id}/state", summary="Get a thread's latest state")
async def get_state(thread_id: str, ctx: CtxDep, authz: AuthzDep,
                    subgraphs: bool = False) -> dict[str, Any]:
    return await _state(ctx, await authorized_thread(ctx, authz, thread_id), None, subgraphs)


@router.get("/threads/{thread_id}/state/{checkpoint_id}", summary="Get a thread's state at a checkpoint")
async def get_state_at(thread_id: str, checkpoint_id: str, ctx: CtxDep, authz: AuthzDep,
                       subgraphs: bool = False) -> dict[str, Any]:
    thread = await authorized_thread(ctx, authz, thread_id)
    return await _state(ctx, thread, {"checkpoint_id": checkpoint_id}, subgraphs)


@router.post("/threads/{thread_id}/state/checkpoint", summary="Get a thread's state at a checkpoint")
async def post_state_at(thread_id: str, body: ThreadStateCheckpoint, ctx: CtxDep,
                        authz: AuthzDep) -> dict[str, Any]:
    thread = await authorized_thread(ctx, authz, thread_id)
    return await _state(ctx, thread, body.checkpoint, body.subgraphs)


async def _state(ctx: Ctx, thread: Any, checkpoint: dict[str, Any] | None,
                 subgraphs: bool) -> dict[str, Any]:
    thread_id = thread.thread_id
    async with thread_graph(ctx, thread, "threads.read") as graph:
        if graph is None:
            return _empty_state()
        state = await graph.aget_state(_config(thread_id, checkpoint), subgraphs=subgraphs)
    # LangGraph answers a checkpoint it does not have with an empty snapshot (no created_at).
    if checkpoint and checkpoint.get("checkpoint_id") and state.created_at is None:
        raise HTTPException(404, f"checkpoint {checkpoint.get('checkpoint_id')!r} not found "
                                 f"in thread {thread_id}")
    return state_json(state)


@router.post("/threads/{thread_id}/state", summary="Update a thread's state")
async def update_state(thread_id: str, body: ThreadStateUpdate, ctx: CtxDep,
                       authz: AuthzDep) -> dict[str, Any]:
    thread = await authorized_thread(ctx, authz, thread_id, "update")
    if _graph_id(ctx, thread) is None:
        raise HTTPException(409, f"thread {thread_id} has no graph yet: run it once (or create "
                                 "it with graph_id) before updating its state")
    async with thread_graph(ctx, thread, "threads.update") as graph:
        return await _update_state(ctx, graph, thread_id, body)


async def _update_state(ctx: Ctx, graph: Any, thread_id: str,
                        body: ThreadStateUpdate) -> dict[str, Any]:
    if await _busy(ctx, thread_id):
        raise HTTPException(409, f"thread {thread_id} has a run in progress; wait for it or "
                                 "cancel it before updating its state")
    config = _config(thread_id, body.checkpoint, body.checkpoint_id)
    try:
        new = await graph.aupdate_state(config, body.values, as_node=body.as_node)
    except _BAD_UPDATE as exc:
        raise HTTPException(422, f"cannot update the state: {exc}") from exc
    state = await graph.aget_state(_config(thread_id))
    await asyncio.to_thread(
        ctx.store.set_thread_state, thread_id,
        status="interrupted" if state.next else "idle", values=to_json(state.values),
        interrupts={t.id: to_json(list(t.interrupts)) for t in state.tasks if t.interrupts})
    return {"checkpoint": checkpoint_json(new)}


@router.post("/threads/{thread_id}/history", summary="A thread's past states, newest first")
async def history(thread_id: str, body: ThreadHistory, ctx: CtxDep,
                  authz: AuthzDep) -> list[dict[str, Any]]:
    thread = await authorized_thread(ctx, authz, thread_id)
    async with thread_graph(ctx, thread, "threads.read") as graph:
        return [] if graph is None else await _history(graph, thread_id, body)


async def _history(graph: Any, thread_id: str, body: ThreadHistory) -> list[dict[str, Any]]:
    before = body.before
    if isinstance(before, str):
        before = {"configurable": {"checkpoint_id": before}}
    elif isinstance(before, dict) and "configurable" not in before:
        before = {"configurable": before}
    out = []
    async for state in graph.aget_state_history(_config(thread_id, body.checkpoint),
                                                limit=body.limit, before=before,
                                                filter=body.metadata):
        out.append(state_json(state))
    return out


@router.get("/threads/{thread_id}/history", summary="A thread's past states, newest first")
async def history_get(thread_id: str, ctx: CtxDep, authz: AuthzDep, limit: int = 10,
                      before: str | None = None) -> list[dict[str, Any]]:
    return await history(thread_id, ThreadHistory(limit=max(1, min(limit, 1000)), before=before),
                         ctx, authz)
