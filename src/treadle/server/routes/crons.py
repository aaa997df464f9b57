"""Crons: scheduled runs, on a thread or stateless."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response

from treadle.server.authz_deps import AUTH_CONFIG_KEYS, Authz, AuthzDep
from treadle.server.context import Ctx, get_ctx
from treadle.server.encryption_context import with_encryption_context
from treadle.server.routes.threads import authorized_thread
from treadle.server.run_service import authorize_run, find_assistant, new_thread_metadata
from treadle.server.scheduler import next_tick, parse_end_time, validate_schedule
from treadle.server.schemas import CountBody, CronCreate, CronPatch, CronSearch, RunCreate
from treadle.server.serialize import cron_json

__all__ = ["router"]

router = APIRouter(tags=["crons"])
CtxDep = Annotated[Ctx, Depends(get_ctx)]

_RUN_FIELDS = ("input", "metadata", "config", "context", "webhook", "interrupt_before",
               "interrupt_after", "multitask_strategy", "stream_mode", "durability",
               "checkpoint_during")


def _missing(cron_id: str) -> str:
    return f"cron {cron_id!r} not found"


async def _authorize_create(ctx: Ctx, authz: Authz, body: CronCreate, thread_id: str | None,
                            payload: dict[str, Any]) -> dict[str, Any]:
    """A cron creates runs: authorized as one (assistant read, ``threads.create_run``), on
    a thread the user may read, then as ``crons.create``. The (changed) CronsCreate value;
    the payload's config carries the user to every run the cron makes."""
    if thread_id is not None:
        await authorized_thread(ctx, authz, thread_id)
    run = RunCreate.model_validate({**payload, "assistant_id": body.assistant_id})
    await authorize_run(ctx, authz, run, thread_id, thread_id is None)
    config = dict(payload.get("config") or {})
    configurable = {k: v for k, v in (config.get("configurable") or {}).items()
                    if k not in AUTH_CONFIG_KEYS}
    config["configurable"] = {**configurable, **authz.run_configurable()}
    with_encryption_context(config["configurable"])
    payload["config"] = config
    value: dict[str, Any] = {
        "payload": payload, "schedule": body.schedule, "cron_id": str(uuid.uuid4()),
        "thread_id": thread_id, "user_id": authz.user.identity if authz.user else None,
        "end_time": body.end_time, "metadata": dict(body.metadata or {})}
    await authz.action("crons", "create", value)
    return value


async def _create(ctx: Ctx, authz: Authz, body: CronCreate, thread_id: str | None
                  ) -> dict[str, Any]:
    from treadle.store.cron_records import Cron

    assistant = await find_assistant(ctx, body.assistant_id, authz)
    if thread_id is not None and await asyncio.to_thread(ctx.store.get_thread, thread_id) is None:
        raise HTTPException(404, f"thread {thread_id!r} not found")
    validate_schedule(body.schedule, body.timezone)
    if body.webhook:  # each run it creates is checked again, and each delivery
        await ctx.webhooks.check(body.webhook, timeout=ctx.settings.webhook_timeout)
    end_time = parse_end_time(body.end_time)
    now = await asyncio.to_thread(ctx.store.now)
    payload = {k: v for k, v in body.model_dump(include=set(_RUN_FIELDS)).items() if v is not None}
    value: dict[str, Any] = {"payload": payload, "schedule": body.schedule,
                             "cron_id": str(uuid.uuid4()), "user_id": None,
                             "metadata": body.metadata or {}}
    extra: dict[str, Any] = {"timezone": body.timezone, "on_run_completed": body.on_run_completed}
    if authz.on:
        value = await _authorize_create(ctx, authz, body, thread_id, payload)
        validate_schedule(value["schedule"], body.timezone)
        if thread_id is None:  # each tick's new thread is the creator's, as theirs would be
            extra["thread_metadata"] = await new_thread_metadata(authz, str(uuid.uuid4()), {})
    payload = dict(value["payload"])
    payload["_treadle"] = extra
    cron = Cron(cron_id=str(value["cron_id"]), assistant_id=assistant.assistant_id,
                thread_id=thread_id, schedule=value["schedule"], payload=payload,
                metadata=value["metadata"] or {}, end_time=end_time,
                next_run_at=next_tick(value["schedule"], now, body.timezone, end_time),
                enabled=body.enabled, user_id=value["user_id"], created_at=0.0, updated_at=0.0)
    created = await asyncio.to_thread(ctx.store.put_cron, cron)
    return cron_json(created)


