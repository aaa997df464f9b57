"""Request body checks before any handler runs: size (413) and text that is not Unicode (422)."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import HTTPException, Request
from starlette.requests import HTTPConnection

__all__ = ["BodyLimit", "valid_unicode"]

# A JSON escape of a UTF-16 surrogate: legal JSON, but a lone one is not Unicode text.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_NUL_ESCAPE = re.compile(rb"\\u0000")


async def valid_unicode(request: HTTPConnection) -> None:
    """422 for text no database can store: a lone surrogate (``"\\udc00"``, legal JSON but
    not Unicode) or a NUL character (``"\\u0000"``, refused by PostgreSQL), in a JSON body
    or in the path. Checked before anything is written, the same on every backend."""
    if "\x00" in request.url.path:
        raise HTTPException(422, "the path holds a NUL character; ids cannot contain it")
    if not isinstance(request, Request) or request.method not in ("POST", "PUT", "PATCH",
                                                                  "DELETE"):
        return  # a WebSocket, or a request without a body
    body = await request.body()
    if _NUL_ESCAPE.search(body) and _has_nul(body):
        raise HTTPException(422, "the body holds a NUL character (\\u0000), which cannot be "
                                 "stored; remove it")
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        json.dumps(json.loads(body), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise HTTPException(422, "the body holds text that is not valid Unicode (a lone "
                                 "surrogate escape such as \\udc00); send UTF-8 text") from exc
    except ValueError:
        return  # not JSON: the route's own validation answers


def _has_nul(body: bytes) -> bool:
    try:
        doc = json.loads(body)
    except ValueError:
        return False  # not JSON: the route's own validation answers
    stack: list[Any] = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


Scope = dict[str, Any]


class BodyLimit:
    """Pure ASGI middleware (it never buffers the body; it counts as it passes)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        seen = 0
        started = over = False

        async def limited_receive() -> Any:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise _TooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if over:
                # FastAPI turns the failed read into "400 error parsing the body": the
                # client is told the real reason instead.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._reject(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body too large (limit {self.max_bytes} bytes; "
                                     "set TREADLE_MAX_BODY_BYTES to raise it)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
