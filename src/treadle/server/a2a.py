"""The assistants as Agent2Agent (A2A, protocol 0.3) agents, as LangGraph Platform serves them.

* ``GET /.well-known/agent-card.json?assistant_id=...``: the assistant's agent card (name,
  description, one skill, text and JSON in and out, streaming) whose ``url`` is
  ``/a2a/{assistant_id}``;
* ``POST /a2a/{assistant_id}``: JSON-RPC 2.0 with the methods ``message/send`` (the task
  once the run ended; with ``configuration.blocking: false``, as soon as it is queued),
  ``message/stream`` (SSE: the task, then status updates, the reply artifact and the final
  status) and ``tasks/get``. ``tasks/cancel``, resubscription and push notifications answer
  "unsupported operation" (-32004), other methods "method not found".

Each message starts a run of the assistant on the thread its ``contextId`` names (created
when it does not exist; a new thread when the message has none): the task is that run (see
:mod:`treadle.server.a2a_tasks`). A ``taskId`` in the message is accepted and not used: a
paused (``input-required``) task is not resumed by a message.

Both routes need what the REST API needs (the app's authentication: 401/403 before the
route): reading the assistant (else 404, as ``GET /assistants/{id}``), ``threads.create`` /
``threads.create_run`` for a message and reading the run's thread for ``tasks/get``; a task
of a thread the caller may not read, or of another assistant, is "task not found". JSON-RPC
errors answer HTTP 200, as the protocol wants; an unknown assistant is a 404.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.responses import Response

from treadle.errors import InputError, NotFoundError, TreadleError
from treadle.redaction import redact
from treadle.server.a2a_tasks import MESSAGE_ID_KEY, input_of, reply_parts, task_of
from treadle.server.authz_deps import Authz, AuthzDep
from treadle.server.context import Ctx, get_ctx
from treadle.server.run_service import find_assistant

__all__ = ["PROTOCOL_VERSION", "agent_card", "router"]

router = APIRouter(tags=["a2a"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]

PROTOCOL_VERSION = "0.3.0"
_UNSUPPORTED = ("tasks/cancel", "tasks/resubscribe", "tasks/pushNotificationConfig/set",
                "tasks/pushNotificationConfig/get", "tasks/pushNotificationConfig/list",
                "tasks/pushNotificationConfig/delete", "agent/getAuthenticatedExtendedCard")


def agent_card(ctx: Ctx, assistant: Any, base_url: str, version: str) -> dict[str, Any]:
    """The A2A agent card of ``assistant``, served from ``base_url`` by treadle ``version``."""
    from a2a.types import AgentCapabilities, AgentCard, AgentSkill

    description = str(assistant.description or ctx.graphs.descriptions.get(assistant.graph_id)
                      or f"The assistant {assistant.name!r} (graph {assistant.graph_id!r})")
    card = AgentCard(
        name=assistant.name or assistant.graph_id, description=description,
        url=f"{base_url.rstrip('/')}/a2a/{assistant.assistant_id}", version=version,
        protocol_version=PROTOCOL_VERSION, preferred_transport="JSONRPC",
        capabilities=AgentCapabilities(streaming=True, push_notifications=False,
                                       state_transition_history=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[AgentSkill(id=f"{assistant.graph_id}-main", name=assistant.name or
                           assistant.graph_id, description=description,
                           tags=["assistant", assistant.graph_id])])
    out: dict[str, Any] = card.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


@router.get("/.well-known/agent-card.json", summary="An assistant's A2A agent card")
async def get_agent_card(request: Request, ctx: CtxDep, authz: AuthzDep,
                         assistant_id: Annotated[str, Query(min_length=1)]) -> dict[str, Any]:
    assistant = await find_assistant(ctx, assistant_id, authz)
    return agent_card(ctx, assistant, str(request.base_url), str(request.app.version))


class _RpcError(Exception):
    def __init__(self, error: Any) -> None:
        super().__init__(error.message)
        self.error = error


def _answer(ident: Any, result: Any = None, error: Any = None) -> dict[str, Any]:
    if error is not None:
        return {"jsonrpc": "2.0", "id": ident,
                "error": error.model_dump(mode="json", by_alias=True, exclude_none=True)}
    dumped = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"jsonrpc": "2.0", "id": ident, "result": dumped}


def _refusal(exc: Exception) -> Any:
    """The JSON-RPC error for a refusal of treadle's (a domain error or an HTTPException)."""
    from a2a.types import InternalError, InvalidParamsError, InvalidRequestError

    if isinstance(exc, HTTPException):
        return InvalidRequestError(message=f"refused ({exc.status_code}): {exc.detail}")
    if isinstance(exc, InputError | NotFoundError):
        return InvalidParamsError(message=redact(str(exc)))
    return InternalError(message=redact(str(exc)))


