"""Failure policies for node tasks: which errors are transient, default retries, breakers.

Retries themselves are LangGraph's: a node's own ``RetryPolicy`` wins, and treadle
installs :func:`default_retry_policy` as the graph-wide fallback, so a retried task
reruns alone from the last checkpoint while its finished siblings keep their writes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from langgraph._internal._retry import default_retry_on
from langgraph.types import RetryPolicy

from treadle.config import Settings
from treadle.errors import (
    CircuitOpenError,
    NodeTimeoutError,
    RemoteNodeError,
    TaskCrashedError,
    TreadleError,
)

__all__ = ["CircuitBreaker", "default_retry_policy", "is_transient"]

_NEVER = (NotImplementedError, RecursionError)

log = logging.getLogger("treadle.runtime")


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: crashes, timeouts, network and runtime failures.

    LangGraph's own default retries neither ``RuntimeError`` nor ``OSError``; treadle
    treats ``RuntimeError`` (what most SDKs raise for a failed call), connection
    errors, timeouts and crashed worker processes as transient, and programming
    errors (``ValueError``, ``TypeError``, ``KeyError``, ...) as permanent.
    """
    if isinstance(exc, (TaskCrashedError, NodeTimeoutError, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, RemoteNodeError):
        return exc.transient
    if isinstance(exc, (CircuitOpenError, TreadleError)):
        return False
    if isinstance(exc, RuntimeError):
        return not isinstance(exc, _NEVER)
    return isinstance(exc, Exception) and default_retry_on(exc)


def default_retry_policy(settings: Settings) -> RetryPolicy:
    """The runtime-wide retry policy for nodes that declare none."""
    return RetryPolicy(
        initial_interval=settings.retry_initial_interval,
        backoff_factor=settings.retry_backoff_factor,
        max_interval=settings.retry_max_interval,
        max_attempts=settings.retry_max_attempts,
        jitter=settings.retry_jitter,
        retry_on=is_transient,
    )


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; fails fast for ``cooldown`` s.

    After the cool-down one trial call is let through (half-open): success closes
    the breaker, failure opens it again. ``threshold`` 0 disables the breaker.
    """

    node: str
    threshold: int
    cooldown: float
    failures: int = 0
    opened_at: float | None = None
    _trial_running: bool = False
    _was_trial: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def before_call(self) -> None:
        if self.threshold <= 0:
            return
        with self._lock:
            if self.opened_at is None:
                return
            remaining = self.opened_at + self.cooldown - time.monotonic()
            if remaining > 0 or self._trial_running:
                log.warning("node %r: circuit breaker open, call rejected", self.node)
                raise CircuitOpenError(
                    f"node {self.node!r} failed {self.failures} times in a row; its circuit "
                    f"breaker is open, failing fast for another {max(remaining, 0):.1f}s "
                    "(fix the cause, or tune TREADLE_BREAKER_THRESHOLD / TREADLE_BREAKER_COOLDOWN)"
                )
            self._trial_running = True  # half-open: this call is the trial
            self._was_trial = True

    def on_success(self) -> None:
        with self._lock:
            self.failures = 0
            self.opened_at = None
            self._trial_running = False
            self._was_trial = False

    def on_neither(self) -> None:
        """The call ended without an outcome (an interrupt, a cancellation): a trial
        call, if it was one, no longer holds the half-open breaker."""
        with self._lock:
            self._trial_running = False

    def on_failure(self) -> None:
        if self.threshold <= 0:
            return
        with self._lock:
            self.failures += 1
            self._trial_running = False
            if self.failures >= self.threshold:
                if self.opened_at is None or self._was_trial:
                    log.warning(
                        "node %r failed %d times in a row: circuit breaker opened for %gs",
                        self.node, self.failures, self.cooldown,
                    )
                self.opened_at = time.monotonic()
            self._was_trial = False

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self.opened_at is not None and (
                time.monotonic() < self.opened_at + self.cooldown or self._trial_running
            )
