"""Thread TTLs (langgraph.json ``checkpointer.ttl``): the policy, a thread's own TTL from the
API, and the sweep every API process runs.

A thread expires ``ttl`` minutes after its last update (created, patched, a run started or
ended). Every ``sweep_interval_minutes`` (``TREADLE_TTL_SWEEP_INTERVAL`` seconds overrides
it) each API process claims a batch of expired threads at a time
(:meth:`~treadle.store.retention.RetentionStore.claim_expired_threads`; replicas share the
work, never the same thread) up to ``sweep_limit``, and for each:

* ``delete``: deletes the thread as ``DELETE /threads/{thread_id}`` does (record,
  checkpoints, runs, their events, its crons), once the statement deleting its record has
  checked it is still unchanged and has no pending or running run;
* ``keep_latest``: prunes its checkpoints but the latest of each namespace
  (``store.prune(..., "keep_latest")``, as ``POST /threads/prune``) and keeps the thread,
  which is due again only after its next update.

The API runs it, not the workers: every deployment shape has an API process (``treadle
dev``, ``treadle serve``, each replica beside a ``treadle worker`` fleet), and it is the
one reading langgraph.json's ``checkpointer.ttl`` and owning the delete path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any

from treadle import metrics
from treadle.config import Settings
from treadle.errors import ConfigError, InputError, TreadleError
from treadle.jsonable import iso
from treadle.langgraph_json import thread_ttl
from treadle.server.context import Ctx
from treadle.server.limits import MAX_TTL_MINUTES
from treadle.store.retention import ThreadTTL

__all__ = ["CLAIM_BATCH", "RETRY_DELETE", "Retention", "retention_of", "run_sweeps", "sweep",
           "thread_ttl_of", "ttl_json"]

log = logging.getLogger("treadle.retention")

CLAIM_BATCH = 100  # threads claimed per statement
RETRY_DELETE = 600.0  # seconds before a delete claim whose sweeper died is taken again


@dataclass(frozen=True)
class Retention:
    """What the sweep does: threads made without a TTL get ``default``; a sweep every
    ``interval`` seconds handles at most ``limit`` threads."""

    default: ThreadTTL | None = None
    interval: float = 300.0
    limit: int = 1000


def retention_of(settings: Settings, config: dict[str, Any] | None) -> Retention:
    """The policy of langgraph.json's checked ``checkpointer.ttl`` (``config``), or of
    TREADLE_THREAD_TTL, which replaces it; TREADLE_TTL_SWEEP_INTERVAL sets the interval."""
    if settings.thread_ttl is not None:
        raw = settings.thread_ttl.strip()
        try:
            given: Any = json.loads(raw) if raw.startswith("{") else float(raw)
        except ValueError as exc:
            raise ConfigError("TREADLE_THREAD_TTL must be minutes or a JSON object like "
                              f'checkpointer.ttl (got {raw!r})') from exc
        config = thread_ttl(given, "TREADLE_THREAD_TTL")
    if config is None:
        config = thread_ttl({}, "checkpointer.ttl")
    assert config is not None
    minutes = config["default_ttl"]
    default = None if minutes is None else ThreadTTL(float(minutes), config["strategy"])
    interval = settings.ttl_sweep_interval or float(config["sweep_interval_minutes"]) * 60
    return Retention(default, interval, int(config["sweep_limit"]))


def thread_ttl_of(value: Any) -> ThreadTTL | None:
    """A thread's ``ttl`` as ``threads.create`` / ``threads.update`` send it: minutes, or
    ``{"ttl": minutes, "strategy": "delete" | "keep_latest"}`` (strategy default delete);
    None when absent. InputError (422) for anything else."""
    if value is None:
        return None
    if isinstance(value, dict):
        unknown = set(value) - {"ttl", "default_ttl", "strategy"}
        if unknown:
            raise InputError(f"ttl: unknown key(s) {', '.join(sorted(unknown))} (use ttl, "
                             "strategy)")
        minutes, strategy = value.get("ttl", value.get("default_ttl")), value.get("strategy")
    else:
        minutes, strategy = value, None
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not (
            0 < minutes <= MAX_TTL_MINUTES):
        raise InputError(f"ttl must be a number of minutes above 0 and at most "
                         f"{MAX_TTL_MINUTES} (got {minutes!r})")
    if strategy is not None and not isinstance(strategy, str):
        raise InputError(f"ttl.strategy must be delete or keep_latest (got {strategy!r})")
    return ThreadTTL(float(minutes), strategy or "delete")


def ttl_json(found: tuple[ThreadTTL, float] | None) -> dict[str, Any] | None:
    """A thread's TTL as langgraph-api shows it (``GET /threads/{id}?include=ttl``)."""
    if found is None:
        return None
    ttl, expires_at = found
    return {"strategy": ttl.strategy, "ttl_minutes": ttl.minutes, "expires_at": iso(expires_at)}


async def sweep(ctx: Ctx, limit: int) -> dict[str, int]:
    """One sweep of this process: {strategy: threads handled}."""
    from treadle.server.routes.threads import delete_thread_data

    store, done = ctx.store, {"delete": 0, "keep_latest": 0}
    await asyncio.to_thread(store.release_abandoned_claims, RETRY_DELETE)
    while (left := limit - sum(done.values())) > 0:
        claimed = await asyncio.to_thread(store.claim_expired_threads, min(CLAIM_BATCH, left))
        for thread_id, strategy in claimed:
            if strategy == "keep_latest":
                if not await asyncio.to_thread(store.expired_thread_unchanged, thread_id):
                    continue
                await asyncio.to_thread(store.prune, [thread_id], "keep_latest")
            else:
                if not await asyncio.to_thread(store.delete_expired_thread_record, thread_id):
                    continue
                await delete_thread_data(ctx, thread_id)
            done[strategy] += 1
            metrics.THREADS_SWEPT.labels(strategy).inc()
        if len(claimed) < min(CLAIM_BATCH, left):
            break
    return done


async def run_sweeps(ctx: Ctx, retention: Retention) -> None:
    """Sweep every ``retention.interval`` seconds (jittered, so replicas spread out)."""
    while True:
        await asyncio.sleep(retention.interval * (0.8 + random.random() * 0.4))
        try:
            done = await sweep(ctx, retention.limit)
        except TreadleError as exc:
            log.warning("thread TTL sweep failed (%s)", exc)
            continue
        log.log(logging.INFO if any(done.values()) else logging.DEBUG,
                "thread TTL sweep: %d thread(s) deleted, %d pruned to their latest checkpoint",
                done["delete"], done["keep_latest"])