@router.post("/a2a/{assistant_id}", summary="A2A JSON-RPC: message/send, message/stream, tasks/get")
async def a2a_endpoint(assistant_id: str, request: Request, ctx: CtxDep,
                       authz: AuthzDep) -> Response:
    from a2a.types import (
        GetTaskRequest,
        InvalidRequestError,
        JSONParseError,
        JSONRPCRequest,
        MethodNotFoundError,
        SendMessageRequest,
        SendStreamingMessageRequest,
        UnsupportedOperationError,
    )
    assistant = await find_assistant(ctx, assistant_id, authz)
    try:
        doc = json.loads(await request.body())
    except ValueError:
        return JSONResponse(_answer(None, error=JSONParseError()))
    ident = doc.get("id") if isinstance(doc, dict) else None
    ident = ident if isinstance(ident, str | int) and not isinstance(ident, bool) else None
    try:
        base = JSONRPCRequest.model_validate(doc)
    except ValidationError:
        return JSONResponse(_answer(ident, error=InvalidRequestError(
            message="not a JSON-RPC 2.0 request")))
    models: dict[str, Any] = {"message/send": SendMessageRequest,
                              "message/stream": SendStreamingMessageRequest,
                              "tasks/get": GetTaskRequest}
    if base.method in _UNSUPPORTED:
        return JSONResponse(_answer(ident, error=UnsupportedOperationError(
            message=f"{base.method} is not supported by treadle")))
    model = models.get(base.method)
    if model is None:
        return JSONResponse(_answer(ident, error=MethodNotFoundError(
            message=f"method {base.method!r} not found: use message/send, message/stream "
                    "or tasks/get")))
    try:
        call = model.model_validate(doc)
    except ValidationError as exc:
        return JSONResponse(_answer(ident, error=_invalid_params(exc)))
    try:
        if base.method == "message/stream":  # a refusal is then an error event
            return _sse(ctx, ident, _events(ctx, authz, assistant, call.params))
        if base.method == "message/send":
            return JSONResponse(_answer(ident, await _send(ctx, authz, assistant, call.params)))
        return JSONResponse(_answer(ident, await _get(ctx, authz, assistant, call.params)))
    except _RpcError as exc:
        return JSONResponse(_answer(ident, error=exc.error))
    except (HTTPException, TreadleError) as exc:
        return JSONResponse(_answer(ident, error=_refusal(exc)))


def _invalid_params(exc: ValidationError) -> Any:
    """-32602 naming the first field the params got wrong (no values echoed back)."""
    from a2a.types import InvalidParamsError

    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return InvalidParamsError(message=f"invalid params: {where}: {first.get('msg', 'invalid')}")


async def _start(ctx: Ctx, authz: Authz, assistant: Any, params: Any, *, stream: bool) -> Any:
    """Queue the run a user message starts; the run's row."""
    from treadle.server.run_service import create_run
    from treadle.server.schemas import RunCreate

    message = params.message
    if message.role.value != "user":
        raise InputError("the message's role must be user")
    thread_id = message.context_id or str(uuid.uuid4())
    body = RunCreate(assistant_id=assistant.assistant_id, input=input_of(message),
                     if_not_exists="create", stream_mode="values",
                     metadata={MESSAGE_ID_KEY: message.message_id})
    row, _spec = await create_run(ctx, body, thread_id, stream=stream, authz=authz)
    return row


