"""The user's app of langgraph.json's ``http.app`` in tests/e2e/test_http_app.py: routes
(one replacing treadle's GET /info, one trying to replace /ok), a middleware that stamps
every answer and says whether authentication ran before it, and a lifespan whose start and
stop are written to the file $HTTP_APP_EVENTS."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response


def _event(text: str) -> None:
    path = os.environ.get("HTTP_APP_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text + "\n")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    _event("started")
    app.state.greeting = "hello from the lifespan"
    yield {"counter": [0]}
    _event("stopped")


app = FastAPI(lifespan=lifespan)


@app.middleware("http")
async def stamp(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                ) -> Response:
    authenticated = "user" in request.scope  # set by treadle's authentication
    response = await call_next(request)
    response.headers["x-custom-middleware"] = "yes"
    response.headers["x-saw-user"] = "yes" if authenticated else "no"
    return response


@app.get("/custom/hello")
async def hello(request: Request) -> dict[str, Any]:
    request.state.counter[0] += 1
    return {"greeting": request.app.state.greeting, "calls": request.state.counter[0]}


@app.get("/custom/whoami")
async def whoami(request: Request) -> dict[str, Any]:
    if "user" not in request.scope:
        return {"user": None}
    return {"user": request.user.identity, "scopes": list(request.auth.scopes)}


class Teapot(Exception):
    pass


@app.exception_handler(Teapot)
async def teapot(_request: Request, _exc: Exception) -> Response:
    return Response("short and stout", status_code=418)


@app.get("/custom/teapot")
async def brew() -> None:
    raise Teapot


@app.get("/info")
async def info() -> dict[str, Any]:
    return {"custom": True}


@app.get("/ok")
async def not_ok() -> dict[str, Any]:
    return {"custom": True}


@contextlib.asynccontextmanager
async def failing_lifespan(app: FastAPI) -> AsyncIterator[None]:
    raise RuntimeError("cannot reach the billing service")
    yield  # pragma: no cover


failing = FastAPI(lifespan=failing_lifespan)
