"""Crons: scheduled runs, on a thread or stateless."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response

from treadle.server.context import Ctx, get_ctx
from treadle.server.run_service import find_assistant
from treadle.server.scheduler import next_tick, parse_end_time, validate_schedule
from treadle.server.schemas import CountBody, CronCreate, CronPatch, CronSearch
from treadle.server.serialize import cron_json

__all__ = ["router"]

router = APIRouter(tags=["crons"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]

_RUN_FIELDS = ("input", "metadata", "config", "context", "webhook", "interrupt_before",
               "interrupt_after", "multitask_strategy", "stream_mode", "durability",
               "checkpoint_during")


async def _create(ctx: Ctx, body: CronCreate, thread_id: str | None) -> dict[str, Any]:
    from treadle.store.cron_records import Cron

    assistant = await find_assistant(ctx, body.assistant_id)
    if thread_id is not None and await asyncio.to_thread(ctx.store.get_thread, thread_id) is None:
        raise HTTPException(404, f"thread {thread_id!r} not found")
    validate_schedule(body.schedule, body.timezone)
    if body.webhook:  # each run it creates is checked again, and each delivery
        await ctx.webhooks.check(body.webhook, timeout=ctx.settings.webhook_timeout)
    end_time = parse_end_time(body.end_time)
    now = await asyncio.to_thread(ctx.store.now)
    payload = {k: v for k, v in body.model_dump(include=set(_RUN_FIELDS)).items() if v is not None}
    payload["_treadle"] = {"timezone": body.timezone, "on_run_completed": body.on_run_completed}
    cron = Cron(cron_id=str(uuid.uuid4()), assistant_id=assistant.assistant_id,
                thread_id=thread_id, schedule=body.schedule, payload=payload,
                metadata=body.metadata or {}, end_time=end_time,
                next_run_at=next_tick(body.schedule, now, body.timezone, end_time),
                enabled=body.enabled, user_id=None, created_at=0.0, updated_at=0.0)
    created = await asyncio.to_thread(ctx.store.put_cron, cron)
    return cron_json(created)


@router.post("/threads/{thread_id}/runs/crons", summary="Create a cron on a thread")
async def create_thread_cron(thread_id: str, body: CronCreate, ctx: CtxDep) -> dict[str, Any]:
    return await _create(ctx, body, thread_id)


@router.post("/runs/crons", summary="Create a stateless cron")
async def create_cron(body: CronCreate, ctx: CtxDep) -> dict[str, Any]:
    return await _create(ctx, body, None)


@router.delete("/runs/crons/{cron_id}", status_code=204, summary="Delete a cron")
async def delete_cron(cron_id: str, ctx: CtxDep) -> Response:
    if not await asyncio.to_thread(ctx.store.delete_cron, cron_id):
        raise HTTPException(404, f"cron {cron_id!r} not found")
    return Response(status_code=204)


@router.patch("/runs/crons/{cron_id}", summary="Update a cron")
async def patch_cron(cron_id: str, body: CronPatch, ctx: CtxDep) -> dict[str, Any]:
    current = await asyncio.to_thread(ctx.store.get_cron, cron_id)
    if current is None:
        raise HTTPException(404, f"cron {cron_id!r} not found")
    payload = dict(current.payload or {})
    extra = dict(payload.get("_treadle") or {})
    given = body.model_dump(exclude_unset=True)
    if given.get("webhook"):
        await ctx.webhooks.check(given["webhook"], timeout=ctx.settings.webhook_timeout)
    for key in _RUN_FIELDS:
        if key in given:
            payload[key] = given[key]
    if "timezone" in given:
        extra["timezone"] = given["timezone"]
    if "on_run_completed" in given:
        extra["on_run_completed"] = given["on_run_completed"]
    payload["_treadle"] = extra
    schedule = body.schedule or current.schedule
    validate_schedule(schedule, extra.get("timezone"))
    end_time = parse_end_time(body.end_time) if "end_time" in given else current.end_time
    kwargs: dict[str, Any] = {"payload": payload}
    if "schedule" in given or "timezone" in given or "end_time" in given or body.enabled:
        now = await asyncio.to_thread(ctx.store.now)
        kwargs["next_run_at"] = next_tick(schedule, now, extra.get("timezone"), end_time)
    if "schedule" in given:
        kwargs["schedule"] = schedule
    if "end_time" in given:
        kwargs["end_time"] = end_time
    if body.enabled is not None:
        kwargs["enabled"] = body.enabled
    if body.metadata is not None:
        kwargs["metadata"] = body.metadata
    found = await asyncio.to_thread(ctx.store.patch_cron, cron_id, **kwargs)
    if found is None:
        raise HTTPException(404, f"cron {cron_id!r} not found")
    return cron_json(found)


@router.post("/runs/crons/search", summary="Search crons")
async def search_crons(body: CronSearch, ctx: CtxDep) -> list[dict[str, Any]]:
    sort = {"next_run_date": "next_run_at"}.get(body.sort_by or "", body.sort_by or "created_at")
    found = await asyncio.to_thread(
        ctx.store.search_crons, assistant_id=body.assistant_id, thread_id=body.thread_id,
        enabled=body.enabled, limit=body.limit, offset=body.offset, sort_by=sort,
        sort_order=body.sort_order or "desc")
    docs = [cron_json(c) for c in found]
    if body.select:
        docs = [{k: v for k, v in d.items() if k in body.select} for d in docs]
    return docs


@router.post("/runs/crons/count", summary="Count crons")
async def count_crons(body: CountBody, ctx: CtxDep) -> int:
    return await asyncio.to_thread(ctx.store.count_crons, assistant_id=body.assistant_id,
                                   thread_id=body.thread_id)
