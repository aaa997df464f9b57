"""Authorization: what ``@auth.on`` handlers say a user may do with a resource.

Handler precedence is LangGraph Platform's, most specific first:
``@auth.on.<resource>.<action>``, then ``@auth.on.<resource>``, then a handler of the
action for every resource (``@auth.on(actions=...)``), then ``@auth.on``. A handler gets
``ctx`` (``langgraph_sdk.Auth.types.AuthContext``: user, permissions, resource, action)
and ``value`` (a dict shaped like the ``Auth.types`` TypedDict of the action, which it may
change: the caller uses the changed value) and answers:

* ``None`` or ``True``: allowed;
* ``False``: denied;
* a filter dict (:mod:`treadle.store.access`): allowed for the resources it matches,
  applied inside the store's queries. An empty dict is no filter. A filter treadle cannot
  apply raises :class:`~treadle.errors.AccessFilterError` (a server error, never an allow).

With no handler for a (resource, action): allowed, unless ``default_deny``. A handler may
raise ``Auth.exceptions.HTTPException`` to answer a status of its choice; the caller
passes it on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from treadle.auth.user import AuthUser
from treadle.errors import AccessFilterError
from treadle.store.access import validate

__all__ = ["ACTIONS", "Authorizer", "Decision"]

#: The (resource, action) pairs treadle authorizes.
ACTIONS: dict[str, tuple[str, ...]] = {
    "threads": ("create", "read", "update", "delete", "search", "create_run"),
    "assistants": ("create", "read", "update", "delete", "search"),
    "crons": ("create", "read", "update", "delete", "search"),
    "store": ("put", "get", "search", "delete", "list_namespaces"),
}


@dataclass(frozen=True)
class Decision:
    """An authorization's answer: ``allowed``, and the filter (None: none) that narrows
    what is allowed."""

    allowed: bool
    filters: dict[str, Any] | None = None


class Authorizer:
    """The handlers of one ``langgraph_sdk.Auth``, resolved once per (resource, action)."""

    def __init__(self, auth: Any, *, default_deny: bool) -> None:
        self.auth = auth
        self.default_deny = default_deny
        self._resolved: dict[tuple[str, str], Callable[..., Any] | None] = {}

    def handler(self, resource: str, action: str) -> Callable[..., Any] | None:
        """The handler that decides (resource, action), or None."""
        key = (resource, action)
        if key not in self._resolved:
            handlers: Mapping[tuple[str, str], list[Any]] = self.auth._handlers
            found = None
            for candidate in (key, (resource, "*"), ("*", action)):
                if handlers.get(candidate):
                    found = handlers[candidate][-1]
                    break
            if found is None and self.auth._global_handlers:
                found = self.auth._global_handlers[-1]
            self._resolved[key] = found
        return self._resolved[key]

    async def authorize(self, user: AuthUser, resource: str, action: str,
                        value: dict[str, Any]) -> Decision:
        """Ask the handler of (resource, action) about ``value`` (which it may change)."""
        from langgraph_sdk.auth.types import AuthContext

        handler = self.handler(resource, action)
        if handler is None:
            return Decision(not self.default_deny)
        ctx = AuthContext(permissions=list(user.permissions), user=user,  # type: ignore[arg-type]
                          resource=resource, action=action)  # type: ignore[arg-type]
        return decision(await handler(ctx=ctx, value=value), f"{resource}.{action}")


def decision(result: Any, where: str) -> Decision:
    """A handler's answer as a Decision; AccessFilterError for one that is not an answer."""
    if result is None or result is True:
        return Decision(True)
    if result is False:
        return Decision(False)
    if isinstance(result, Mapping):
        try:
            validate(result)
        except AccessFilterError as exc:
            raise AccessFilterError(f"the {where} handler returned a bad filter: {exc}") from exc
        return Decision(True, dict(result) or None)
    raise AccessFilterError(f"the {where} handler returned a {type(result).__name__}: return "
                            "None/True (allow), False (deny) or a filter dict")
