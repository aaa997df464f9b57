"""Failure policies for node tasks: which errors are transient, default retries, breakers.

Retries themselves are LangGraph's: a node's own ``RetryPolicy`` wins, and treadle
installs :func:`default_retry_policy` as the graph-wide fallback, so a retried task
reruns alone from the last checkpoint while its finished siblings keep their writes.

Which errors the fallback retries is one table, :data:`TRANSIENCE`: the first row
that matches an error decides. docs/guarantees.md shows it (rendered by
:func:`transience_markdown`; a test checks they agree).
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from langgraph.types import RetryPolicy

from treadle.config import Settings
from treadle.errors import (
    CircuitOpenError,
    NodeTimeoutError,
    RemoteNodeError,
    SandboxLimitError,
    SandboxUnavailableError,
    StoreUnavailableError,
    TaskCrashedError,
    TreadleError,
)

__all__ = [
    "TRANSIENCE",
    "CircuitBreaker",
    "Rule",
    "classify",
    "default_retry_policy",
    "http_status",
    "is_transient",
    "transience_markdown",
]

log = logging.getLogger("treadle.runtime")

Match = Callable[[BaseException], bool]


@dataclass(frozen=True)
class Rule:
    """One row of the table: which errors (``matches``), whether the default retries
    them (``retried``: True, False, or a condition that ``decide`` evaluates), and why."""

    error: str
    retried: bool | str
    why: str
    matches: Match = field(repr=False, compare=False)
    decide: Match | None = field(default=None, repr=False, compare=False)

    def transient(self, exc: BaseException) -> bool:
        if self.decide is not None:
            return self.decide(exc)
        return self.retried is True


# --- matchers (SDKs are recognised by class name and module, never imported) ----------
#: Model-provider SDKs whose errors are recognised; most wrap httpx.
PROVIDERS = ("openai", "anthropic", "groq", "cerebras", "together", "fireworks",
             "mistralai", "cohere", "google", "voyageai")
#: Libraries whose errors carry an HTTP status (attribute names below).
_HTTP_LIBRARIES = frozenset(("httpx", "requests", "urllib", "aiohttp", *PROVIDERS))
_RETRIED_STATUS = frozenset((408, 429))
_NETWORK_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH",
        "EHOSTDOWN", "ENETUNREACH", "ENETDOWN", "ENETRESET", "EPIPE", "ENOTCONN",
    ) if hasattr(errno, name)
)


def _root(cls: type) -> str:
    return cls.__module__.partition(".")[0]


def _is(*types: type[BaseException]) -> Match:
    return lambda exc: isinstance(exc, types)


def _named(*names: str) -> Match:
    """Matches an error whose class, or a base class, is ``package.Name`` (the
    package is the top-level module, so ``openai._exceptions.X`` is ``openai.X``)."""
    wanted = frozenset(names)
    return lambda exc: any(f"{_root(c)}.{c.__name__}" in wanted for c in type(exc).__mro__)


def _from(package: str, *, but: tuple[str, ...] = ()) -> Match:
    """Matches an error whose class, or a base class, is defined in ``package`` (unless
    that class is named in ``but``)."""
    return lambda exc: any(_root(c) == package and c.__name__ not in but
                           for c in type(exc).__mro__)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an HTTP client or model-provider SDK error carries, if any:
    ``status_code`` (openai, anthropic, cohere, mistralai...), ``response.status_code``
    (httpx, requests), ``status`` (aiohttp) or ``code`` (google, urllib)."""
    if not any(_root(c) in _HTTP_LIBRARIES for c in type(exc).__mro__):
        return None
    response = getattr(exc, "response", None)
    for value in (getattr(exc, "status_code", None),
                  getattr(response, "status_code", None) if response is not None else None,
                  getattr(exc, "status", None), getattr(exc, "code", None)):
        status = _int(value)
        if status is not None and 100 <= status <= 599:
            return status
    return None


def _status_retried(exc: BaseException) -> bool:
    status = http_status(exc)
    return status is not None and (status in _RETRIED_STATUS or status >= 500)


