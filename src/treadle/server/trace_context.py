"""Continue a caller's trace: a request that carries W3C ``traceparent`` (and
``tracestate``) headers makes the spans it starts — a run's ``treadle.run.enqueue`` —
children of the caller's span, so a client's trace runs on through the run's attempts and
node tasks on the workers. A pure ASGI middleware: the context is attached for the whole
request, in the task that serves it."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from treadle import tracing

__all__ = ["TraceContext"]

_HEADERS = (b"traceparent", b"tracestate")


class TraceContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1")
                   for k, v in scope.get("headers", ()) if k in _HEADERS}
        with tracing.attached(headers):
            await self.app(scope, receive, send)
