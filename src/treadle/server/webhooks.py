"""Webhooks: POST a run's record to a URL when the run ends, retried with backoff.

Delivery is at least once per run end from the process that finished the run;
a receiver should deduplicate on ``run_id``. Attempts: ``webhook_max_attempts``
(default 5), backoff 1 s, 2 s, 4 s ... (capped at 30 s); 2xx is success, a redirect and
4xx other than 408/429 are final (redirects are never followed), anything else is retried.

Each attempt resolves the URL's host once, checks every address against langgraph.json's
``webhooks`` policy (:mod:`treadle.server.webhook_policy`) and connects to the first one
itself: the request goes to that IP, with the URL's host in ``Host`` and, for https, in
TLS SNI and certificate verification, so no second lookup can take it elsewhere. Proxy
variables are ignored for the same reason. With ``TREADLE_WEBHOOK_SECRET`` set the body
is signed (:mod:`treadle.server.webhook_signature`); the policy's static headers are added.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx

from treadle.config import Settings
from treadle.errors import WebhookRefusedError
from treadle.server import webhook_signature
from treadle.server.webhook_policy import (
    Resolve,
    Target,
    WebhookPolicy,
    literal,
    resolve_addresses,
    resolve_host,
)
from treadle.store import Store

__all__ = ["deliver", "pinned_request", "schedule_webhook"]

log = logging.getLogger("treadle.webhooks")

_pending: set[asyncio.Task[Any]] = set()


def schedule_webhook(store: Store, url: str, run_id: str, settings: Settings,
                     policy: WebhookPolicy) -> None:
    """Deliver in the background (the run's slot is not held by a slow receiver)."""
    task = asyncio.get_running_loop().create_task(
        _deliver_run(store, url, run_id, settings, policy))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _deliver_run(store: Store, url: str, run_id: str, settings: Settings,
                       policy: WebhookPolicy) -> bool:
    from treadle.server.serialize import run_json, run_output

    row = await asyncio.to_thread(store.get_run, run_id)
    if row is None:
        return False
    body = run_json(row)
    body["values"] = run_output(row)
    secret = settings.webhook_secret
    return await deliver(url, body, policy=policy, attempts=settings.webhook_max_attempts,
                         timeout=settings.webhook_timeout,
                         secret=secret.get_secret_value().encode() if secret else None)


async def deliver(url: str, body: dict[str, Any], *, policy: WebhookPolicy, attempts: int,
                  timeout: float, secret: bytes | None = None, base_delay: float = 1.0,
                  resolve: Resolve | None = None) -> bool:
    """POST ``body`` to ``url`` until a 2xx, a final refusal, or ``attempts`` tries;
    ``resolve`` replaces the system resolver (tests)."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    run_id = body.get("run_id")
    try:
        target = policy.target(url)
    except WebhookRefusedError as exc:
        log.warning("webhook for run %s refused: %s", run_id, exc)
        return False
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                 trust_env=False) as client:
        for attempt in range(1, attempts + 1):
            try:
                request = await pinned_request(client, policy, target, payload, secret=secret,
                                               resolve=resolve or resolve_host, timeout=timeout)
                if request is None:
                    final, reason = False, f"{target.host} does not resolve"
                else:
                    r = await client.send(request)
                    if r.is_success:
                        return True
                    final = r.is_redirect or (400 <= r.status_code < 500
                                              and r.status_code not in (408, 429))
                    reason = f"HTTP {r.status_code}" + (" (redirects are not followed)"
                                                        if r.is_redirect else "")
            except WebhookRefusedError as exc:  # the host now resolves somewhere refused
                final, reason = True, str(exc)
            except httpx.HTTPError as exc:  # the message may name the URL: not logged
                final, reason = False, type(exc).__name__
            if final or attempt == attempts:
                log.warning("webhook %s for run %s failed after %d attempt(s): %s",
                            target.shown, run_id, attempt, reason)
                return False
            delay = min(30.0, base_delay * 2 ** (attempt - 1))
            log.info("webhook %s for run %s: %s; retrying in %.1fs", target.shown, run_id,
                     reason, delay)
            await asyncio.sleep(delay)
    return False


async def pinned_request(client: httpx.AsyncClient, policy: WebhookPolicy, target: Target,
                         payload: bytes, *, secret: bytes | None, resolve: Resolve,
                         timeout: float) -> httpx.Request | None:
    """The delivery's request, addressed to the first of the host's addresses once every
    one of them passed the policy (a refused one raises WebhookRefusedError); None when
    the host does not resolve."""
    addresses = await resolve_addresses(target, resolve, timeout)
    if not addresses:
        return None
    ips = [policy.check_address(target, address) for address in addresses]
    headers = {**policy.headers, "Content-Type": "application/json",
               "User-Agent": "treadle-webhook"}
    if secret is not None:
        headers[webhook_signature.HEADER] = webhook_signature.sign(secret, payload,
                                                                   int(time.time()))
    url = httpx.URL(target.url)
    extensions: dict[str, Any] = {}
    if ips[0] != literal(target.host):  # a name: connect to the checked address, keep the name
        headers["Host"] = target.host if target.parts.port is None else \
            f"{target.host}:{target.parts.port}"
        url = url.copy_with(host=str(ips[0]))
        if target.parts.scheme == "https":
            extensions["sni_hostname"] = target.host
    return client.build_request("POST", url, content=payload, headers=headers,
                                extensions=extensions)
