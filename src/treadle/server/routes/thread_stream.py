"""Thread streams: ``GET /threads/{id}/stream`` and the v3 thread protocol.

The protocol (``client.threads.stream(...)`` of langgraph-sdk): commands go to
``POST /threads/{id}/commands`` (JSON in, JSON out; protocol errors are answered with 200
and an ``{"type": "error"}`` body); events come from ``POST /threads/{id}/stream/events``
(SSE, one filtered stream per request, ``since`` in the body) or from a WebSocket on the
same path, which takes ``subscription.subscribe`` / ``subscription.unsubscribe`` and the
other commands as JSON frames. The logic is in ``treadle.server.thread_events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse
from starlette.websockets import WebSocketDisconnect

from treadle import metrics
from treadle.errors import TreadleError
from treadle.jsonable import dumps
from treadle.server.authz_deps import Authz, AuthzDep, get_authz
from treadle.server.context import Ctx, get_ctx
from treadle.server.limits import check_json
from treadle.server.sse import EventStream
from treadle.server.thread_events import (
    CHANNELS,
    EventFilter,
    error_response,
    join_thread,
    protocol_events,
    run_command,
)

__all__ = ["router"]

log = logging.getLogger("treadle.server")

router = APIRouter(tags=["thread-stream"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]
ThreadStreamMode = Literal["run_modes", "lifecycle", "state_update"]


class EventStreamRequest(BaseModel):
    """The body of ``POST /threads/{id}/stream/events`` (the protocol's ``EventStreamRequest``)."""

    model_config = ConfigDict(extra="forbid")
    channels: list[str] = Field(min_length=1)
    namespaces: list[list[str]] | None = None
    depth: int | None = Field(default=None, ge=0)
    since: int | None = Field(default=None, ge=0)


class ProtocolCommand(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int = Field(ge=0)
    method: str
    params: dict[str, Any] | None = None


async def _readable(ctx: Ctx, authz: Authz, thread_id: str, *, exists: bool
                    ) -> dict[str, Any] | None:
    """404 unless the user may read the thread (which must exist when ``exists``; one that
    does not exist yet may be streamed: its events are checked by :func:`_guarded`). The
    access filter."""
    missing = f"thread {thread_id!r} not found"
    access = await authz.resource("threads", "read", {"thread_id": thread_id}, missing)
    if (exists or access is not None) and await asyncio.to_thread(
            ctx.store.get_thread, thread_id, access=access) is None:
        if exists or await asyncio.to_thread(ctx.store.get_thread, thread_id) is not None:
            raise HTTPException(404, missing)
    return access


async def _guarded(ctx: Ctx, thread_id: str, access: dict[str, Any] | None,
                   events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``events``, once the thread (created after the stream was opened) is found to match
    the user's access filter; nothing if it does not."""
    checked = access is None
    async for event in events:
        if not checked:
            if await asyncio.to_thread(ctx.store.get_thread, thread_id, access=access) is None:
                return
            checked = True
        yield event


def _filter(channels: list[str], namespaces: list[list[str]] | None, depth: int | None
            ) -> EventFilter:
    unknown = [c for c in channels if c not in CHANNELS and not c.startswith("custom:")]
    if unknown:
        raise ValueError(f"unknown channel(s) {', '.join(map(repr, unknown))} "
                         f"(use {', '.join(CHANNELS)} or custom:<name>)")
    return EventFilter(set(channels), namespaces, depth)


@router.get("/threads/{thread_id}/stream", response_class=EventSourceResponse,
            summary="Stream every run of a thread, one after the other")
async def join_thread_stream(
    thread_id: str, request: Request, ctx: CtxDep, authz: AuthzDep,
    stream_mode: Annotated[list[ThreadStreamMode] | None, Query()] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    await _readable(ctx, authz, thread_id, exists=True)
    events = join_thread(ctx, thread_id, stream_mode or ["run_modes"], last_event_id)
    # The SDK reconnects a dropped stream to Location with the last id it saw.
    location = quote(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
    return EventStream(events, ping=ctx.settings.sse_heartbeat, sep="\n",
                       headers={"Location": location})


@router.post("/threads/{thread_id}/commands", summary="Run a thread protocol command")
async def thread_command(thread_id: str, body: ProtocolCommand, ctx: CtxDep,
                         authz: AuthzDep) -> JSONResponse:
    await _readable(ctx, authz, thread_id, exists=False)
    return JSONResponse(await run_command(ctx, thread_id, body.model_dump(exclude_unset=True),
                                          authz))


@router.post("/threads/{thread_id}/stream/events", response_class=EventSourceResponse,
             summary="Stream a thread's protocol events (SSE)")
async def thread_events(thread_id: str, body: Annotated[EventStreamRequest, Body()], ctx: CtxDep,
                        authz: AuthzDep) -> EventSourceResponse:
    access = await _readable(ctx, authz, thread_id, exists=False)
    try:
        filt = _filter(body.channels, body.namespaces, body.depth)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    events = _guarded(ctx, thread_id, access, protocol_events(ctx, thread_id, body.since, filt))
    return EventStream(_sse(events),
                       ping=ctx.settings.sse_heartbeat, sep="\n")


async def _sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    try:
        async for event in events:
            yield {"event": event["method"], "data": dumps(event).decode(), "id": str(event["seq"])}
    except TreadleError as exc:
        # An unsolicited error frame: the SDK reports it and reconnects with `since`.
        log.warning("thread event stream failed: %s", exc)
        yield {"event": "error", "data": dumps(error_response(None, "unknown_error", str(exc))).decode()}


@router.websocket("/threads/{thread_id}/stream/events")
async def thread_events_socket(websocket: WebSocket, thread_id: str) -> None:
    ctx: Ctx = websocket.app.state.ctx
    authz = get_authz(websocket)
    try:  # refused before the handshake completes
        access = await _readable(ctx, authz, thread_id, exists=False)
    except HTTPException as exc:
        await websocket.close(code=4000 + exc.status_code)
        return
    await websocket.accept()
    metrics.STREAM_SUBSCRIBERS.inc()
    lock = asyncio.Lock()
    pumps: dict[str, asyncio.Task[None]] = {}

    async def send(message: dict[str, Any]) -> None:
        async with lock:
            await websocket.send_text(dumps(message).decode())

    async def pump(filt: EventFilter, since: int | None) -> None:
        try:
            async for event in _guarded(ctx, thread_id, access,
                                        protocol_events(ctx, thread_id, since, filt)):
                await send(event)
        except TreadleError as exc:
            log.warning("thread event socket failed: %s", exc)
            with contextlib.suppress(Exception):
                await send(error_response(None, "unknown_error", str(exc)))
                await websocket.close(code=1011)

    try:
        while True:
            try:
                text = await websocket.receive_text()
                check_json(text)  # the limits every HTTP body meets
                command = json.loads(text)
            except RequestValidationError as exc:
                await send(error_response(None, "invalid_argument", str(exc.errors()[0]["msg"])))
                continue
            except ValueError:
                await send(error_response(None, "invalid_argument", "a command is a JSON object"))
                continue
            ident = command.get("id") if isinstance(command, dict) else None
            method = command.get("method") if isinstance(command, dict) else None
            params = command.get("params") if isinstance(command, dict) else None
            if method == "subscription.subscribe" and isinstance(ident, int):
                try:
                    body = EventStreamRequest.model_validate(params or {})
                    filt = _filter(body.channels, body.namespaces, body.depth)
                except ValueError as exc:
                    await send(error_response(ident, "invalid_argument", str(exc)))
                    continue
                subscription_id = str(uuid.uuid4())
                # The answer goes first: the client knows the subscription before its events.
                await send({"type": "success", "id": ident,
                            "result": {"subscription_id": subscription_id}})
                pumps[subscription_id] = asyncio.create_task(pump(filt, body.since))
            elif method == "subscription.unsubscribe" and isinstance(ident, int):
                found = pumps.pop(str((params or {}).get("subscription_id")), None)
                if found is None:
                    await send(error_response(ident, "no_such_subscription", "no such subscription"))
                    continue
                found.cancel()
                await send({"type": "success", "id": ident, "result": {}})
            else:
                await send(await run_command(ctx, thread_id, command, authz))
    except WebSocketDisconnect:
        pass
    finally:
        metrics.STREAM_SUBSCRIBERS.dec()
        for task in pumps.values():
            task.cancel()
        await asyncio.gather(*pumps.values(), return_exceptions=True)
