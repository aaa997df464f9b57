"""The audit log over HTTP (a treadle extension): ``GET /audit`` and ``GET /audit/verify``.

When authentication is configured only admins read them (a user whose permissions hold
"admin": :func:`~treadle.server.authz_deps.admin_only`); anyone else gets 403. An admin of
a tenant (``auth_tenant`` set by the authentication) lists that tenant's records only;
verifying walks the whole chain and tells only whether it holds, its length and head.
Without authentication they are readable like the rest of the API (``treadle dev`` on a
laptop): put the server behind authentication before exposing it. What the log holds:
:mod:`treadle.store.audit_log`, :mod:`treadle.server.audit_trail`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from treadle.server.authz_deps import admin_only
from treadle.server.context import Ctx, get_ctx

__all__ = ["router"]

router = APIRouter(tags=["audit"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]
AdminDep = admin_only("reading the audit log")


@router.get("/audit", dependencies=[AdminDep],
            summary="Audit records, oldest first (treadle extension; admins only with auth)")
async def list_audit(
    request: Request,
    ctx: CtxDep,
    after_seq: Annotated[int, Query(ge=0, description="Records after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    actor: str | None = None,
    action: str | None = None,
    resource_id: str | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    # A tenant's admin reads its own tenant's records only (scoped in the query).
    scope = getattr(request.state, "auth_tenant", None)
    if scope is not None:
        if tenant is not None and tenant != scope:
            return {"records": [], "next_after_seq": None}
        tenant = str(scope)
    store = ctx.store
    await asyncio.to_thread(store.flush_audit, 5.0)  # what this process queued is in
    records = await asyncio.to_thread(store.list_audit, after_seq=after_seq, limit=limit,
                                      actor=actor, action=action, resource_id=resource_id,
                                      tenant=tenant)
    return {"records": [r.to_json() for r in records],
            "next_after_seq": records[-1].seq if len(records) == limit else None}


@router.get("/audit/verify", dependencies=[AdminDep],
            summary="Walk the audit log's hash chain (treadle extension; admins only with auth)")
async def verify_audit(ctx: CtxDep) -> dict[str, Any]:
    await asyncio.to_thread(ctx.store.flush_audit, 5.0)
    verdict = await asyncio.to_thread(ctx.store.verify_audit)
    return verdict.to_json()
