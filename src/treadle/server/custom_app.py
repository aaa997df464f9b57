"""langgraph.json's ``http.app``: a user's Starlette or FastAPI app served with treadle's.

As in langgraph-api:

* **routes**: the app's routes are tried after treadle's probes and documentation (``/ok``,
  ``/healthz``, ``/readyz``, ``/metrics``, ``/docs``, ``/redoc``, ``/openapi.json``) and
  before everything else, so a custom route may replace an API route (``GET /info``, or
  ``POST /threads``). A request for a custom route reaches it through the app's own
  exception handlers, with ``request.app`` the user's app (its ``state``);
* **middleware** (the app's ``add_middleware`` / ``@app.middleware``): with
  ``http.middleware_order`` ``"middleware_first"`` (default) it wraps every route, custom
  or treadle's, outside treadle's own middleware, so it runs before authentication; with
  ``"auth_first"`` it runs inside authentication (every route still);
* **lifespan**: the app's starts once treadle's has (store open, graphs loaded) and stops
  before treadle's; what it yields is the requests' ``request.state``;
* **auth**: custom routes are not authenticated unless ``http.enable_custom_route_auth``;
  when they are, the handler finds the user as ``request.user`` (and
  ``request.auth.scopes`` its permissions), as in langgraph-api.

treadle's other middleware (Host and Origin checks, body limit, audit trail, CORS) applies
to custom routes too. Loading failures are one :class:`~treadle.errors.ConfigError` line.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from treadle.errors import ConfigError

__all__ = ["UNSHADOWABLE", "CustomRoutes", "load_custom_app", "routed", "user_lifespan"]

#: treadle's paths a custom route cannot replace.
UNSHADOWABLE = frozenset({"/ok", "/healthz", "/readyz", "/metrics", "/docs",
                          "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def load_custom_app(ref: str, source: str = "langgraph.json") -> Starlette:
    """The Starlette (or FastAPI) app ``ref`` ("path.py:attr" or "module:attr") names."""
    from treadle.graphs.refs import load_object

    found = load_object(ref, f'{source}: "http.app" {ref!r}')
    if not isinstance(found, Starlette):
        raise ConfigError(f'{source}: "http.app" {ref!r} is a {type(found).__name__}, not a '
                          "Starlette or FastAPI app (app = FastAPI() or Starlette(...))")
    return found


class CustomRoutes(BaseRoute):
    """One route of treadle's router standing for all of the user's app's routes."""

    def __init__(self, user_app: Starlette) -> None:
        self.user_app = user_app
        self._inner = _without_middleware(user_app)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: Scope | None = None
        for route in self.user_app.router.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return Match.FULL, child
            if match is Match.PARTIAL and partial is None:
                partial = child
        return (Match.PARTIAL, partial) if partial is not None else (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner({**scope, "app": self.user_app}, receive, send)


def _without_middleware(app: Starlette) -> ASGIApp:
    """The user's app without its middleware (treadle applies that around its own): its
    exception handlers and its router."""
    kept = app.user_middleware
    app.user_middleware = []
    try:
        return app.build_middleware_stack()
    finally:
        app.user_middleware = kept


def routed(routes: list[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The route of ``routes`` a router would give ``scope`` to (as Starlette's Router
    picks: the first full match, else the first partial one)."""
    partial = None
    for route in routes:
        match, _child = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def user_lifespan(user_app: Starlette
                  ) -> Callable[[], contextlib.AbstractAsyncContextManager[Any]]:
    """Enter the user's app's lifespan (its state, or None)."""
    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[Any]:
        async with user_app.router.lifespan_context(user_app) as state:
            yield state

    return run
