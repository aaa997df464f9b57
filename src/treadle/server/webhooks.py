"""Webhooks: POST a run's record to a URL when the run ends, retried with backoff.

Delivery is at least once per run end from the process that finished the run;
a receiver should deduplicate on ``run_id``. Attempts: ``webhook_max_attempts``
(default 5), backoff 1 s, 2 s, 4 s ... (capped at 30 s); 2xx is success, 4xx other
than 408/429 is final (the receiver refused it), anything else is retried.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from treadle.config import Settings
from treadle.store import Store

__all__ = ["deliver", "schedule_webhook"]

log = logging.getLogger("treadle.webhooks")

_pending: set[asyncio.Task[Any]] = set()


def schedule_webhook(store: Store, url: str, run_id: str, settings: Settings) -> None:
    """Deliver in the background (the run's slot is not held by a slow receiver)."""
    task = asyncio.get_running_loop().create_task(_deliver_run(store, url, run_id, settings))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _deliver_run(store: Store, url: str, run_id: str, settings: Settings) -> bool:
    from treadle.server.serialize import run_json, run_output

    row = await asyncio.to_thread(store.get_run, run_id)
    if row is None:
        return False
    body = run_json(row)
    body["values"] = run_output(row)
    return await deliver(url, body, attempts=settings.webhook_max_attempts,
                         timeout=settings.webhook_timeout)


async def deliver(url: str, body: dict[str, Any], *, attempts: int, timeout: float,
                  base_delay: float = 1.0) -> bool:
    """POST ``body`` to ``url`` until a 2xx, a final refusal, or ``attempts`` tries."""
    async with httpx.AsyncClient(timeout=timeout) as client:
        for attempt in range(1, attempts + 1):
            try:
                r = await client.post(url, json=body)
                if r.is_success:
                    return True
                final = 400 <= r.status_code < 500 and r.status_code not in (408, 429)
                reason = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                final = False
                reason = f"{type(exc).__name__}: {exc}"
            if final or attempt == attempts:
                log.warning("webhook %s for run %s failed after %d attempt(s): %s", url,
                            body.get("run_id"), attempt, reason)
                return False
            delay = min(30.0, base_delay * 2 ** (attempt - 1))
            log.info("webhook %s for run %s: %s; retrying in %.1fs", url, body.get("run_id"),
                     reason, delay)
            await asyncio.sleep(delay)
    return False
