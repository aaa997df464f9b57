"""Stopping the API without dropping requests: drain first, then shut down.

On the first SIGTERM (or SIGINT) the server marks itself draining at once — ``/readyz``
answers 503, so a load balancer or a Kubernetes Service stops sending it new
requests — and keeps serving for ``shutdown_delay`` seconds; then it shuts down as
uvicorn does (stop listening, let requests in flight finish, run the lifespan's
shutdown). A second signal skips what is left of the delay.

Unlike ``uvicorn.run``, the signal is not raised again once the server has stopped (that
killed ``treadle serve`` before it could stop its worker processes): the process goes on
to its own cleanup and exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn

__all__ = ["DrainingServer", "mark_draining", "run"]

log = logging.getLogger("treadle.server")


def mark_draining(app: Any) -> None:
    """Make the app's ``/readyz`` fail (its context exists once the lifespan started)."""
    ctx = getattr(app.state, "ctx", None)
    if ctx is not None:
        ctx.extra["draining"] = True


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, app: Any, delay: float) -> None:
        super().__init__(config)
        self.app = app
        self.delay = delay
        self._draining = False
        self._deferred: tuple[int, FrameType | None] | None = None
        self._exit_at = 0.0

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        mark_draining(self.app)
        if not self._draining and self.delay > 0:
            self._draining = True
            self._deferred = (sig, frame)
            self._exit_at = time.monotonic() + self.delay
            log.info("draining: /readyz fails from now on; still serving for %gs", self.delay)
            return
        self._draining = True
        self._deferred = None
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        # uvicorn's main loop calls this every 0.1 s.
        if self._deferred is not None and time.monotonic() >= self._exit_at:
            sig, frame = self._deferred
            self._deferred = None
            super().handle_exit(sig, frame)
        return await super().on_tick(counter)


def run(app: Any, *, shutdown_delay: float, sock: socket.socket | None = None,
        **options: Any) -> None:
    """``uvicorn.run(app, **options)`` with a drain of ``shutdown_delay`` s on SIGTERM;
    listening on ``sock`` when given (bound already: :func:`treadle.listen.bind`)."""
    server = DrainingServer(uvicorn.Config(app, **options), app=app, delay=shutdown_delay)
    try:
        server.run(sockets=None if sock is None else [sock])
    except KeyboardInterrupt:  # pragma: no cover - as uvicorn.run
        pass
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE
