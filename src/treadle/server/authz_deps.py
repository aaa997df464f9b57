"""What a route asks of authorization, in one call each.

Every route takes ``authz: AuthzDep`` (the request's user and the app's
:class:`~treadle.auth.authorize.Authorizer`) and calls one of:

* :meth:`Authz.resource` for a resource addressed by id (read, update, delete): the
  access filter to pass to the store's query; a denial answers 404 with the body a
  missing resource gets;
* :meth:`Authz.action` for create / search / count / store operations: the filter (for
  searches), a denial answers 403;

both with a ``value`` dict shaped like langgraph_sdk's ``Auth.types`` for the action,
which the handler may change (the route then uses the changed value). With no auth
configured both return None at once. :meth:`Authz.run_configurable` is what runs receive
in ``config["configurable"]`` (the user, and the request headers langgraph.json's
``http.configurable_headers`` names).

The treadle extensions that are not about one resource (``/audit``, ``/operations``) ask
:func:`admin_only` instead: admins only when authentication is configured, anyone without.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection, Request

from treadle.auth.authorize import Authorizer, Decision
from treadle.auth.user import AuthUser
from treadle.errors import AccessFilterError
from treadle.server.run_config import run_headers

__all__ = ["AUTH_CONFIG_KEYS", "Authz", "AuthzDep", "admin_only", "auth_configured", "both",
           "get_authz", "require_admin", "strip_prefix"]

log = logging.getLogger("treadle.auth")

#: The ``configurable`` keys a run receives from authentication (a client's are dropped).
AUTH_CONFIG_KEYS = ("langgraph_auth_user", "langgraph_auth_user_id", "langgraph_auth_permissions")


@dataclass(frozen=True)
class Authz:
    authorizer: Authorizer | None = None
    user: AuthUser | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # http.configurable_headers

    @property
    def on(self) -> bool:
        return self.authorizer is not None

    async def decide(self, resource: str, action: str, value: dict[str, Any]) -> Decision:
        if self.authorizer is None:
            return Decision(True)
        if self.user is None:  # the middleware authenticates every guarded route
            raise HTTPException(401, "Unauthorized")
        from langgraph_sdk.auth.exceptions import HTTPException as HandlerHTTPException

        try:
            return await self.authorizer.authorize(self.user, resource, action, value)
        except HandlerHTTPException as exc:
            raise HTTPException(exc.status_code, exc.detail,
                                headers=dict(exc.headers) if exc.headers else None) from None
        except (AccessFilterError, HTTPException):
            raise
        except Exception as exc:  # (an assert in the handler): refused, its message kept private
            log.info("the %s.%s authorization handler refused (%s)", resource, action,
                     type(exc).__name__)
            raise HTTPException(403, "Forbidden") from None

    async def resource(self, resource: str, action: str, value: dict[str, Any],
                       not_found: str) -> dict[str, Any] | None:
        """The access filter for a resource addressed by id; 404 ``not_found`` if denied."""
        decided = await self.decide(resource, action, value)
        if not decided.allowed:
            raise HTTPException(404, not_found)
        return decided.filters

    async def action(self, resource: str, action: str, value: dict[str, Any]
                     ) -> dict[str, Any] | None:
        """The access filter of a create / search / store action; 403 if denied."""
        decided = await self.decide(resource, action, value)
        if not decided.allowed:
            raise HTTPException(403, f"not allowed to {action} {resource}")
        return decided.filters

    async def store(self, action: str, value: dict[str, Any]) -> None:
        """Authorize a store operation (the handler may rewrite ``value["namespace"]``)."""
        if await self.action("store", action, value) is not None:
            raise AccessFilterError("a store handler returned a filter, which treadle cannot "
                                    "apply to store items: rewrite value['namespace'] or "
                                    "return None/False")

    def run_configurable(self) -> dict[str, Any]:
        """What a run of this request gets in ``configurable``: the request headers
        langgraph.json's ``http.configurable_headers`` copies, then the user (if any)."""
        if self.user is None:
            return dict(self.headers)
        return {**self.headers, "langgraph_auth_user": self.user.to_dict(),
                "langgraph_auth_user_id": self.user.identity,
                "langgraph_auth_permissions": list(self.user.permissions)}


def get_authz(conn: HTTPConnection) -> Authz:
    authorizer = getattr(conn.app.state, "authorizer", None)
    patterns = getattr(conn.app.state, "configurable_headers", None)
    return Authz(authorizer, (conn.scope.get("state") or {}).get("auth_user"),
                 run_headers(patterns, conn.headers) if patterns is not None else {})


AuthzDep = Annotated[Authz, Depends(get_authz)]


def auth_configured(conn: HTTPConnection) -> bool:
    """Whether the server authenticates callers: the app installed an Auth (langgraph.json's
    ``auth``, or the built-in one: ``server/app.py``'s ``_install_auth`` sets
    ``app.state.auth`` / ``build_auth``), or the request carries a user."""
    state = conn.app.state
    return (getattr(conn.state, "auth_user", None) is not None
            or getattr(state, "auth", None) is not None
            or getattr(state, "build_auth", None) is not None)


def require_admin(conn: HTTPConnection, what: str) -> None:
    """403 "``what`` needs the admin permission" unless the caller is an admin (its
    permissions hold "admin"), when authentication is configured; nothing without it."""
    if not auth_configured(conn):
        return
    user = getattr(conn.state, "auth_user", None)
    permissions = getattr(user, "permissions", None)
    if permissions is None and isinstance(user, dict):
        permissions = user.get("permissions")
    if not permissions or "admin" not in permissions:
        raise HTTPException(403, f"{what} needs the admin permission")


def admin_only(what: str) -> Any:
    """A route dependency: :func:`require_admin` with ``what`` (e.g. "reading the audit
    log") naming what is refused."""

    def check(request: Request) -> None:
        require_admin(request, what)

    return Depends(check)


def both(*filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Filters that must all hold, as one (None: none)."""
    given = [f for f in filters if f]
    return None if not given else given[0] if len(given) == 1 else {"$and": given}


def strip_prefix(given: Sequence[str] | None, rewritten: Sequence[str] | None
                 ) -> tuple[str, ...]:
    """The labels a store handler put in front of namespace ``given`` (``()``: none)."""
    old, new = tuple(given or ()), tuple(rewritten or ())
    if len(new) >= len(old) and new[len(new) - len(old):] == old:
        return new[:len(new) - len(old)]
    return ()
