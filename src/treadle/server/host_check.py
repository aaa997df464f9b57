"""The ``Host`` names the API answers to (DNS-rebinding protection).

A page on ``http://evil.example:2024`` whose name the attacker re-points at 127.0.0.1
talks to a developer's ``treadle dev`` as its own origin: the browser sends
``Host: evil.example:2024``. ``treadle dev`` therefore answers only loopback names
(``localhost``, ``127.0.0.1``, ``[::1]``, any port) unless ``--allowed-hosts`` /
``TREADLE_ALLOWED_HOSTS`` names others; ``treadle serve`` answers any name unless told
(it runs behind an ingress or load balancer that routes by name). Entries are host names
(no port), ``*.example.com`` (its subdomains) or ``*`` (any).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

__all__ = ["LOOPBACK_HOSTS", "HostCheck", "host_name", "parse_hosts"]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def parse_hosts(value: str | None) -> tuple[str, ...] | None:
    """``TREADLE_ALLOWED_HOSTS`` (comma-separated) as names; None when unset or ``*``."""
    if value is None:
        return None
    hosts = tuple(h.strip().lower().strip("[]").rstrip(".") for h in value.split(",")
                  if h.strip())
    return None if not hosts or "*" in hosts else hosts


def host_name(host: str) -> str | None:
    """The name in a Host header (no port, no brackets), lower case; None if malformed."""
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


class HostCheck:
    """Pure ASGI middleware: 400 (or a refused WebSocket) for a Host not allowed."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = tuple(allowed)

    def allows(self, host: str) -> bool:
        name = host_name(host)
        return name is not None and any(
            name == entry or (entry.startswith("*.") and name.endswith(entry[1:]))
            for entry in self.allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await WebSocketClose(code=1008, reason="host not allowed")(scope, receive, send)
            return
        shown = host_name(host) or repr(host)
        body = json.dumps({"detail": f"Host {shown} is not allowed: start the server with "
                                     f"--allowed-hosts {shown} (TREADLE_ALLOWED_HOSTS)"}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
