"""langgraph.json's ``"priority"``: the SDK's Priority API (``langgraph_sdk.Priority``).

``{"priority": {"path": "./priority.py:priority"}}`` names a ``Priority`` whose
``@priority.assign`` handler the server calls at the first run of a thread that has no
settings yet, with a ``PriorityContext`` (the user, the thread, the assistant, the run's
metadata, the cron). What it returns (``priority`` -5..5, -5 first; ``fairness_group``)
is stored on the thread, the first stored winning (:meth:`RunStore.set_thread_priority`),
and every run queued on the thread afterwards carries it. Claims then take the lowest
priority first and, among equals, take turns between fairness groups
(:meth:`RunStore.claim_run`). treadle honours ``fairness_group``, which the SDK calls
"currently disabled" on LangGraph Platform (docs/api.md says so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from treadle.errors import ConfigError, PriorityError
from treadle.store import Store
from treadle.store.queue import ThreadPriority, check_priority

__all__ = ["ThreadPriorities", "load_priority"]

Handler = Callable[[Any], Awaitable[Any]]


def load_priority(ref: str) -> Handler:
    """The ``@priority.assign`` handler of the ``langgraph_sdk.Priority`` at ``ref``;
    ConfigError (one line, before the server listens) when there is none."""
    from langgraph_sdk import Priority

    from treadle.graphs.refs import load_object

    obj = load_object(ref, f"priority {ref!r}")
    if not isinstance(obj, Priority):
        raise ConfigError(f"priority {ref!r} is a {type(obj).__name__}, not a "
                          "langgraph_sdk.Priority")
    handler = getattr(obj, "_assign_handler", None)
    if handler is None:
        raise ConfigError(f"priority {ref!r} has no handler: decorate an async function "
                          "with @priority.assign")
    return handler  # type: ignore[no-any-return]


class ThreadPriorities:
    """Settles each thread's priority settings at its first run (see the module)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def settle(self, store: Store, thread_id: str, *, user: Any, given_thread: bool,
                     thread_metadata: Mapping[str, Any], assistant: Any,
                     run_metadata: Mapping[str, Any], cron_id: str | None) -> ThreadPriority:
        """The thread's stored settings, or the handler's, stored now. PriorityError when the
        handler raises or returns something the SDK does not allow (nothing is stored)."""
        stored = await asyncio.to_thread(store.thread_priority, thread_id)
        if stored is not None:
            return stored
        from langgraph_sdk import PriorityContext

        from treadle.auth.user import AuthUser

        if user is None:  # no auth: an empty identity, as on LangGraph Platform
            user = AuthUser(identity="", is_authenticated=False)
        context = PriorityContext(
            user=user, permissions=list(getattr(user, "permissions", ())),
            thread_id=thread_id if given_thread else None,
            thread_metadata=dict(thread_metadata), assistant_id=assistant.assistant_id,
            graph_id=assistant.graph_id, assistant_metadata=dict(assistant.metadata or {}),
            run_metadata=dict(run_metadata), cron_id=cron_id)
        try:
            got = await self.handler(context)
        except Exception as exc:
            raise PriorityError(f"the priority handler failed for thread {thread_id}: "
                                f"{type(exc).__name__}: {exc}") from exc
        if got is not None and not isinstance(got, Mapping):
            raise PriorityError(f"the priority handler returned a {type(got).__name__}; "
                                "return a dict of priority and fairness_group, or None")
        try:
            settings = check_priority((got or {}).get("priority"),
                                      (got or {}).get("fairness_group"))
        except ConfigError as exc:
            raise PriorityError(f"the priority handler returned {exc}") from exc
        return await asyncio.to_thread(store.set_thread_priority, thread_id, settings)
