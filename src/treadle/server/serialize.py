"""treadle records -> the JSON bodies LangGraph Platform returns (see langgraph_sdk.schema)."""

from __future__ import annotations

import json
from typing import Any

from treadle.cluster.codec import decode
from treadle.cluster.spec import RunSpec
from treadle.jsonable import iso, to_json
from treadle.redaction import redact
from treadle.store.queue import RunRow

__all__ = ["RUN_STATUS", "assistant_json", "checkpoint_json", "cron_json", "run_json",
           "run_output", "run_spec", "state_json", "thread_json"]

# treadle's run statuses -> the SDK's RunStatus (it has no "cancelled": a cancelled run
# is "interrupted", which the SDK documents as "manually stopped or interrupted").
RUN_STATUS = {"cancelled": "interrupted"}


def assistant_json(a: Any) -> dict[str, Any]:
    return {
        "assistant_id": a.assistant_id, "graph_id": a.graph_id, "config": a.config,
        "context": a.context, "metadata": a.metadata, "name": a.name,
        "description": a.description, "version": a.version,
        "created_at": iso(a.created_at), "updated_at": iso(a.updated_at),
    }


def thread_json(t: Any) -> dict[str, Any]:
    return {
        "thread_id": t.thread_id, "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
        "metadata": t.metadata, "status": t.status, "values": t.values,
        "interrupts": t.interrupts or {}, "config": t.config or {}, "error": t.error,
    }


def run_spec(row: RunRow) -> RunSpec:
    """The run's spec; an empty one for a run queued by something else."""
    return RunSpec.read(row.payload) or RunSpec()


def run_json(row: RunRow, spec: RunSpec | None = None) -> dict[str, Any]:
    spec = spec or RunSpec.read(row.payload)
    payload = spec.to_dict() if spec is not None else {}
    try:
        metadata = json.loads(row.metadata or "{}")
    except ValueError:
        metadata = {}
    kwargs = {k: payload.get(k) for k in ("input", "command", "config", "context", "webhook",
                                          "stream_mode", "interrupt_before", "interrupt_after")
              if payload.get(k) is not None}
    updated = row.ended_at or row.started_at or row.created_at
    return {
        "run_id": row.run_id, "thread_id": row.thread_id,
        "assistant_id": payload.get("assistant_id") or row.graph_id.removeprefix("ref:"),
        "created_at": iso(row.created_at), "updated_at": iso(updated),
        "status": RUN_STATUS.get(row.status, row.status), "metadata": metadata,
        "multitask_strategy": payload.get("multitask_strategy") or "enqueue",
        "kwargs": to_json(kwargs),
        "error": row.error,
        "cancel_reason": row.cancel,
    }


def run_output(row: RunRow) -> Any:
    """What ``/runs/wait`` and ``/join`` return: the final values, or ``__error__``."""
    if row.status in ("success", "interrupted") or (row.status == "cancelled" and row.result):
        return to_json(decode(row.result)) if row.result is not None else None
    error = row.error or row.status
    kind, sep, message = error.partition(": ")
    if not sep:
        kind, message = row.status, error
    return {"__error__": {"error": kind, "message": message}}


def checkpoint_json(config: Any) -> dict[str, Any] | None:
    if not config:
        return None
    conf = config.get("configurable", {})
    return {
        "thread_id": conf.get("thread_id"), "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": conf.get("checkpoint_id"), "checkpoint_map": conf.get("checkpoint_map"),
    }


def state_json(state: Any) -> dict[str, Any]:
    """A LangGraph StateSnapshot -> the SDK's ThreadState."""
    tasks = []
    for t in state.tasks:
        sub = t.state
        tasks.append({
            "id": t.id, "name": t.name, "error": redact(str(t.error)) if t.error else None,
            "interrupts": to_json(list(t.interrupts)),
            "checkpoint": checkpoint_json(sub) if isinstance(sub, dict) else None,
            "state": state_json(sub) if sub is not None and not isinstance(sub, dict) else None,
            "result": to_json(getattr(t, "result", None)),
        })
    interrupts = [i for t in tasks for i in t["interrupts"]]
    return {
        "values": to_json(state.values), "next": list(state.next),
        "checkpoint": checkpoint_json(state.config),
        "metadata": to_json(state.metadata or {}), "created_at": state.created_at,
        "parent_checkpoint": checkpoint_json(state.parent_config), "tasks": tasks,
        "interrupts": interrupts,
    }


def cron_json(c: Any) -> dict[str, Any]:
    extra = (c.payload or {}).get("_treadle", {})
    return {
        "cron_id": c.cron_id, "assistant_id": c.assistant_id, "thread_id": c.thread_id,
        "on_run_completed": extra.get("on_run_completed"), "end_time": iso(c.end_time),
        "schedule": c.schedule, "timezone": extra.get("timezone"),
        "created_at": iso(c.created_at), "updated_at": iso(c.updated_at),
        "payload": {k: v for k, v in (c.payload or {}).items() if k != "_treadle"},
        "user_id": c.user_id, "next_run_date": iso(c.next_run_at), "metadata": c.metadata,
        "enabled": c.enabled,
    }
