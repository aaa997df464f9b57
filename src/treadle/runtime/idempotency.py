"""Stable idempotency keys for node tasks.

LangGraph derives a task's id from the checkpoint it was planned from, its step,
node and path, so a task retried in the same run, or planned again when a crashed
run resumes from its last checkpoint, has the same id. treadle's key is
``"{thread_id}:{task_id}"``: the same for every attempt of one task,
different for every other task. Pass it to external APIs (payments, emails, ticket
systems) that deduplicate by key, and the side effect happens once.
"""

from __future__ import annotations

import contextvars
from typing import Any

from langchain_core.runnables import RunnableConfig

from treadle._langgraph import task_id as task_id_of
from treadle.errors import UsageError

__all__ = ["idempotency_key", "key_from_config"]

# Set inside worker processes, where LangGraph's config is not available.
_PROCESS_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "treadle_idempotency_key", default=None
)


def key_from_config(config: RunnableConfig | dict[str, Any]) -> str | None:
    task_id = task_id_of(config)
    if task_id is None:
        return None
    conf = config.get("configurable") or {}
    # Task ids are unique (derived from a uuid6 checkpoint id), also inside subgraphs.
    return f"{conf.get('thread_id', '')}:{task_id}"


def idempotency_key(config: RunnableConfig | None = None) -> str:
    """The idempotency key of the node task that is running now.

    Call it from inside a node (any pool: thread, async or process). Pass the
    node's ``config`` explicitly when calling from a thread you started yourself.
    """
    key = _PROCESS_KEY.get()
    if key is not None and config is None:
        return key
    if config is None:
        from langgraph.config import get_config

        try:
            config = get_config()
        except RuntimeError as exc:
            raise UsageError(
                "treadle.idempotency_key() must be called inside a running node "
                "(or given that node's config)"
            ) from exc
    found = key_from_config(config)
    if found is None:
        raise UsageError("no LangGraph task is running in this config; call it inside a node")
    return found


def set_process_key(key: str | None) -> contextvars.Token[str | None]:
    return _PROCESS_KEY.set(key)


def reset_process_key(token: contextvars.Token[str | None]) -> None:
    _PROCESS_KEY.reset(token)
