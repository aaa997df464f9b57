"""Assistants: a graph with a config. Every served graph has a default one."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response

from treadle.errors import ConflictError
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
async def create_assistant(body: AssistantCreate, ctx: CtxDep) -> dict[str, Any]:
    from treadle.store.assistant_records import Assistant

    ctx.graphs.get(body.graph_id)
    a = Assistant(assistant_id=body.assistant_id or str(uuid.uuid4()), graph_id=body.graph_id,
                  config=body.config or {}, context=body.context or {},
                  metadata=body.metadata or {}, name=body.name or "Untitled",
                  description=body.description, version=1, created_at=0.0, updated_at=0.0)
    try:
        created = await asyncio.to_thread(ctx.store.put_assistant, a, if_exists=body.if_exists)
    except ConflictError as exc:
        raise HTTPException(409, f"assistant {a.assistant_id} already exists") from exc
    return assistant_json(created)


@router.post("/assistants/search", summary="Search assistants")
async def search_assistants(body: AssistantSearch, ctx: CtxDep) -> list[dict[str, Any]]:
    found = await asyncio.to_thread(
        ctx.store.search_assistants, graph_id=body.graph_id, name=body.name,
        metadata=body.metadata, limit=body.limit, offset=body.offset,
        sort_by=body.sort_by or "created_at", sort_order=body.sort_order or "desc")
    docs = [assistant_json(a) for a in found]
    if body.select:
        docs = [{k: v for k, v in d.items() if k in body.select} for d in docs]
    return docs


@router.post("/assistants/count", summary="Count assistants")
async def count_assistants(body: CountBody, ctx: CtxDep) -> int:
    return await asyncio.to_thread(ctx.store.count_assistants, graph_id=body.graph_id,
                                   name=body.name, metadata=body.metadata)


@router.get("/assistants/{assistant_id}", summary="Get an assistant")
async def get_assistant(assistant_id: str, ctx: CtxDep) -> dict[str, Any]:
    return assistant_json(await find_assistant(ctx, assistant_id))


@router.patch("/assistants/{assistant_id}", summary="Update an assistant (a new version)")
async def patch_assistant(assistant_id: str, body: AssistantPatch, ctx: CtxDep) -> dict[str, Any]:
    current = await find_assistant(ctx, assistant_id)
    if body.graph_id:
        ctx.graphs.get(body.graph_id)
    found = await asyncio.to_thread(
        ctx.store.patch_assistant, current.assistant_id, graph_id=body.graph_id,
        config=body.config, context=body.context, metadata=body.metadata, name=body.name,
        description=body.description)
    if found is None:
        raise HTTPException(404, f"assistant {assistant_id!r} not found")
    return assistant_json(found)


@router.delete("/assistants/{assistant_id}", status_code=204, summary="Delete an assistant")
async def delete_assistant(assistant_id: str, ctx: CtxDep) -> Response:
    current = await find_assistant(ctx, assistant_id)
    await asyncio.to_thread(ctx.store.delete_assistant, current.assistant_id)
    return Response(status_code=204)


@router.get("/assistants/{assistant_id}/graph", summary="The assistant's graph, drawn as JSON")
async def get_graph(assistant_id: str, ctx: CtxDep, xray: int | bool = False) -> dict[str, Any]:
    a = await find_assistant(ctx, assistant_id)
    async with ctx.graphs.open(a.graph_id, "assistants.read", a.config) as graph:
        drawn = graph.get_graph(xray=xray)
    return _drawn_json(drawn)


def _drawn_json(drawn: Any) -> dict[str, Any]:
    from treadle.jsonable import to_json

    doc = drawn.to_json()
    return {"nodes": to_json(doc.get("nodes", [])), "edges": to_json(doc.get("edges", []))}


@router.get("/assistants/{assistant_id}/schemas", summary="The assistant's graph's JSON schemas")
async def get_schemas(assistant_id: str, ctx: CtxDep) -> dict[str, Any]:
    a = await find_assistant(ctx, assistant_id)
    schemas: dict[str, Any] = await ctx.graphs.schemas(a.graph_id, a.config)
    return schemas


@router.get("/assistants/{assistant_id}/subgraphs", summary="The schemas of the graph's subgraphs")
async def get_subgraphs(assistant_id: str, ctx: CtxDep, recurse: bool = False) -> dict[str, Any]:
    return await _subgraphs(ctx, assistant_id, None, recurse)


@router.get("/assistants/{assistant_id}/subgraphs/{namespace}",
            summary="The schemas of the subgraphs under a namespace")
async def get_subgraphs_ns(assistant_id: str, namespace: str, ctx: CtxDep,
                           recurse: bool = False) -> dict[str, Any]:
    return await _subgraphs(ctx, assistant_id, namespace, recurse)


async def _subgraphs(ctx: Ctx, assistant_id: str, namespace: str | None,
                     recurse: bool) -> dict[str, Any]:
    from treadle.server.served_graphs import _schemas

    a = await find_assistant(ctx, assistant_id)
    out = {}
    async with ctx.graphs.open(a.graph_id, "assistants.read", a.config) as graph:
        for ns, sub in graph.graph.get_subgraphs(namespace=namespace, recurse=recurse):
            out[ns] = {"graph_id": a.graph_id, **_schemas(sub)}
    return out


@router.post("/assistants/{assistant_id}/versions", summary="List an assistant's versions")
async def list_versions(assistant_id: str, body: AssistantVersionsSearch,
                        ctx: CtxDep) -> list[dict[str, Any]]:
    current = await find_assistant(ctx, assistant_id)
    found = await asyncio.to_thread(ctx.store.list_assistant_versions, current.assistant_id,
                                    metadata=body.metadata, limit=body.limit, offset=body.offset)
    return [assistant_json(a) for a in found]


@router.post("/assistants/{assistant_id}/latest", summary="Make a version the current one")
async def set_latest(assistant_id: str, body: LatestVersion, ctx: CtxDep) -> dict[str, Any]:
    current = await find_assistant(ctx, assistant_id)
    found = await asyncio.to_thread(ctx.store.set_latest_assistant_version,
                                    current.assistant_id, body.version)
    if found is None:
        raise HTTPException(404, f"assistant {assistant_id!r} has no version {body.version}")
    return assistant_json(found)
