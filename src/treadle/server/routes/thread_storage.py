"""``GET /threads/{thread_id}/storage`` (treadle's extension): the bytes a thread's rows hold.

Authorized as a read of the thread. The figure sums the stored text, JSON and binary values
of every row the thread has (its record, checkpoints, blobs, writes, runs, node tasks and
stream events: the named query ``thread_storage``), per table; the database's own row,
page and index overhead is not counted.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from treadle.server.authz_deps import AuthzDep
from treadle.server.context import Ctx, get_ctx
from treadle.server.routes.threads import authorized_thread
from treadle.server.ttl_sweep import ttl_json

__all__ = ["router"]

router = APIRouter(tags=["threads"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]


@router.get("/threads/{thread_id}/storage",
            summary="The bytes a thread's rows hold, per table, and its TTL (treadle)")
async def thread_storage(thread_id: str, ctx: CtxDep, authz: AuthzDep) -> dict[str, Any]:
    await authorized_thread(ctx, authz, thread_id)
    figure = await asyncio.to_thread(ctx.store.thread_storage, thread_id)
    ttl = await asyncio.to_thread(ctx.store.thread_ttl, thread_id)
    return {**figure.as_json(), "ttl": ttl_json(ttl)}
