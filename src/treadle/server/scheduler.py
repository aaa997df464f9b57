"""Crons: runs created on a schedule, fired once per tick across every replica.

Each replica checks for due crons every ``cron_interval`` seconds. A tick is
claimed by moving the cron's ``next_run_at`` from the value read to the next one
with a compare-and-set in the store: one replica wins it and creates the run, the
others see their update refused. Schedules are 5-field cron expressions (croniter),
evaluated in the cron's ``timezone`` (default UTC).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from treadle.errors import ConflictError, InputError, NotFoundError, PriorityError, TreadleError
from treadle.server.context import Ctx

__all__ = ["fire", "next_tick", "parse_end_time", "run_scheduler", "validate_schedule"]

log = logging.getLogger("treadle.crons")


def validate_schedule(schedule: str, timezone: str | None) -> None:
    if not croniter.is_valid(schedule):
        raise InputError(f"schedule {schedule!r} is not a cron expression (e.g. '*/5 * * * *')")
    zone = _zone(timezone)
    try:  # well-formed yet matching no date, like '0 0 31 2 *' (February 31st)
        croniter(schedule, dt.datetime.now(zone)).get_next(float)
    except CroniterError as exc:
        raise InputError(f"schedule {schedule!r} never fires: no date matches it") from exc


def _zone(timezone: str | None) -> dt.tzinfo:
    if not timezone:
        return dt.UTC
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"unknown timezone {timezone!r} (use an IANA name such as "
                         "'Europe/Paris')") from exc


def next_tick(schedule: str, after: float, timezone: str | None = None,
              end_time: float | None = None) -> float | None:
    """The first tick strictly after ``after`` (Unix seconds), or None past ``end_time``."""
    base = dt.datetime.fromtimestamp(after, _zone(timezone))
    nxt = float(croniter(schedule, base).get_next(float))
    if end_time is not None and nxt > end_time:
        return None
    return nxt


def parse_end_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"end_time {value!r} is not an ISO 8601 date-time") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    try:
        ts = when.astimezone(dt.UTC).timestamp()
        dt.datetime.fromtimestamp(ts, dt.UTC)  # responses show it back as a date
    except (OverflowError, ValueError) as exc:
        raise InputError(f"end_time {value!r} is out of range (years 1 to 9999 in UTC)") from exc
    return ts


async def fire(ctx: Ctx, cron: Any) -> str | None:
    """Create the run of one tick; returns its id."""
    from treadle.server.run_service import create_run
    from treadle.server.schemas import RunCreate

    payload = {k: v for k, v in (cron.payload or {}).items() if k != "_treadle"}
    extra = (cron.payload or {}).get("_treadle", {})
    body = RunCreate(assistant_id=cron.assistant_id, **payload)
    if cron.thread_id is None:
        body.on_completion = extra.get("on_run_completed") or "delete"
    row, _ = await create_run(ctx, body, cron.thread_id, stream=True,
                              stateless=cron.thread_id is None,
                              thread_metadata=extra.get("thread_metadata"), cron_id=cron.cron_id)
    return row.run_id


async def tick(ctx: Ctx) -> int:
    """Fire every due cron this replica wins; returns how many it fired."""
    store = ctx.store
    now = await asyncio.to_thread(store.now)
    fired = 0
    for cron in await asyncio.to_thread(store.due_crons, now):
        if cron.next_run_at is None:
            continue
        extra = (cron.payload or {}).get("_treadle", {})
        try:
            nxt = next_tick(cron.schedule, max(now, cron.next_run_at or now),
                            extra.get("timezone"), cron.end_time)
        except Exception as exc:  # noqa: BLE001 - a schedule that no longer parses
            log.warning("cron %s: bad schedule %r (%s); disabling it", cron.cron_id,
                        cron.schedule, exc)
            nxt = None
        if not await asyncio.to_thread(store.advance_cron, cron.cron_id, cron.next_run_at, nxt):
            continue  # another replica won this tick
        try:
            run_id = await fire(ctx, cron)
            fired += 1
            log.info("cron %s fired run %s", cron.cron_id, run_id)
        except (NotFoundError, ConflictError, InputError, PriorityError) as exc:  # refused
            log.warning("cron %s could not create its run: %s", cron.cron_id, exc)
    return fired


async def run_scheduler(ctx: Ctx) -> None:
    while True:
        await asyncio.sleep(ctx.settings.cron_interval)
        try:
            await tick(ctx)
        except TreadleError as exc:
            log.warning("checking crons failed (%s)", exc)