def _status_other(exc: BaseException) -> bool:
    return http_status(exc) is not None


def _caused_by_bad_certificate(exc: BaseException) -> bool:
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 8:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def _network_errno(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


def _reason(exc: BaseException) -> bool:
    reason = getattr(exc, "reason", None)
    return isinstance(reason, BaseException) and is_transient(reason)


_PG_DRIVERS = ("psycopg", "psycopg2")
_PG_RETRIED_STATES = ("08", "57P", "53", "40001", "40P01")


def _pg_driver(exc: BaseException) -> bool:
    return any(_root(c) in _PG_DRIVERS for c in type(exc).__mro__)


def _pg_retried(exc: BaseException) -> bool:
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if state is None:  # no server answered: the connection failed or was lost
        return any(c.__name__ == "OperationalError" for c in type(exc).__mro__)
    return str(state).startswith(_PG_RETRIED_STATES)


def _group_members(exc: BaseException) -> bool:
    members = getattr(exc, "exceptions", ())
    return bool(members) and all(is_transient(m) for m in members)


_OVERLOAD_NAMES = tuple(
    f"{p}.{n}" for p in PROVIDERS for n in (
        "RateLimitError", "InternalServerError", "OverloadedError", "ServiceUnavailableError",
        "DeadlineExceededError",
    )
)
_overloaded = _named(*_OVERLOAD_NAMES)
_NETWORK_NAMES = (
    "httpx.TimeoutException", "httpx.NetworkError", "httpx.RemoteProtocolError",
    "requests.ConnectionError", "requests.Timeout", "requests.ChunkedEncodingError",
    "urllib3.TimeoutError", "urllib3.NewConnectionError", "urllib3.ProtocolError",
    "aiohttp.ClientConnectionError", "aiohttp.ClientPayloadError",
    *(f"{p}.{n}" for p in PROVIDERS for n in ("APIConnectionError", "APITimeoutError")),
    "google.TransportError",
)

#: The default policy's table, first match wins.
TRANSIENCE: tuple[Rule, ...] = (
    Rule("treadle `NodeTimeoutError`, `TaskCrashedError`", True,
         "the attempt ran past its timeout or its process died; the next one starts afresh",
         _is(NodeTimeoutError, TaskCrashedError)),
    Rule("treadle `SandboxLimitError`, `SandboxUnavailableError`", False,
         "a sandboxed attempt hit its memory, CPU or wall-time limit (the same body would "
         "hit it again), or the kernel refused an isolation the sandbox requires",
         _is(SandboxLimitError, SandboxUnavailableError)),
    Rule("treadle `RemoteNodeError`", "as the original error", "another worker ran the "
         "node and classified its error with this table", _is(RemoteNodeError),
         lambda exc: bool(getattr(exc, "transient", False))),
    Rule("treadle `StoreUnavailableError`", True, "the database could not be reached",
         _is(StoreUnavailableError)),
    Rule("other treadle errors (`CircuitOpenError`, `ConfigError`, `FencedWriteError`, ...)",
         False, "an open breaker fails fast on purpose; the others are configuration or a "
         "stale claim, which a rerun repeats", _is(TreadleError)),
    Rule("LangGraph `NodeTimeoutError` (a `TimeoutPolicy` ran out)", True,
         "a timed-out attempt", _named("langgraph.NodeTimeoutError")),
    Rule("LangGraph's own errors (`InvalidUpdateError`: a node returned a non-dict, "
         "`GraphRecursionError`, `EmptyInputError`, ...)", False,
         "the graph or the node's return value is wrong; a rerun does the same",
         _from("langgraph", but=("NodeTimeoutError",))),
    Rule("`MemoryError`", False, "the process is out of memory; more attempts make it worse",
         _is(MemoryError)),
    Rule("`RecursionError`, `NotImplementedError`", False,
         "programming errors, although they are `RuntimeError`s",
         _is(RecursionError, NotImplementedError)),
    Rule("HTTP 408, 429 or 5xx from httpx, requests, urllib, aiohttp or a model-provider SDK "
         "(`openai.RateLimitError`, `openai.InternalServerError`, `anthropic.OverloadedError`, "
         "cohere, mistralai, google, ...)", True,
         "timeout, rate limit or overload: the server may answer next time",
         lambda exc: _status_retried(exc) or _overloaded(exc)),
    Rule("any other HTTP status (400, 401, 403, 404, 422, ...)", False,
         "the request is wrong or not allowed; the same request fails the same way",
         _status_other),
    Rule("a TLS certificate verification failure (`ssl.SSLCertVerificationError`, or an "
         "error caused by one)", False, "a configuration problem", _caused_by_bad_certificate),
    Rule("connection and timeout errors of httpx (`TimeoutException`, `NetworkError`, "
         "`RemoteProtocolError`), requests (`ConnectionError`, `Timeout`, "
         "`ChunkedEncodingError`), urllib3 (`TimeoutError`, `NewConnectionError`, "
         "`ProtocolError`), aiohttp, and the model-provider SDKs "
         "(`APIConnectionError`, `APITimeoutError`)", True,
         "the network or the server failed the call", _named(*_NETWORK_NAMES)),
    Rule("`ConnectionError` (and its subclasses), `TimeoutError` (so `socket.timeout`, "
         "`asyncio.TimeoutError`), `socket.gaierror`", True, "the network or a peer failed",
         _is(ConnectionError, TimeoutError, socket.gaierror)),
    Rule("`OSError` with a network errno (`EHOSTUNREACH`, `ENETUNREACH`, `ENETDOWN`, "
         "`ENETRESET`, `ENOTCONN`, ...)", True, "the network failed",
         _network_errno),
    Rule("`urllib.error.URLError`, urllib3's `MaxRetryError`", "if its `reason` is",
         "they wrap the network error", _named("urllib.URLError", "urllib3.MaxRetryError"),
         _reason),
    Rule("PostgreSQL driver errors (psycopg, psycopg2): a failed or lost connection "
         "(`OperationalError` with no SQLSTATE), SQLSTATE class 08 (connection), 57P (server "
         "shutting down), 53 (insufficient resources), 40001 / 40P01 (serialization failure, "
         "deadlock)", "if its SQLSTATE is one of these",
         "the database went away or asked for a retry; other SQLSTATEs (a constraint "
         "violation, bad SQL, bad data) fail the same way again", _pg_driver, _pg_retried),
    Rule("any other `OSError` (`FileNotFoundError`, `PermissionError`, ...)", False,
         "a local file or permission problem is still there next time", _is(OSError)),
    Rule("any other `RuntimeError`", True, "what many SDKs raise for a failed remote call",
         _is(RuntimeError)),
    Rule("`ExceptionGroup`", "if all its members are", "a task group of transient "
         "failures is transient", _is(BaseExceptionGroup), _group_members),
    Rule("anything else: `AssertionError`, `ValueError`, `TypeError`, `KeyError`, "
         "`AttributeError`, your own exception classes, ...", False,
         "a programming or data error: a rerun repeats it, and its side effects",
         lambda exc: True),
)


def classify(exc: BaseException) -> Rule:
    """The row of :data:`TRANSIENCE` that decides ``exc``."""
    return next(rule for rule in TRANSIENCE if rule.matches(exc))


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying by default: they are transient by nature
    (network, timeouts, rate limits, crashed attempts, ``RuntimeError``).

    Programming errors (``ValueError``, ``AssertionError``, a node returning a
    non-dict, your own exceptions, ``MemoryError``, ...) are not: retrying would
    repeat them and their side effects. See :data:`TRANSIENCE`.
    """
    return classify(exc).transient(exc)


def transience_markdown() -> str:
    """:data:`TRANSIENCE` as the Markdown table docs/guarantees.md shows."""
    lines = ["| error | retried by default? | why |", "|---|---|---|"]
    for rule in TRANSIENCE:
        retried = rule.retried if isinstance(rule.retried, str) else "yes" if rule.retried else "no"
        lines.append(f"| {rule.error} | {retried} | {rule.why} |")
    return "\n".join(lines) + "\n"


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