@router.post("/threads/{thread_id}/runs/crons", summary="Create a cron on a thread")
async def create_thread_cron(thread_id: str, body: CronCreate, ctx: CtxDep,
                             authz: AuthzDep) -> dict[str, Any]:
    return await _create(ctx, authz, body, thread_id)


@router.post("/runs/crons", summary="Create a stateless cron")
async def create_cron(body: CronCreate, ctx: CtxDep, authz: AuthzDep) -> dict[str, Any]:
    return await _create(ctx, authz, body, None)


@router.delete("/runs/crons/{cron_id}", status_code=204, summary="Delete a cron")
async def delete_cron(cron_id: str, ctx: CtxDep, authz: AuthzDep) -> Response:
    access = await authz.resource("crons", "delete", {"cron_id": cron_id}, _missing(cron_id))
    if not await asyncio.to_thread(ctx.store.delete_cron, cron_id, access=access):
        raise HTTPException(404, f"cron {cron_id!r} not found")
    return Response(status_code=204)


@router.patch("/runs/crons/{cron_id}", summary="Update a cron")
async def patch_cron(cron_id: str, body: CronPatch, ctx: CtxDep, authz: AuthzDep) -> dict[str, Any]:
    value: dict[str, Any] = {"cron_id": cron_id, "payload": body.model_dump(exclude_unset=True),
                             "schedule": body.schedule, "metadata": dict(body.metadata or {})}
    access = await authz.resource("crons", "update", value, _missing(cron_id))
    current = await asyncio.to_thread(ctx.store.get_cron, cron_id, access=access)
    if current is None:
        raise HTTPException(404, f"cron {cron_id!r} not found")
    payload = dict(current.payload or {})
    extra = dict(payload.get("_treadle") or {})
    given = body.model_dump(exclude_unset=True)
    if given.get("webhook"):
        await ctx.webhooks.check(given["webhook"], timeout=ctx.settings.webhook_timeout)
    before = ((payload.get("config") or {}).get("configurable") or {})
    for key in _RUN_FIELDS:
        if key in given:
            payload[key] = given[key]
    if "config" in given:  # the cron's runs keep the user who made it, whatever is sent
        config = dict(payload.get("config") or {})
        config["configurable"] = {
            **{k: v for k, v in (config.get("configurable") or {}).items()
               if k not in AUTH_CONFIG_KEYS},
            **{k: before[k] for k in AUTH_CONFIG_KEYS if k in before}}
        payload["config"] = config
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
    if value["metadata"] is not None:
        kwargs["metadata"] = value["metadata"]
    found = await asyncio.to_thread(ctx.store.patch_cron, cron_id, access=access, **kwargs)
    if found is None:
        raise HTTPException(404, f"cron {cron_id!r} not found")
    return cron_json(found)


@router.post("/runs/crons/search", summary="Search crons")
async def search_crons(body: CronSearch, ctx: CtxDep, authz: AuthzDep) -> list[dict[str, Any]]:
    sort = {"next_run_date": "next_run_at"}.get(body.sort_by or "", body.sort_by or "created_at")
    value: dict[str, Any] = {"assistant_id": body.assistant_id, "thread_id": body.thread_id,
                             "limit": body.limit, "offset": body.offset}
    access = await authz.action("crons", "search", value)
    found = await asyncio.to_thread(
        ctx.store.search_crons, assistant_id=value["assistant_id"], thread_id=value["thread_id"],
        enabled=body.enabled, limit=body.limit, offset=body.offset, sort_by=sort,
        sort_order=body.sort_order or "desc", access=access)
    docs = [cron_json(c) for c in found]
    if body.select:
        docs = [{k: v for k, v in d.items() if k in body.select} for d in docs]
    return docs


@router.post("/runs/crons/count", summary="Count crons")
async def count_crons(body: CountBody, ctx: CtxDep, authz: AuthzDep) -> int:
    value: dict[str, Any] = {"assistant_id": body.assistant_id, "thread_id": body.thread_id,
                             "limit": 0, "offset": 0}
    access = await authz.action("crons", "search", value)
    return await asyncio.to_thread(ctx.store.count_crons, assistant_id=value["assistant_id"],
                                   thread_id=value["thread_id"], access=access)
