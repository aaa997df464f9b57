"""Thread runs and stateless runs: create, stream, wait, list, get, delete, join, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from treadle.cluster.notify import notifier_for
from treadle.cluster.watch import wait as wait_for
from treadle.server.authz_deps import Authz, AuthzDep
from treadle.server.context import Ctx, get_ctx
from treadle.server.idempotency_header import HEADER, run_key
from treadle.server.routes.threads import authorized_thread
from treadle.server.run_service import authorize_run, check_run, create_run, stream_modes
from treadle.server.schemas import MAX_OFFSET, RunBatchItem, RunCancelMany, RunCreate
from treadle.server.serialize import run_json, run_output, run_spec
from treadle.server.sse import EventStream, follow_run
from treadle.store.queue import ACTIVE, CHANNEL_CANCEL, RunRow

__all__ = ["router"]

router = APIRouter(tags=["runs"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]
# Retrying a create with the same key returns (or joins) the first run: see
# treadle.server.idempotency_header.
KeyHeader = Annotated[str | None, Header(alias=HEADER, description=(
    "Make the create idempotent: a retry with the same key and request returns (for "
    "/stream and /wait, joins) the run the first one created."))]


def _run_path(row: RunRow) -> str:
    # Percent-encoded: it goes into headers, which are Latin-1, and ids are any text.
    return f"/threads/{quote(row.thread_id, safe='')}/runs/{quote(row.run_id, safe='')}"


def _sse(ctx: Ctx, stream: AsyncIterator[dict[str, Any]], headers: dict[str, str]
         ) -> EventSourceResponse:
    return EventStream(stream, ping=ctx.settings.sse_heartbeat, sep="\n", headers=headers)


async def _run_or_404(ctx: Ctx, authz: Authz, thread_id: str, run_id: str,
                      verb: str = "read", **value: Any) -> RunRow:
    """The thread's run, if the user may ``verb`` the thread (404 otherwise)."""
    missing = f"run {run_id!r} not found"
    access = await authz.resource("threads", verb,
                                  {"thread_id": thread_id, "run_id": run_id, **value}, missing)
    row = await asyncio.to_thread(ctx.store.get_run, run_id)
    if row is None or row.thread_id != thread_id or (access is not None and await asyncio.to_thread(
            ctx.store.get_thread, thread_id, access=access) is None):
        raise HTTPException(404, missing)
    return row


async def _stream_new(ctx: Ctx, authz: Authz, body: RunCreate, thread_id: str | None,
                      stateless: bool, key: str | None) -> EventSourceResponse:
    row, spec = await create_run(
        ctx, body, thread_id, stream=True, stateless=stateless, authz=authz,
        key=run_key(key, body, thread_id, stateless=stateless, stream=True))
    modes = stream_modes(body.stream_mode)
    events = follow_run(ctx, row.run_id, modes, body.stream_subgraphs)
    if body.on_disconnect == "cancel":
        events = _cancel_on_disconnect(ctx, row.run_id, events)
    path = _run_path(row)
    return _sse(ctx, events, {"Location": f"{path}/stream", "Content-Location": path})


async def _cancel_on_disconnect(ctx: Ctx, run_id: str, events: AsyncIterator[dict[str, Any]]
                                ) -> AsyncIterator[dict[str, Any]]:
    finished = False
    try:
        async for message in events:
            yield message
        finished = True
    finally:
        if not finished:
            await asyncio.shield(asyncio.to_thread(ctx.store.cancel_run, run_id, "cancel"))
            notifier_for(ctx.store).emit(CHANNEL_CANCEL, run_id)


async def _wait_new(ctx: Ctx, authz: Authz, body: RunCreate, thread_id: str | None,
                    stateless: bool, key: str | None) -> JSONResponse:
    row, _payload = await create_run(
        ctx, body, thread_id, stream=False, stateless=stateless, authz=authz,
        key=run_key(key, body, thread_id, stateless=stateless, stream=False))
    path = _run_path(row)
    done = await wait_for(ctx.store, row.run_id)
    if done is None:
        raise HTTPException(404, f"run {row.run_id} was deleted while it ran")
    return JSONResponse(run_output(done), headers={"Location": f"{path}/join",
                                                    "Content-Location": path})


