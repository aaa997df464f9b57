"""What every request handler reaches: the server's settings, store and graphs.

Handlers take it with ``ctx: Ctx = Depends(get_ctx)`` (or ``get_store`` for just
the store); the app factory builds one per process and puts it on ``app.state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from treadle.config import Settings
from treadle.server.webhook_policy import WebhookPolicy
from treadle.store import Store
from treadle.store.memory import TreadleStore

__all__ = ["Ctx", "get_ctx", "get_memory", "get_store"]


@dataclass
class Ctx:
    settings: Settings
    store: Store
    graphs: Any  # treadle.server.served_graphs.ServerGraphs (the graphs of langgraph.json)
    memory_ttl: dict[str, Any] | None = None  # langgraph.json's store.ttl (TTLConfig)
    webhooks: WebhookPolicy = field(default_factory=WebhookPolicy)  # langgraph.json's webhooks
    priority: Any = None  # langgraph.json's priority (treadle.server.priority.ThreadPriorities)
    extra: dict[str, Any] = field(default_factory=dict)


def get_ctx(request: Request) -> Ctx:
    ctx: Ctx = request.app.state.ctx
    return ctx


def get_store(request: Request) -> Store:
    return get_ctx(request).store


def get_memory(request: Request) -> TreadleStore:
    """The store as LangGraph's ``BaseStore``, with langgraph.json's ``store.ttl``."""
    ctx = get_ctx(request)
    return TreadleStore(ctx.store, ttl=ctx.memory_ttl)  # type: ignore[arg-type]