async def _send(ctx: Ctx, authz: Authz, assistant: Any, params: Any) -> Any:
    from treadle.cluster.watch import wait as wait_for

    row = await _start(ctx, authz, assistant, params, stream=False)
    history = params.configuration.history_length if params.configuration else None
    if params.configuration is not None and params.configuration.blocking is False:
        return task_of(row, history)
    done = await wait_for(ctx.store, row.run_id)
    if done is None:
        raise NotFoundError(f"run {row.run_id} was deleted while it ran")
    return task_of(done, history)


async def _get(ctx: Ctx, authz: Authz, assistant: Any, params: Any) -> Any:
    from a2a.types import TaskNotFoundError

    from treadle.server.serialize import run_spec

    missing = _RpcError(TaskNotFoundError(message=f"task {params.id!r} not found"))
    row = await asyncio.to_thread(ctx.store.get_run, params.id)
    if row is None:
        raise missing
    try:
        access = await authz.resource("threads", "read",
                                      {"thread_id": row.thread_id, "run_id": row.run_id}, "")
    except HTTPException as exc:
        if exc.status_code == 404:
            raise missing from None
        raise
    if access is not None and await asyncio.to_thread(
            ctx.store.get_thread, row.thread_id, access=access) is None:
        raise missing
    if run_spec(row).assistant_id != assistant.assistant_id:
        raise missing
    return task_of(row, params.history_length)


async def _events(ctx: Ctx, authz: Authz, assistant: Any, params: Any) -> AsyncIterator[Any]:
    """Start the run; then the task, its status updates (one per new reply of the graph),
    the reply artifact and the final status."""
    from a2a.types import (
        Message,
        Role,
        TaskArtifactUpdateEvent,
        TaskState,
        TaskStatus,
        TaskStatusUpdateEvent,
    )

    from treadle.server.sse import follow_run

    row = await _start(ctx, authz, assistant, params, stream=True)
    task_id, context_id = row.run_id, row.thread_id
    yield task_of(row)

    def status(state: str, message: Any = None, final: bool = False) -> Any:
        return TaskStatusUpdateEvent(task_id=task_id, context_id=context_id, final=final,
                                     status=TaskStatus(state=TaskState(state), message=message))

    yield status("working")
    seen = 0
    async for event in follow_run(ctx, row.run_id, ["values"], False, metadata=False):
        if event["event"] != "values":
            continue
        values = json.loads(event["data"])
        if not isinstance(values, dict) or not isinstance(values.get("messages"), list):
            continue  # a graph without messages: its reply is the final output
        count = len(values["messages"])
        parts = reply_parts(values)
        if parts and count > seen:
            yield status("working", Message(role=Role.agent, parts=parts,
                                            message_id=f"{task_id}-{count}",
                                            context_id=context_id, task_id=task_id))
        seen = max(seen, count)
    done = await asyncio.to_thread(ctx.store.get_run, row.run_id)
    if done is None:
        return
    task = task_of(done)
    for artifact in task.artifacts or []:
        yield TaskArtifactUpdateEvent(task_id=task_id, context_id=context_id,
                                      artifact=artifact, last_chunk=True)
    yield TaskStatusUpdateEvent(task_id=task_id, context_id=context_id, final=True,
                                status=task.status)


def _sse(ctx: Ctx, ident: Any, events: AsyncIterator[Any]) -> Response:
    from treadle.server.sse import EventStream

    async def frames() -> AsyncIterator[dict[str, Any]]:
        try:
            async for event in events:
                yield {"data": json.dumps(_answer(ident, event))}
        except _RpcError as exc:
            yield {"data": json.dumps(_answer(ident, error=exc.error))}
        except (HTTPException, TreadleError) as exc:
            yield {"data": json.dumps(_answer(ident, error=_refusal(exc)))}

    return EventStream(frames(), ping=ctx.settings.sse_heartbeat, sep="\n")
