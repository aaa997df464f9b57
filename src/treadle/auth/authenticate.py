"""Authentication: every request (HTTP and WebSocket) goes through ``@auth.authenticate``.

:class:`Authenticate` is pure ASGI middleware. Before any route runs it calls the
handler with the parameters it names (``request``, ``headers`` (``dict[bytes, bytes]``),
``authorization``, ``path``, ``method``, ``path_params``, ``query_params``, ``scopes``,
``scope``), turns its answer into an :class:`~treadle.auth.user.AuthUser` and puts it in
``scope["state"]["auth_user"]`` (and the user's ``tenant_id``, if any, in
``scope["state"]["auth_tenant"]``), and as Starlette's ``request.user`` (``scope["user"]``,
with ``request.auth.scopes`` its permissions).

Refusals: ``Auth.exceptions.HTTPException`` answers its status, detail and headers;
anything else the handler raises is a 401 ``Unauthorized`` whose message is never sent
nor logged (it may hold the credential); a handler answering something that is not a
user is a 500. A WebSocket is refused before it is accepted: closed with code 4000 +
status (4401, 4403), which the server turns into an HTTP 403 to the handshake.

Public paths (no credentials): ``/ok``, ``/healthz``, ``/readyz``, and ``/info`` /
``/metrics`` unless the settings say otherwise; and the web console's files (everything
under ``public_prefixes``: static pages and scripts that hold no data; the API calls they
make carry the browser user's credentials and are authenticated like any other).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from starlette.authentication import AuthCredentials
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from treadle.auth.loading import AUTHENTICATE_PARAMETERS
from treadle.auth.user import AuthUser, user_from
from treadle.errors import ConfigError
from treadle.graphs.factories import request_user

__all__ = ["ALWAYS_PUBLIC", "Authenticate", "public_paths"]

log = logging.getLogger("treadle.auth")

ALWAYS_PUBLIC = ("/ok", "/healthz", "/readyz")


def public_paths(*, info: bool, metrics: bool) -> frozenset[str]:
    """The paths served without credentials."""
    return frozenset([*ALWAYS_PUBLIC, *(["/info"] if info else []),
                      *(["/metrics"] if metrics else [])])


class Authenticate:
    """ASGI middleware: authenticate each request with the ``Auth`` ``auth_of()`` returns
    (None: auth is not ready yet, answered 503)."""

    def __init__(self, app: ASGIApp, auth_of: Callable[[], Any], public: frozenset[str],
                 skip: Callable[[Scope], bool] | None = None,
                 public_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.auth_of = auth_of
        self.public = public
        self.public_prefixes = public_prefixes  # "/console": it and what is under "/console/"
        self.skip = skip  # requests left unauthenticated (http.app's routes), if any

    def _public_prefix(self, scope: Scope) -> bool:
        path: str = scope["path"]
        return scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and any(
            path == p or path.startswith(p + "/") for p in self.public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.public or (
                self.skip is not None and self.skip(scope)) or self._public_prefix(scope):
            await self.app(scope, receive, send)
            return
        auth = self.auth_of()
        if auth is None:
            await _refuse(scope, receive, send, 503, "authentication is not ready yet", None)
            return
        from langgraph_sdk.auth.exceptions import HTTPException

        try:
            user = await authenticate(auth, scope, receive)
        except HTTPException as exc:
            await _refuse(scope, receive, send, exc.status_code, exc.detail, exc.headers)
            return
        except ConfigError as exc:  # what it returned is not a user
            log.error("the authenticate handler is broken: %s", exc)
            await _refuse(scope, receive, send, 500, "authentication failed", None)
            return
        except Exception as exc:  # its message may hold the credential: never shown
            log.info("authentication refused a request to %s (%s)", scope["path"],
                     type(exc).__name__)
            await _refuse(scope, receive, send, 401, "Unauthorized", None)
            return
        state = scope.setdefault("state", {})
        state["auth_user"] = user
        # Starlette's request.user / request.auth, as langgraph-api's routes see them.
        scope["user"], scope["auth"] = user, AuthCredentials(list(user.permissions))
        tenant = user.extra.get("tenant_id")
        state["auth_tenant"] = tenant if tenant is None else str(tenant)
        current = request_user.set(user)  # a graph factory's runtime.user
        try:
            await self.app(scope, receive, send)
        finally:
            request_user.reset(current)


async def authenticate(auth: Any, scope: Scope, receive: Receive) -> AuthUser:
    """Call ``auth``'s authenticate handler for the request ``scope``."""
    handler = auth._authenticate_handler
    available = _arguments(scope, receive)
    kwargs = {name: available[name]() for name in _wanted(handler)}
    result = handler(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return user_from(result)


@functools.cache
def _wanted(handler: Callable[..., Any]) -> tuple[str, ...]:
    """The parameters treadle passes that ``handler`` takes (all of them for ``**kwargs``)."""
    params = inspect.signature(handler).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return AUTHENTICATE_PARAMETERS
    return tuple(name for name in params if name in AUTHENTICATE_PARAMETERS)


def _arguments(scope: Scope, receive: Receive) -> dict[str, Callable[[], Any]]:
    headers = {bytes(k).lower(): bytes(v) for k, v in scope.get("headers", ())}
    authorization = headers.get(b"authorization")
    return {
        "request": lambda: Request(scope, receive) if scope["type"] == "http"
        else HTTPConnection(scope),
        "headers": lambda: headers,
        "authorization": lambda: None if authorization is None
        else authorization.decode("latin-1"),
        "path": lambda: scope["path"],
        "method": lambda: scope.get("method", "GET"),  # a WebSocket handshake is a GET
        "path_params": lambda: _path_params(scope),
        "query_params": lambda: dict(QueryParams(scope.get("query_string", b""))),
        "scopes": lambda: list(getattr(scope.get("auth"), "scopes", ())),
        "scope": lambda: scope,
    }


def _path_params(scope: Scope) -> dict[str, Any]:
    """The parameters of the route the request will reach (routing has not run yet)."""
    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        match, child = route.matches(scope)
        if match is Match.FULL:
            return dict(child.get("path_params", {}))
    return {}


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str,
                  headers: Any) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4000 + status, "reason": detail[:100]})
        return
    response = JSONResponse({"detail": detail}, status_code=status,
                            headers=dict(headers) if headers else None)
    await response(scope, receive, send)
