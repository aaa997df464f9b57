"""``GET /operations`` (treadle's extension): the cluster at a glance, for an operator's page.

One JSON document read from the store, the source ``/metrics`` reads too: the queue
(``queue_stats``, the ``treadle_queue_*`` gauges), the runs counted by status, the live
workers as they advertise themselves, and the runs the sweeper took back from a lost worker
(newest first, ``failovers_limit`` of them). Shape: docs/api.md#get-operations.

It covers every tenant, so when authentication is configured only an admin of the whole
cluster reads it: a user whose permissions hold "admin" and who belongs to no tenant
(``auth_tenant`` unset) or to one of the ``operator_tenants`` setting (built-in auth keys
always have a tenant: an operators' tenant is how its admins read it). Another tenant's
admin gets 403: counts and runs of the other tenants are theirs, and scoping queue, counts
and workers to one tenant would be another view.
Without authentication anyone reads it (``treadle dev`` on a laptop).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from treadle.metrics import graph_label
from treadle.server.authz_deps import require_admin
from treadle.server.context import Ctx, get_ctx
from treadle.store import Store

__all__ = ["operations_view", "router"]

router = APIRouter(tags=["system"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]


def require_cluster_admin(request: Request) -> None:
    """403 unless an admin of no tenant calls, when authentication is configured."""
    require_admin(request, "reading /operations")
    tenant = getattr(request.state, "auth_tenant", None)
    settings = request.app.state.ctx.settings
    if tenant is not None and str(tenant) not in operator_tenants(settings.operator_tenants):
        raise HTTPException(403, "/operations covers every tenant: only the admins of the "
                                 "operator tenants (TREADLE_OPERATOR_TENANTS) may read it")


def operator_tenants(setting: str) -> frozenset[str]:
    return frozenset(t.strip() for t in setting.split(",") if t.strip())


@router.get("/operations", dependencies=[Depends(require_cluster_admin)],
            summary="Queue, runs by status, workers and failovers (treadle extension; "
                    "cluster admins only with auth)")
async def operations(
    ctx: CtxDep,
    failovers_limit: Annotated[int, Query(ge=1, le=200,
                                          description="Failovers listed, newest first")] = 20,
) -> dict[str, Any]:
    return await asyncio.to_thread(operations_view, ctx.store, failovers_limit)


def operations_view(store: Store, failovers_limit: int = 20) -> dict[str, Any]:
    """The ``/operations`` document (blocking: call it off the event loop)."""
    generated_at = store.now()
    queue = store.queue_stats()
    counts = store.run_status_counts()
    workers = store.list_workers()
    failovers, total = store.failovers(failovers_limit)
    return {
        "generated_at": generated_at,
        "queue": asdict(queue),
        "runs_by_status": counts,
        "workers": [{"name": w.name, "graphs": [graph_label(g) for g in w.graph_ids],
                     "allow_pickled": w.allow_pickled, "slots": w.slots, "running": w.running,
                     "started_at": w.started_at, "heartbeat_at": w.heartbeat_at,
                     "expires_at": w.expires_at} for w in workers],
        "failovers": [{**asdict(f), "graph_id": graph_label(f.graph_id)} for f in failovers],
        "failovers_total": total,
    }
