"""langgraph.json's ``http.mount_prefix``: the API served under a path such as ``/my-api``.

:class:`MountPrefix` is the outermost middleware: a request under the prefix goes on with
the prefix moved from its ``path`` to its ``root_path`` (as Starlette's ``Mount`` does), so
every route, treadle's or ``http.app``'s, is matched as without a prefix and URLs the app
builds (``/docs``' link to the OpenAPI document) carry it. The probes ``/ok``,
``/healthz``, ``/readyz`` and ``/metrics`` also answer at the root, for load balancers and
Prometheus; anything else outside the prefix is a 404.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ROOT_PATHS", "MountPrefix"]

#: Paths also served outside the prefix.
ROOT_PATHS = frozenset({"/ok", "/healthz", "/readyz", "/metrics"})


class MountPrefix:
    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix  # "/a/b", no trailing slash

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == self.prefix or path.startswith(self.prefix + "/"):
            inner = path[len(self.prefix):] or "/"
            raw: bytes = scope.get("raw_path") or inner.encode()
            scope = {**scope, "path": inner, "root_path": scope.get("root_path", "") + self.prefix,
                     # the prefix has no escapes (checked), so it is the same bytes in raw_path
                     "raw_path": raw[len(self.prefix):] or b"/"
                     if raw.startswith(self.prefix.encode()) else inner.encode()}
        elif path not in ROOT_PATHS:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4404, "reason": "Not Found"})
                return
            response = JSONResponse({"detail": f"Not Found: the API is served under "
                                     f"{self.prefix} (http.mount_prefix)"}, status_code=404)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
