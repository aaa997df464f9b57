"""Browsers may drive the API only from its own origin or one ``http.cors`` allows.

A browser names the page that makes a request in ``Origin`` (on every WebSocket
handshake, every cross-origin request and every POST); clients that are not browsers
(the SDKs, curl) send none and are not affected. Without this check any web page a
developer visits could open ``ws://localhost:2024/threads/{id}/stream/events`` and start
runs: WebSockets are not subject to CORS, and a "simple" cross-origin POST reaches the
handler even when CORS keeps its answer from the page. A request whose ``Origin`` is
neither the server's own (its ``Host``) nor allowed by langgraph.json's ``http.cors``
(``allow_origins``, ``allow_origin_regex``) is refused: 403, or a WebSocket closed before
it is accepted. (A DNS-rebinding page is same-origin by construction: the ``Host`` check
of :mod:`treadle.server.host_check` stops it.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

__all__ = ["OriginCheck", "same_origin"]

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


class OriginCheck:
    """Pure ASGI middleware: refuse browser requests from origins not allowed."""

    def __init__(self, app: ASGIApp, allow_origins: Sequence[str] = (),
                 allow_origin_regex: str | None = None) -> None:
        self.app = app
        self.allow_all = "*" in allow_origins
        self.allow_origins = {o.rstrip("/") for o in allow_origins}
        self.regex = re.compile(allow_origin_regex) if allow_origin_regex else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not origin or self.allowed(origin, headers.get(b"host", b"").decode("latin-1")):
            await self.app(scope, receive, send)
            return
        message = (f"Origin {origin} may not use this API: open it from the API's own origin, "
                   "or add the origin to http.cors.allow_origins in langgraph.json")
        if scope["type"] == "websocket":
            await WebSocketClose(code=1008, reason="origin not allowed")(scope, receive, send)
            return
        body = json.dumps({"detail": message}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def allowed(self, origin: str, host: str) -> bool:
        if self.allow_all or origin in self.allow_origins:
            return True
        if self.regex is not None and self.regex.fullmatch(origin):
            return True
        return same_origin(origin, host)


def same_origin(origin: str, host: str) -> bool:
    """Whether the browser origin ``origin`` names the host and port of ``host`` (the
    request's Host header); default ports compare equal to none."""
    try:
        parts = urlsplit(origin)
        origin_host, origin_port = parts.hostname, parts.port
    except ValueError:
        return False
    if not origin_host or parts.scheme not in _DEFAULT_PORTS or not host:
        return False
    default = _DEFAULT_PORTS[parts.scheme]
    try:
        given = urlsplit(f"//{host}")
        host_name, host_port = given.hostname, given.port
    except ValueError:
        return False
    return (origin_host == host_name
            and str(origin_port or default) == str(host_port or default))