# --- thread runs -----------------------------------------------------------------------
@router.post("/threads/{thread_id}/runs", summary="Create a background run")
async def create_thread_run(thread_id: str, body: RunCreate, ctx: CtxDep, authz: AuthzDep,
                            idempotency_key: KeyHeader = None) -> JSONResponse:
    row, spec = await create_run(
        ctx, body, thread_id, stream=True, authz=authz,
        key=run_key(idempotency_key, body, thread_id, stateless=False, stream=True))
    return JSONResponse(run_json(row, spec), headers={"Content-Location": _run_path(row)})


@router.post("/threads/{thread_id}/runs/stream", summary="Create a run and stream its output",
             response_class=EventSourceResponse)
async def stream_thread_run(thread_id: str, body: RunCreate, ctx: CtxDep, authz: AuthzDep,
                            idempotency_key: KeyHeader = None) -> EventSourceResponse:
    return await _stream_new(ctx, authz, body, thread_id, False, idempotency_key)


@router.post("/threads/{thread_id}/runs/wait", summary="Create a run and wait for its output")
async def wait_thread_run(thread_id: str, body: RunCreate, ctx: CtxDep, authz: AuthzDep,
                          idempotency_key: KeyHeader = None) -> JSONResponse:
    return await _wait_new(ctx, authz, body, thread_id, False, idempotency_key)


@router.get("/threads/{thread_id}/runs", summary="List a thread's runs, newest first")
async def list_thread_runs(
    thread_id: str, ctx: CtxDep, authz: AuthzDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    status: Literal["pending", "running", "error", "success", "timeout", "interrupted"] | None = None,
) -> list[dict[str, Any]]:
    await authorized_thread(ctx, authz, thread_id)
    rows = await asyncio.to_thread(ctx.store.list_runs, thread_id=thread_id, status=status,
                                   limit=limit, offset=offset)
    return [run_json(r) for r in rows]


@router.get("/threads/{thread_id}/runs/{run_id}", summary="Get a run")
async def get_thread_run(thread_id: str, run_id: str, ctx: CtxDep, authz: AuthzDep) -> dict[str, Any]:
    return run_json(await _run_or_404(ctx, authz, thread_id, run_id))


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204, summary="Delete a finished run")
async def delete_thread_run(thread_id: str, run_id: str, ctx: CtxDep, authz: AuthzDep) -> Response:
    row = await _run_or_404(ctx, authz, thread_id, run_id, "delete")
    if row.status in ACTIVE:
        raise HTTPException(409, f"run {run_id} is {row.status}: cancel it before deleting it")
    await asyncio.to_thread(ctx.store.delete_runs, [run_id])
    return Response(status_code=204)


@router.get("/threads/{thread_id}/runs/{run_id}/join", summary="Wait for a run's output")
async def join_thread_run(thread_id: str, run_id: str, ctx: CtxDep, authz: AuthzDep) -> Any:
    await _run_or_404(ctx, authz, thread_id, run_id)
    done = await wait_for(ctx.store, run_id)
    if done is None:
        raise HTTPException(404, f"run {run_id!r} not found")
    return run_output(done)


@router.get("/threads/{thread_id}/runs/{run_id}/stream", summary="Join a run's stream",
            response_class=EventSourceResponse)
