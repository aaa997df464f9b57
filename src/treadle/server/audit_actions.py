"""Which API calls the audit log records, and under which action.

One table, :data:`ROUTES`: every mutating route (POST, PUT, PATCH, DELETE) of the API, with
its action (``threads.create``), its resource (``threads``), where its resource id comes
from, and the POSTs that only read (searches, counts, history, a state at a checkpoint,
the thread-stream subscription), which are not recorded. A mutating call to a path that is
in no row (a 404, a 405) is still recorded, as ``http.<method>``.

The thread-stream protocol's commands (``POST /threads/{id}/commands`` and the WebSocket
frames) mutate when their method is in :data:`MUTATING_COMMANDS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MUTATING", "MUTATING_COMMANDS", "READ_ONLY", "ROUTES", "Action", "classify",
           "command_action"]

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Thread-stream protocol commands that change something (the others read or subscribe).
MUTATING_COMMANDS = frozenset({"run.start", "input.respond"})
READ_ONLY = "read"  # the action of a POST that only reads: not recorded


@dataclass(frozen=True, slots=True)
class Action:
    """How a call is recorded. ``id_param``: the path parameter holding the resource id;
    ``id_field``: else, the field of the JSON response body holding it (creates);
    ``id_from``: "run_location" (the run id from ``Content-Location``), "store_item" (the
    namespace and key from the request body) or "command" (the command's method from the
    request body)."""

    action: str
    resource: str | None
    id_param: str | None = None
    id_field: str | None = None
    id_from: str | None = None
    params: tuple[tuple[str, str], ...] = ()  # the path's parameters (name, value)

    @property
    def recorded(self) -> bool:
        return self.action != READ_ONLY

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)

    @property
    def resource_id(self) -> str | None:
        return self.param(self.id_param) if self.id_param else None


def _row(method: str, path: str, action: str, resource: str | None = None, *,
         id_param: str | None = None, id_field: str | None = None, id_from: str | None = None
         ) -> tuple[str, re.Pattern[str], Action]:
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "/?$")
    return method, pattern, Action(action, resource, id_param, id_field, id_from)


#: (method, path, action). The first matching row wins, so literal paths come before the
#: parameterised ones they would match (``/threads/search`` before ``/threads/{thread_id}``).
ROUTES = [
    # assistants
    _row("POST", "/assistants", "assistants.create", "assistants", id_field="assistant_id"),
    _row("POST", "/assistants/search", READ_ONLY),
    _row("POST", "/assistants/count", READ_ONLY),
    _row("PATCH", "/assistants/{assistant_id}", "assistants.update", "assistants",
         id_param="assistant_id"),
    _row("DELETE", "/assistants/{assistant_id}", "assistants.delete", "assistants",
         id_param="assistant_id"),
    _row("POST", "/assistants/{assistant_id}/versions", READ_ONLY),
    _row("POST", "/assistants/{assistant_id}/latest", "assistants.set_latest", "assistants",
         id_param="assistant_id"),
    # threads
    _row("POST", "/threads", "threads.create", "threads", id_field="thread_id"),
    _row("POST", "/threads/search", READ_ONLY),
    _row("POST", "/threads/count", READ_ONLY),
    _row("POST", "/threads/prune", "threads.prune", "threads"),
    _row("PATCH", "/threads/{thread_id}", "threads.update", "threads", id_param="thread_id"),
    _row("DELETE", "/threads/{thread_id}", "threads.delete", "threads", id_param="thread_id"),
    _row("POST", "/threads/{thread_id}/copy", "threads.copy", "threads", id_param="thread_id"),
    _row("POST", "/threads/{thread_id}/state/checkpoint", READ_ONLY),
    _row("POST", "/threads/{thread_id}/state", "threads.update_state", "threads",
         id_param="thread_id"),
    _row("POST", "/threads/{thread_id}/history", READ_ONLY),
    # thread-stream protocol
    _row("POST", "/threads/{thread_id}/commands", "threads.command", "threads",
         id_param="thread_id", id_from="command"),
    _row("POST", "/threads/{thread_id}/stream/events", READ_ONLY),
    # crons (before runs: /runs/crons would match /runs/{...} rows otherwise)
    _row("POST", "/threads/{thread_id}/runs/crons", "crons.create", "crons", id_field="cron_id"),
    _row("POST", "/runs/crons", "crons.create", "crons", id_field="cron_id"),
    _row("POST", "/runs/crons/search", READ_ONLY),
    _row("POST", "/runs/crons/count", READ_ONLY),
    _row("PATCH", "/runs/crons/{cron_id}", "crons.update", "crons", id_param="cron_id"),
    _row("DELETE", "/runs/crons/{cron_id}", "crons.delete", "crons", id_param="cron_id"),
    # runs
    _row("POST", "/threads/{thread_id}/runs", "runs.create", "runs", id_from="run_location"),
    _row("POST", "/threads/{thread_id}/runs/stream", "runs.create", "runs",
         id_from="run_location"),
    _row("POST", "/threads/{thread_id}/runs/wait", "runs.create", "runs",
         id_from="run_location"),
    _row("POST", "/threads/{thread_id}/runs/{run_id}/cancel", "runs.cancel", "runs",
         id_param="run_id"),
    _row("DELETE", "/threads/{thread_id}/runs/{run_id}", "runs.delete", "runs",
         id_param="run_id"),
    _row("POST", "/runs", "runs.create", "runs", id_from="run_location"),
    _row("POST", "/runs/stream", "runs.create", "runs", id_from="run_location"),
    _row("POST", "/runs/wait", "runs.create", "runs", id_from="run_location"),
    _row("POST", "/runs/batch", "runs.create_batch", "runs"),
    _row("POST", "/runs/cancel", "runs.cancel_many", "runs"),
    # the key-value store
    _row("PUT", "/store/items", "store.put", "store", id_from="store_item"),
    _row("DELETE", "/store/items", "store.delete", "store", id_from="store_item"),
    _row("POST", "/store/items/search", READ_ONLY),
    _row("POST", "/store/namespaces", READ_ONLY),
    # the assistants as MCP tools and A2A agents: every JSON-RPC request (reads included)
    _row("POST", "/mcp", "mcp.request"),
    _row("POST", "/a2a/{assistant_id}", "a2a.request", "assistants", id_param="assistant_id"),
]


def classify(method: str, path: str) -> Action | None:
    """How ``method path`` is recorded: None for a call that is not (GET, HEAD, OPTIONS,
    read-only POSTs: check ``.recorded``)."""
    method = method.upper()
    if method not in MUTATING:
        return None
    for row_method, pattern, action in ROUTES:
        if row_method != method:
            continue
        found = pattern.match(path)
        if found:
            return Action(action.action, action.resource, action.id_param, action.id_field,
                          action.id_from, tuple(found.groupdict().items()))
    return Action(f"http.{method.lower()}", None)


def command_action(method: object) -> str | None:
    """The action of a thread-stream protocol command, or None when it does not mutate."""
    if isinstance(method, str) and method in MUTATING_COMMANDS:
        return f"threads.command.{method}"
    return None
