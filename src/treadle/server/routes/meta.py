"""Health and server information."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from treadle.server.context import Ctx, get_ctx

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/ok", summary="Liveness: the process answers")
async def ok(ctx: Annotated[Ctx, Depends(get_ctx)]) -> JSONResponse:
    if ctx.extra.get("draining"):
        return JSONResponse({"ok": False, "draining": True}, status_code=503)
    return JSONResponse({"ok": True})


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