async def join_thread_run_stream(
    thread_id: str, run_id: str, ctx: CtxDep, authz: AuthzDep,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    cancel_on_disconnect: bool = False,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    row = await _run_or_404(ctx, authz, thread_id, run_id)
    spec = run_spec(row)
    modes = stream_modes(stream_mode or spec.stream_mode)
    subgraphs = bool(spec.kwargs.get("subgraphs"))
    events = follow_run(ctx, run_id, modes, subgraphs, last_event_id=last_event_id)
    if cancel_on_disconnect:
        events = _cancel_on_disconnect(ctx, run_id, events)
    return _sse(ctx, events, {"Location": f"{_run_path(row)}/stream"})


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", summary="Cancel a run")
async def cancel_thread_run(
    thread_id: str, run_id: str, ctx: CtxDep, authz: AuthzDep, wait: bool = False,
    action: Literal["interrupt", "rollback"] = "interrupt",
) -> Response:
    await _run_or_404(ctx, authz, thread_id, run_id, "update", action=action)
    await _cancel(ctx, run_id, action)
    if wait:
        done = await wait_for(ctx.store, run_id)
        return JSONResponse(run_output(done) if done is not None else None)
    return Response(status_code=202)


async def _cancel(ctx: Ctx, run_id: str, action: str) -> RunRow | None:
    row = await asyncio.to_thread(ctx.store.cancel_run, run_id, action)
    notifier_for(ctx.store).emit(CHANNEL_CANCEL, run_id)
    return row


# --- stateless runs --------------------------------------------------------------------
@router.post("/runs", summary="Create a stateless background run")
async def create_stateless_run(body: RunCreate, ctx: CtxDep, authz: AuthzDep,
                               idempotency_key: KeyHeader = None) -> JSONResponse:
    row, spec = await create_run(
        ctx, body, None, stream=True, stateless=True, authz=authz,
        key=run_key(idempotency_key, body, None, stateless=True, stream=True))
    return JSONResponse(run_json(row, spec), headers={"Content-Location": _run_path(row)})


@router.post("/runs/stream", summary="Create a stateless run and stream its output",
             response_class=EventSourceResponse)
async def stream_stateless_run(body: RunCreate, ctx: CtxDep, authz: AuthzDep,
                               idempotency_key: KeyHeader = None) -> EventSourceResponse:
    return await _stream_new(ctx, authz, body, None, True, idempotency_key)


@router.post("/runs/wait", summary="Create a stateless run and wait for its output")
async def wait_stateless_run(body: RunCreate, ctx: CtxDep, authz: AuthzDep,
                             idempotency_key: KeyHeader = None) -> JSONResponse:
    return await _wait_new(ctx, authz, body, None, True, idempotency_key)


@router.post("/runs/batch", summary="Create stateless background runs")
async def create_run_batch(body: list[RunBatchItem], ctx: CtxDep, authz: AuthzDep,
                           idempotency_key: KeyHeader = None) -> list[dict[str, Any]]:
    for item in body:  # all or none: refuse the batch before queueing any of it
        await check_run(ctx, item)
        if authz.on:
            await authorize_run(ctx, authz, item, None, True)
    out = []
    for i, item in enumerate(body):  # with a key: item i is keyed "<key>#i"
        key = run_key(idempotency_key, item, None, stateless=True, stream=True, index=i)
        row, spec = await create_run(ctx, item, None, stream=True, stateless=True, key=key,
                                     authz=authz)
        out.append(run_json(row, spec))
    return out


@router.post("/runs/cancel", status_code=204, summary="Cancel several runs")
async def cancel_runs(body: RunCancelMany, ctx: CtxDep, authz: AuthzDep,
                      action: Literal["interrupt", "rollback"] = "interrupt") -> Response:
    store = ctx.store
    if body.run_ids:
        rows = [r for r in [await asyncio.to_thread(store.get_run, i) for i in body.run_ids] if r]
        if body.thread_id:
            rows = [r for r in rows if r.thread_id == body.thread_id]
    elif body.thread_id or body.status:
        statuses = ["pending", "running"] if body.status in (None, "all") else [body.status]
        rows = []
        for status in statuses:
            rows += await asyncio.to_thread(store.list_runs, thread_id=body.thread_id,
                                            status=status, limit=10_000)
    else:
        raise HTTPException(422, "give run_ids, thread_id or status")
    if authz.on:
        rows = await _cancellable(ctx, authz, rows, action)
    for row in rows:
        if row.status in ACTIVE:
            await _cancel(ctx, row.run_id, action)
    return Response(status_code=204)


async def _cancellable(ctx: Ctx, authz: Authz, rows: list[RunRow], action: str) -> list[RunRow]:
    """The runs whose thread the user may update (the others are left alone, unseen)."""
    allowed: dict[str, bool] = {}
    for row in rows:
        if row.thread_id not in allowed:
            decided = await authz.decide("threads", "update", {
                "thread_id": row.thread_id, "run_id": row.run_id, "action": action})
            allowed[row.thread_id] = decided.allowed and await asyncio.to_thread(
                ctx.store.get_thread, row.thread_id, access=decided.filters) is not None
    return [r for r in rows if allowed[r.thread_id]]
