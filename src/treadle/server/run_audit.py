"""Run lifecycle events in the audit log: each attempt's start and the run's end, recorded
by the worker that executes the run (the server's own or ``treadle worker``) through its
run hooks (:mod:`treadle.server.run_hooks`).

Actions: ``runs.started`` (once per attempt), then one of ``runs.succeeded``,
``runs.failed``, ``runs.interrupted``, ``runs.cancelled``, ``runs.timed_out``; the outcome
is the run's status as stored. The actor and tenant are the user the run was created for
(``langgraph_auth_user_id`` and the ``tenant_id`` of ``langgraph_auth_user`` in its
config), "anonymous" without auth; the request id is the run id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from treadle.cluster.attempt import RunAttempt
from treadle.store.audit_log import AuditEntry

__all__ = ["ENDED", "run_ended", "run_started"]

#: A run's final status -> the action recorded.
ENDED = {"success": "runs.succeeded", "error": "runs.failed", "interrupted": "runs.interrupted",
         "cancelled": "runs.cancelled", "timeout": "runs.timed_out"}


def _principal(attempt: RunAttempt) -> tuple[str, str | None]:
    configurable = (attempt.spec.config or {}).get("configurable")
    if not isinstance(configurable, Mapping):
        return "anonymous", None
    actor = configurable.get("langgraph_auth_user_id")
    user = configurable.get("langgraph_auth_user")
    tenant = user.get("tenant_id") if isinstance(user, Mapping) else None
    return (str(actor) if actor else "anonymous",
            str(tenant) if tenant is not None else None)


def _entry(attempt: RunAttempt, action: str, outcome: str, **detail: Any) -> AuditEntry:
    actor, tenant = _principal(attempt)
    row = attempt.row
    return AuditEntry(action=action, actor=actor, tenant=tenant, resource="runs",
                      resource_id=row.run_id, request_id=row.run_id, outcome=outcome,
                      detail={"thread_id": row.thread_id, "graph_id": row.graph_id,
                              "attempt": row.attempt, "worker": attempt.deps.worker, **detail})


def run_started(attempt: RunAttempt) -> None:
    """An attempt starts (``on_start``)."""
    attempt.store.record_audit(_entry(attempt, "runs.started", "running"))


async def run_ended(attempt: RunAttempt, status: str) -> None:
    """The run's final status is recorded (``after_end``)."""
    attempt.store.record_audit(_entry(attempt, ENDED.get(status, f"runs.{status}"), status))
