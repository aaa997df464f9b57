"""``POST /mcp``: the assistants as tools of a Model Context Protocol server (streamable HTTP).

As LangGraph Platform does, every assistant the caller may see is one tool: its name is the
assistant's name (characters a tool name may not hold become ``_``; when two visible
assistants share a name, the newer ones are ``<name>-<assistant_id>``), its description the
assistant's (else the graph's, from langgraph.json), its ``inputSchema`` the graph's input
JSON schema, and ``_meta`` holds ``assistant_id`` and ``graph_id``. ``tools/call`` runs a
stateless run of the assistant with the arguments as its input and waits for it: the result
is the run's output as JSON text and as ``structuredContent`` (an output that is no JSON
object is ``{"result": output}``). Arguments the input schema refuses, an unknown tool and a
run that fails are tool results with ``isError`` (the message says why), never a crash.

The server is the ``mcp`` package's low-level :class:`~mcp.server.lowlevel.Server` behind its
stateless :class:`~mcp.server.streamable_http_manager.StreamableHTTPSessionManager` (JSON
answers, no sessions, no GET stream). Both are made for each request, inside it: the tools
and calls run with the request's user, encryption context and log context (a manager started
at start-up would run them in a task that has none of these). Authentication is the app's
(the middleware answers 401/403 before this route); listing is authorized as
``assistants.search`` and calling as a run (``assistants.read`` + ``threads.create_run``),
exactly as the REST routes do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from treadle.errors import TreadleError
from treadle.redaction import redact
from treadle.server.authz_deps import Authz, AuthzDep
from treadle.server.context import Ctx, get_ctx

__all__ = ["router", "tool_names", "visible_assistants"]

log = logging.getLogger("treadle.server.mcp")

router = APIRouter(tags=["mcp"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]

MAX_TOOLS = 1000  # the newest assistants past this many are not listed
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_.\-]")


async def visible_assistants(ctx: Ctx, authz: Authz, limit: int = MAX_TOOLS) -> list[Any]:
    """The assistants the caller may see (``assistants.search``), oldest first."""
    value: dict[str, Any] = {"graph_id": None, "metadata": {}, "limit": limit, "offset": 0}
    access = await authz.action("assistants", "search", value)
    found: list[Any] = await asyncio.to_thread(
        ctx.store.search_assistants, graph_id=value["graph_id"], name=None,
        metadata=value["metadata"], limit=limit, offset=0, sort_by="created_at",
        sort_order="asc", access=access)
    return found


def tool_names(assistants: list[Any]) -> dict[str, Any]:
    """Tool name -> assistant: the name made a valid tool name; the older keeps it when two
    collide, the newer gets ``-<assistant_id>`` appended."""
    out: dict[str, Any] = {}
    for a in assistants:
        name = _NOT_A_NAME.sub("_", a.name or "")[:128] or "assistant"
        if name in out:
            name = f"{name[:90]}-{a.assistant_id}"[:128]
        out[name] = a
    return out


def _description(ctx: Ctx, a: Any) -> str:
    return str(a.description or ctx.graphs.descriptions.get(a.graph_id) or
               f"Run the assistant {a.name!r} (graph {a.graph_id!r})")


async def _input_schema(ctx: Ctx, a: Any, cache: dict[str, Any]) -> dict[str, Any]:
    key = json.dumps([a.graph_id, a.config], sort_keys=True, default=str)
    if key not in cache:
        try:
            schemas = await ctx.graphs.schemas(a.graph_id, a.config)
            cache[key] = schemas.get("input_schema")
        except TreadleError as exc:  # a graph this replica does not serve: listed, unchecked
            log.info("assistant %s: no input schema (%s)", a.assistant_id, exc)
            cache[key] = None
    schema = cache[key]
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return {"type": "object"}
    return schema


def _server(ctx: Ctx, authz: Authz) -> Any:
    """A low-level MCP server whose tools are the caller's assistants."""
    from mcp import types
    from mcp.server.lowlevel import Server

    server: Any = Server("treadle")
    listed: dict[str, Any] = {}

    async def refresh() -> None:
        listed.clear()
        listed.update(tool_names(await visible_assistants(ctx, authz)))

    @server.list_tools()  # type: ignore[untyped-decorator]
    async def list_tools() -> list[types.Tool]:
        try:
            await refresh()
        except HTTPException as exc:
            from mcp.shared.exceptions import McpError

            raise McpError(types.ErrorData(code=types.INVALID_REQUEST,
                                           message=str(exc.detail))) from None
        cache: dict[str, Any] = {}
        return [types.Tool(name=name, description=_description(ctx, a),
                           inputSchema=await _input_schema(ctx, a, cache),
                           _meta={"assistant_id": a.assistant_id, "graph_id": a.graph_id})
                for name, a in listed.items()]

    @server.call_tool()  # type: ignore[untyped-decorator]
    async def call_tool(name: str, arguments: dict[str, Any]) -> Any:
        if name not in listed:
            await refresh()
        assistant = listed.get(name)
        if assistant is None:
            return _error(f"unknown tool {name!r}: call tools/list for the tools you may call")
        return await _run(ctx, authz, assistant, arguments)

    return server


def _error(message: str) -> Any:
    from mcp import types

    return types.CallToolResult(content=[types.TextContent(type="text", text=redact(message))],
                                isError=True)


async def _run(ctx: Ctx, authz: Authz, assistant: Any, arguments: dict[str, Any]) -> Any:
    """A stateless run of ``assistant`` with ``arguments`` as input, waited for."""
    from mcp import types

    from treadle.cluster.watch import wait as wait_for
    from treadle.server.run_service import create_run
    from treadle.server.schemas import RunCreate
    from treadle.server.serialize import run_output

    try:
        body = RunCreate(assistant_id=assistant.assistant_id, input=arguments)
        row, _spec = await create_run(ctx, body, None, stream=False, stateless=True,
                                      authz=authz)
        done = await wait_for(ctx.store, row.run_id)
    except HTTPException as exc:
        return _error(f"refused ({exc.status_code}): {exc.detail}")
    except TreadleError as exc:
        return _error(str(exc))
    if done is None:
        return _error(f"run {row.run_id} was deleted while it ran")
    output = run_output(done)
    if isinstance(output, dict) and "__error__" in output:
        err = output["__error__"]
        return _error(f"the run failed: {err.get('error')}: {err.get('message')}")
    structured = output if isinstance(output, dict) else {"result": output}
    text = json.dumps(output, ensure_ascii=False, default=str)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structuredContent=structured, isError=False)


class _Exchange(Response):
    """Hands the request to the MCP transport, which writes the answer itself."""

    def __init__(self, ctx: Ctx, authz: Authz, body: bytes) -> None:
        super().__init__()
        self.ctx, self.authz, self.body_bytes = ctx, authz, body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        manager = StreamableHTTPSessionManager(_server(self.ctx, self.authz), stateless=True,
                                               json_response=True)
        replayed = False

        async def replay() -> Message:  # the body FastAPI already read, then the rest
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": self.body_bytes, "more_body": False}
            return await receive()

        async with manager.run():
            await manager.handle_request(scope, replay, send)


@router.post("/mcp", summary="MCP (streamable HTTP, stateless): the assistants as tools",
             response_class=Response)
async def mcp_endpoint(request: Request, ctx: CtxDep, authz: AuthzDep) -> Response:
    return _Exchange(ctx, authz, await request.body())
