"""A worker process started by ``treadle serve`` stops when serve dies.

serve starts its ``treadle worker`` children with :data:`PARENT_ENV` set to its pid. At
start-up the worker (:func:`follow_parent`) asks the kernel to send it SIGTERM when its parent
dies (Linux ``prctl(PR_SET_PDEATHSIG)``; elsewhere a thread watches ``getppid()``), so a serve
that is SIGKILLed (OOM, a supervisor's timeout) leaves no orphaned workers behind: each drains,
as on any SIGTERM, and exits. A parent already gone at start-up stops the worker at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

__all__ = ["PARENT_ENV", "follow_parent"]

#: The pid of the ``treadle serve`` process that started this worker (internal: set by serve).
PARENT_ENV = "TREADLE_PARENT_PID"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("treadle.worker")


def follow_parent(poll: float = 1.0) -> bool:
    """Arrange for SIGTERM when the parent named by :data:`PARENT_ENV` dies; False when the
    variable is unset or not a pid (the process was not started by serve)."""
    raw = os.environ.pop(PARENT_ENV, "")  # popped: not passed on to this worker's children
    if not raw.isdigit():
        return False
    parent = int(raw)
    if not _death_signal():
        threading.Thread(target=_watch, args=(parent, poll), name="treadle-parent-watch",
                         daemon=True).start()
    if os.getppid() != parent:  # it died before the kernel could be told
        _stop(parent)
    return True


def _death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, poll: float) -> None:
    stop = threading.Event()
    while not stop.wait(poll):
        if os.getppid() != parent:
            _stop(parent)
            return


def _stop(parent: int) -> None:
    log.warning("treadle serve (pid %d) that started this worker is gone: stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)
