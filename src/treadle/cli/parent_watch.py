"""A worker process started by ``treadle serve`` stops when serve dies.

serve starts its ``treadle worker`` children with :data:`PARENT_ENV` set to its pid. At
start-up the worker (:func:`follow_parent`) asks the kernel to signal it when its parent dies
(Linux ``prctl(PR_SET_PDEATHSIG)``; elsewhere a thread checks ``getppid()`` every second), so a
serve that is SIGKILLed (OOM, a supervisor's timeout) leaves no orphaned workers behind: each
logs that serve died and sends itself SIGTERM, so it drains as on any SIGTERM, and exits. A
parent already gone at start-up stops the worker at once.

The kernel's signal is :data:`DEATH_SIGNAL` (SIGUSR2), not SIGTERM itself: SIGTERM carries no
sender, and the worker's handler for it belongs to the worker's event loop, so this module's
own handler is what lets the log say *why* the worker drains. A serve killed while its workers
already drain (it sent them SIGTERM first, then was killed while waiting for them) sends no
second SIGTERM (which would stop the worker at once): the drain goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["DEATH_SIGNAL", "PARENT_ENV", "follow_parent"]

#: The pid of the ``treadle serve`` process that started this worker (internal: set by serve,
#: read and removed by the worker; never set it by hand).
PARENT_ENV = "TREADLE_PARENT_PID"
#: What the kernel sends a worker whose serve died (Linux); its handler turns it into SIGTERM.
DEATH_SIGNAL = signal.SIGUSR2 if hasattr(signal, "SIGUSR2") else signal.SIGTERM
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("treadle.worker")


def follow_parent(poll: float = 1.0, draining: Callable[[], bool] = lambda: False) -> bool:
    """Arrange for a drain (SIGTERM) when the parent named by :data:`PARENT_ENV` dies, unless
    ``draining()`` says the process drains already; False when the variable is unset or not a
    pid (the process was not started by serve). Call it from the main thread (it installs a
    signal handler)."""
    raw = os.environ.pop(PARENT_ENV, "")  # popped: not passed on to this worker's children
    if not raw.isdigit():
        return False
    parent = int(raw)

    def stop(what: str) -> None:
        if draining():
            log.warning("treadle serve (pid %d) that started this worker %s: the drain goes on",
                        parent, what)
            return
        log.warning("treadle serve (pid %d) that started this worker %s: draining", parent, what)
        os.kill(os.getpid(), signal.SIGTERM)

    if not _death_signal(parent, stop):
        threading.Thread(target=_watch, args=(parent, poll, stop), name="treadle-parent-watch",
                         daemon=True).start()
    if os.getppid() != parent:  # it died before the kernel could be told
        stop("was gone when this worker started")
    return True


def _death_signal(parent: int, stop: Callable[[str], None]) -> bool:
    """Ask the kernel for DEATH_SIGNAL when the parent dies (Linux only)."""
    if not sys.platform.startswith("linux") or DEATH_SIGNAL == signal.SIGTERM:
        return False
    import ctypes

    def on_death(_sig: int, _frame: FrameType | None) -> None:
        if os.getppid() != parent:  # not a stray SIGUSR2 from someone else
            stop("died")

    previous = signal.signal(DEATH_SIGNAL, on_death)  # before the kernel may send it
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if int(libc.prctl(_PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0)) == 0:
            return True
    except (OSError, AttributeError):
        pass
    signal.signal(DEATH_SIGNAL, previous)
    return False


def _watch(parent: int, poll: float, stop: Callable[[str], None]) -> None:
    wait = threading.Event()
    while not wait.wait(poll):
        if os.getppid() != parent:
            stop("died")
            return
