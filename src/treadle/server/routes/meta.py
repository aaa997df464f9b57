"""Health, probes, metrics and server information.

``/healthz`` (liveness) answers 200 while the process answers. ``/readyz`` (readiness)
answers 200 while the store answers and the server is not draining, else 503 with the
reason; the store is asked at most once a second, however often probes come.
``/metrics`` is Prometheus text (:mod:`treadle.metrics`). The three are left out of the
OpenAPI document: they are for the platform, not for API clients.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from treadle import metrics
from treadle.redaction import redact
from treadle.server.context import Ctx, get_ctx

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/ok", summary="Liveness: the process answers")
async def ok(ctx: Annotated[Ctx, Depends(get_ctx)]) -> JSONResponse:
    if ctx.extra.get("draining"):
        return JSONResponse({"ok": False, "draining": True}, status_code=503)
    return JSONResponse({"ok": True})


@router.get("/healthz", include_in_schema=False)
async def healthz() -> JSONResponse:
    return JSONResponse({"ok": True})


@router.get("/readyz", include_in_schema=False)
async def readyz(ctx: Annotated[Ctx, Depends(get_ctx)]) -> JSONResponse:
    reason = "draining" if ctx.extra.get("draining") else await _store_problem(ctx)
    if reason is not None:
        return JSONResponse({"ok": False, "reason": reason}, status_code=503)
    return JSONResponse({"ok": True})


@router.get("/metrics", include_in_schema=False)
async def metrics_text() -> Response:
    body, content_type = await asyncio.to_thread(metrics.render)  # may read the queue
    return Response(body, media_type=content_type)


# The store check of /readyz: a clock read, at most once per _CHECK_EVERY seconds.
_CHECK_EVERY = 1.0
_CHECK_TIMEOUT = 2.0


class _StoreCheck:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.at = float("-inf")
        self.problem: str | None = None


async def _store_problem(ctx: Ctx) -> str | None:
    """Why the store does not answer, or None when it does."""
    check: _StoreCheck = ctx.extra.setdefault("store_check", _StoreCheck())
    async with check.lock:  # probes arriving together share one read
        if time.monotonic() - check.at >= _CHECK_EVERY:
            try:
                await asyncio.wait_for(asyncio.to_thread(ctx.store.now), _CHECK_TIMEOUT)
                check.problem = None
            except TimeoutError:
                check.problem = f"the store did not answer within {_CHECK_TIMEOUT:g}s"
            except Exception as exc:  # noqa: BLE001 - any failure makes the replica unready
                check.problem = f"the store does not answer: {redact(str(exc))}"
            check.at = time.monotonic()
        return check.problem


@router.get("/info", summary="Server version and capabilities")
async def info(ctx: Annotated[Ctx, Depends(get_ctx)]) -> dict[str, Any]:
    from importlib.metadata import version

    def v(pkg: str) -> str | None:
        try:
            return version(pkg)
        except Exception:  # noqa: BLE001
            return None

    return {
        "version": v("treadle"), "server": "treadle", "langgraph_py_version": v("langgraph"),
        "flags": {"assistants": True, "crons": True, "langsmith": False, "store": True},
        "graphs": ctx.graphs.names, "metadata": {},
    }
