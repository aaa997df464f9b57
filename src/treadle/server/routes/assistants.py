"""Assistants: a graph with a config. Every served graph has a default one."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response

from treadle.errors import ConflictError
from treadle.server.authz_deps import AuthzDep, both
from treadle.server.context import Ctx, get_ctx
from treadle.server.run_service import find_assistant
from treadle.server.schemas import (
    AssistantCreate,
    AssistantPatch,
    AssistantSearch,
    AssistantVersionsSearch,
    CountBody,
    LatestVersion,
)
from treadle.server.serialize import assistant_json

__all__ = ["router"]

router = APIRouter(tags=["assistants"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]


@router.post("/assistants", summary="Create an assistant")
async def create_assistant(body: AssistantCreate, ctx: CtxDep, authz: AuthzDep) -> dict[str, Any]:
    from treadle.store.assistant_records import Assistant

    ctx.graphs.get(body.graph_id)
    value: dict[str, Any] = {
        "assistant_id": body.assistant_id or str(uuid.uuid4()), "graph_id": body.graph_id,
        "config": body.config or {}, "context": body.context or {},
        "metadata": body.metadata or {}, "if_exists": body.if_exists,
        "name": body.name or "Untitled"}
    created_filter = await authz.action("assistants", "create", value)
    ctx.graphs.get(value["graph_id"])
    a = Assistant(assistant_id=str(value["assistant_id"]), graph_id=value["graph_id"],
                  config=value["config"], context=value["context"],
                  metadata=value["metadata"], name=value["name"],
                  description=body.description, version=1, created_at=0.0, updated_at=0.0)
    try:
        created = await asyncio.to_thread(ctx.store.put_assistant, a, if_exists=body.if_exists)
    except ConflictError as exc:
        raise HTTPException(409, f"assistant {a.assistant_id} already exists") from exc
    if authz.on and body.if_exists == "do_nothing":  # an existing one must be the user's
        read = await authz.action("assistants", "read", {"assistant_id": a.assistant_id})
        access = both(created_filter, read)
        if access is not None and await asyncio.to_thread(
                ctx.store.get_assistant, a.assistant_id, access=access) is None:
            raise HTTPException(409, f"assistant {a.assistant_id} already exists")
    return assistant_json(created)


@router.post("/assistants/search", summary="Search assistants")
async def search_assistants(body: AssistantSearch, ctx: CtxDep,
                            authz: AuthzDep) -> list[dict[str, Any]]:
    value: dict[str, Any] = {"graph_id": body.graph_id, "metadata": dict(body.metadata or {}),
                             "limit": body.limit, "offset": body.offset}
    access = await authz.action("assistants", "search", value)
    found = await asyncio.to_thread(
        ctx.store.search_assistants, graph_id=value["graph_id"], name=body.name,
        metadata=value["metadata"], limit=body.limit, offset=body.offset,
        sort_by=body.sort_by or "created_at", sort_order=body.sort_order or "desc",
        access=access)
    docs = [assistant_json(a) for a in found]
    if body.select:
        docs = [{k: v for k, v in d.items() if k in body.select} for d in docs]
    return docs


@router.post("/assistants/count", summary="Count assistants")
async def count_assistants(body: CountBody, ctx: CtxDep, authz: AuthzDep) -> int:
    value: dict[str, Any] = {"graph_id": body.graph_id, "metadata": dict(body.metadata or {}),
                             "limit": 0, "offset": 0}
    access = await authz.action("assistants", "search", value)
    return await asyncio.to_thread(ctx.store.count_assistants, graph_id=value["graph_id"],
                                   name=body.name, metadata=value["metadata"], access=access)


@router.get("/assistants/{assistant_id}", summary="Get an assistant")
async def get_assistant(assistant_id: str, ctx: CtxDep, authz: AuthzDep) -> dict[str, Any]:
    return assistant_json(await find_assistant(ctx, assistant_id, authz))


@router.patch("/assistants/{assistant_id}", summary="Update an assistant (a new version)")
async def patch_assistant(assistant_id: str, body: AssistantPatch, ctx: CtxDep,
                          authz: AuthzDep) -> dict[str, Any]:
    current = await find_assistant(ctx, assistant_id)
    value: dict[str, Any] = {
        "assistant_id": current.assistant_id, "graph_id": body.graph_id, "config": body.config,
        "context": body.context, "metadata": dict(body.metadata or {}), "name": body.name, "version": None}
    access = await authz.resource("assistants", "update", value,
                                  f"assistant {assistant_id!r} not found")
    if value["graph_id"]:
        ctx.graphs.get(value["graph_id"])
    found = await asyncio.to_thread(
        ctx.store.patch_assistant, current.assistant_id, graph_id=value["graph_id"],
        config=value["config"], context=value["context"], metadata=value["metadata"],
        name=value["name"], description=body.description, access=access)
    if found is None:
        raise HTTPException(404, f"assistant {assistant_id!r} not found")
    return assistant_json(found)


@router.delete("/assistants/{assistant_id}", status_code=204, summary="Delete an assistant")
async def delete_assistant(assistant_id: str, ctx: CtxDep, authz: AuthzDep) -> Response:
    current = await find_assistant(ctx, assistant_id, authz, "delete")
    await asyncio.to_thread(ctx.store.delete_assistant, current.assistant_id)
    return Response(status_code=204)


@router.get("/assistants/{assistant_id}/graph", summary="The assistant's graph, drawn as JSON")
async def get_graph(assistant_id: str, ctx: CtxDep, authz: AuthzDep,
                    xray: int | bool = False) -> dict[str, Any]:
    a = await find_assistant(ctx, assistant_id, authz)
    async with ctx.graphs.open(a.graph_id, "assistants.read", a.config) as graph:
        drawn = graph.get_graph(xray=xray)
    return _drawn_json(drawn)


def _drawn_json(drawn: Any) -> dict[str, Any]:
    from treadle.jsonable import to_json

    doc = drawn.to_json()
    return {"nodes": to_json(doc.get("nodes", [])), "edges": to_json(doc.get("edges", []))}


@router.get("/assistants/{assistant_id}/schemas", summary="The assistant's graph's JSON schemas")
async def get_schemas(assistant_id: str, ctx: CtxDep, authz: AuthzDep) -> dict[str, Any]:
    a = await find_assistant(ctx, assistant_id, authz)
    schemas: dict[str, Any] = await ctx.graphs.schemas(a.graph_id, a.config)
    return schemas


@router.get("/assistants/{assistant_id}/subgraphs", summary="The schemas of the graph's subgraphs")
async def get_subgraphs(assistant_id: str, ctx: CtxDep, authz: AuthzDep,
                        recurse: bool = False) -> dict[str, Any]:
    return await _subgraphs(ctx, await find_assistant(ctx, assistant_id, authz), None, recurse)


@router.get("/assistants/{assistant_id}/subgraphs/{namespace}",
            summary="The schemas of the subgraphs under a namespace")
async def get_subgraphs_ns(assistant_id: str, namespace: str, ctx: CtxDep, authz: AuthzDep,
                           recurse: bool = False) -> dict[str, Any]:
    a = await find_assistant(ctx, assistant_id, authz)
    return await _subgraphs(ctx, a, namespace, recurse)


async def _subgraphs(ctx: Ctx, a: Any, namespace: str | None, recurse: bool) -> dict[str, Any]:
    from treadle.server.served_graphs import _schemas

    out = {}
    async with ctx.graphs.open(a.graph_id, "assistants.read", a.config) as graph:
        for ns, sub in graph.graph.get_subgraphs(namespace=namespace, recurse=recurse):
            out[ns] = {"graph_id": a.graph_id, **_schemas(sub)}
    return out


@router.post("/assistants/{assistant_id}/versions", summary="List an assistant's versions")
async def list_versions(assistant_id: str, body: AssistantVersionsSearch,
                        ctx: CtxDep, authz: AuthzDep) -> list[dict[str, Any]]:
    current = await find_assistant(ctx, assistant_id, authz)
    found = await asyncio.to_thread(ctx.store.list_assistant_versions, current.assistant_id,
                                    metadata=body.metadata, limit=body.limit, offset=body.offset)
    return [assistant_json(a) for a in found]


@router.post("/assistants/{assistant_id}/latest", summary="Make a version the current one")
async def set_latest(assistant_id: str, body: LatestVersion, ctx: CtxDep,
                     authz: AuthzDep) -> dict[str, Any]:
    current = await find_assistant(ctx, assistant_id, authz, "update")
    found = await asyncio.to_thread(ctx.store.set_latest_assistant_version,
                                    current.assistant_id, body.version)
    if found is None:
        raise HTTPException(404, f"assistant {assistant_id!r} has no version {body.version}")
    return assistant_json(found)
