"""What the HTTP API does as one of its runs ends: the worker's end-of-run hooks.

A worker serving the API (the server's own, or ``treadle worker``) registers these on its
:class:`~treadle.cluster.attempt.RunHooks`, for the runs whose spec asks for them:

* the thread record (``thread_record``): the thread's status, values and interrupts,
  written with the run's final status in the same transaction;
* ``on_completion="delete"`` (stateless runs): the run's thread is deleted once it ends;
* ``webhook``: the run's record is POSTed to it (see :mod:`treadle.server.webhooks`), as
  langgraph.json's ``webhooks`` policy allows (nothing with ``http.disable_webhooks``);
* the audit log: each attempt's start and the run's end (:mod:`treadle.server.run_audit`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from treadle.cluster.attempt import RunAttempt, RunHooks
from treadle.errors import StoreError
from treadle.jsonable import to_json
from treadle.server.webhook_policy import WebhookPolicy
from treadle.store.thread_records import ThreadUpdate

__all__ = ["Webhook", "api_hooks", "install"]

log = logging.getLogger("treadle.worker")


def thread_record(attempt: RunAttempt, status: str, state: Any, error: str | None) -> None:
    """The thread record's state once the run ends (threads made through the HTTP API).
    The claim already marked it busy."""
    if not attempt.spec.thread_record:
        return
    update = ThreadUpdate(attempt.row.thread_id, status, error=error)
    if state is not None:
        update.values = to_json(state.values)
        update.interrupts = {t.id: to_json(list(t.interrupts)) for t in state.tasks
                             if getattr(t, "interrupts", None)}
    attempt.thread_update = update


async def on_completion(attempt: RunAttempt, _status: str) -> None:
    """Delete a stateless run's thread (``on_completion="delete"``)."""
    if attempt.spec.on_completion != "delete":
        return
    store, thread_id = attempt.store, attempt.row.thread_id
    try:
        await asyncio.to_thread(store.delete_thread, thread_id)
        await asyncio.to_thread(store.delete_thread_record, thread_id)
    except StoreError as exc:
        log.warning("run %s: deleting its thread failed (%s)", attempt.run_id, exc)


@dataclass(frozen=True)
class Webhook:
    """Call the run's webhook, in the background, as ``policy`` allows."""

    policy: WebhookPolicy = field(default_factory=WebhookPolicy)

    async def __call__(self, attempt: RunAttempt, _status: str) -> None:
        if attempt.spec.webhook and self.policy.disabled:
            log.info("run %s: its webhook is not sent (langgraph.json's "
                     "http.disable_webhooks)", attempt.run_id)
        elif attempt.spec.webhook:
            from treadle.server.webhooks import schedule_webhook

            schedule_webhook(attempt.store, str(attempt.spec.webhook), attempt.run_id,
                             attempt.settings, self.policy)


def install(hooks: RunHooks, webhooks: WebhookPolicy | None = None) -> RunHooks:
    """Register the API's end-of-run hooks on ``hooks`` (webhooks sent as the ``webhooks``
    policy allows; default: its defaults); returns it."""
    hooks.on_status.append(thread_record)
    from treadle.server.run_audit import run_ended, run_started

    hooks.after_end.extend((on_completion, Webhook(webhooks or WebhookPolicy())))
    hooks.on_start.append(run_started)  # the audit log (server/run_audit.py)
    hooks.after_end.append(run_ended)
    return hooks


def api_hooks(webhooks: WebhookPolicy | None = None) -> RunHooks:
    """A worker's hooks with the API's semantics (thread records, on_completion, webhooks)."""
    return install(RunHooks(), webhooks)
