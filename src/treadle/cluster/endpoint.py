"""A worker's HTTP endpoint (``treadle worker --port``): probes and metrics.

``GET /healthz``
    Liveness. 200 while the worker's loops are alive; 503 when one of them died of an
    unexpected error, or the heartbeat loop has not come round for ``3 × lease_ttl``
    (a blocked event loop or a hung store call: its leases are lost anyway). A store
    outage alone does not fail it — restarting the worker would not help.
``GET /readyz``
    Readiness. 200 while the worker claims work; 503 from the first SIGTERM (draining)
    until the process exits.
``GET /metrics``
    Prometheus text (see :mod:`treadle.metrics`).

It runs on the worker's own event loop (uvicorn without its signal handling: the worker
handles SIGTERM), so it keeps answering while the worker drains. Its port is bound when the
worker is made (a port in use stops it at once, in one line: :mod:`treadle.listen`); it
listens once the worker has connected to its store and loaded its graphs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from treadle import metrics

if TYPE_CHECKING:
    from treadle.cluster.worker import Worker

__all__ = ["WorkerEndpoint", "health", "readiness"]

log = logging.getLogger("treadle.worker")

#: The heartbeat loop comes round every lease_ttl / 3 (plus the heartbeat's own time).
STALE_HEARTBEATS = 3.0


def health(worker: Worker) -> str | None:
    """Why ``worker`` is not alive, or None when it is."""
    for task in worker.loops:
        if task.done() and not task.cancelled() and task.exception() is not None:
            return f"the {task.get_name()} loop died: {task.exception()!r}"
    idle = time.monotonic() - worker.ticked_at
    if idle > STALE_HEARTBEATS * worker.ttl:
        return f"the heartbeat loop has not run for {idle:.0f}s"
    return None


def readiness(worker: Worker) -> str | None:
    """Why ``worker`` takes no work, or None when it does."""
    if worker.stopping:
        return "draining"
    if not worker.loops:
        return "starting"
    return None


def _answer(reason: str | None) -> JSONResponse:
    if reason is None:
        return JSONResponse({"ok": True})
    return JSONResponse({"ok": False, "reason": reason}, status_code=503)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the worker's own handlers stay in place


class WorkerEndpoint:
    """The endpoint of one worker; :meth:`start` it on the worker's loop."""

    def __init__(self, worker: Worker, sock: socket.socket) -> None:
        self.worker = worker
        self._socket = sock
        host, port = sock.getsockname()[:2]

        async def healthz(_request: Request) -> Response:
            return _answer(health(worker))

        async def readyz(_request: Request) -> Response:
            return _answer(readiness(worker))

        async def metrics_text(_request: Request) -> Response:
            body, content_type = metrics.render()  # no store read in a worker: no I/O
            return Response(body, media_type=content_type)

        app = Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz),
                                Route("/metrics", metrics_text)])
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", access_log=False,
                                log_level="warning", timeout_graceful_shutdown=1)
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self.port = port

    async def start(self) -> None:
        """Listen on the bound socket."""
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]),
                                         name="treadle-worker-endpoint")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"the worker endpoint could not listen on port {self.port}")
            await asyncio.sleep(0.01)
        log.info("worker %s: /healthz, /readyz and /metrics on http://%s:%d",
                 self.worker.name, self._server.config.host, self.port)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task
        self._task = None
