"""Structured logs: stdlib ``logging`` rendered by structlog, as JSON lines or console text.

treadle logs through ``logging.getLogger("treadle.…")`` and so may node code. Once
:func:`configure_logging` ran (``treadle worker``, ``serve``, ``dev``), every record —
uvicorn's and the application's included — goes through one handler on the root logger
whose structlog ``ProcessorFormatter`` adds the context bound with :func:`bound`, and
renders it:

* ``json``: one object per line, ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``,
  ``event`` (the message), then what is bound: ``worker`` (the worker's name),
  ``run_id``, ``thread_id``, ``graph_id``, ``attempt`` (the run's attempt),
  ``node`` and ``node_attempt`` (inside a node task, local or remote), ``task_key``
  (a remote node task), ``trace_id``/``span_id`` (when a span is active) and
  ``exception`` (a traceback);
* ``console``: readable lines for a terminal (``treadle dev``).

Tracebacks are plain (never local variables), and every field, message and traceback
passes through :func:`treadle.redaction.redact` first: no password, key or token in a
log line.

The context lives in context variables (``structlog.contextvars``): it follows asyncio
tasks and the threads LangGraph and treadle run node bodies in.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import IO, Any

import structlog
from opentelemetry import trace
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars

from treadle.errors import ConfigError
from treadle.redaction import RedactingFormatter, redact_event

__all__ = ["CARRIED", "bind", "bound", "carried", "configure_logging", "configure_plain_logging",
           "reset"]

#: Bound keys a remote node task takes along to the worker that executes it.
CARRIED = ("run_id", "thread_id", "graph_id", "attempt", "node", "node_attempt")
_FIRST = ("timestamp", "level", "logger", "event")
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class bound:  # noqa: N801 - used like a function: ``with bound(run_id=...):``
    """Context manager: log lines emitted inside carry ``values`` (None values are skipped).
    (structlog's ``bound_contextvars`` does the same at three times the cost; this runs
    around every node attempt.)"""

    __slots__ = ("_tokens", "_values")

    def __init__(self, **values: Any) -> None:
        self._values = {k: v for k, v in values.items() if v is not None}

    def __enter__(self) -> None:
        self._tokens = bind_contextvars(**self._values)

    def __exit__(self, *_exc: object) -> None:
        reset_contextvars(**self._tokens)


def bind(**values: Any) -> Mapping[str, Any]:
    """Bind ``values`` in the current context until :func:`reset` with the tokens returned."""
    return bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def reset(tokens: Mapping[str, Any]) -> None:
    reset_contextvars(**tokens)


def carried() -> dict[str, Any]:
    """The bound keys of :data:`CARRIED`, to re-bind in another process."""
    context = get_contextvars()
    return {k: context[k] for k in CARRIED if k in context}


def _add_trace(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


def _order(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    first = {k: event.pop(k) for k in _FIRST if k in event}
    return {**first, **event}


def _resolve(format: str, auto: str) -> str:
    return auto if format == "auto" else format


def _colors(stream: IO[str]) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging installed, so a second call replaces it."""


class _PlainHandler(_Handler):
    """Python's last-resort output (the message, its traceback; warnings and errors only)
    on the current ``sys.stderr``, with secrets hidden."""

    def __init__(self) -> None:
        logging.Handler.__init__(self, logging.WARNING)  # no stream of its own: see below
        self.setFormatter(RedactingFormatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr


def configure_plain_logging() -> None:
    """For the short commands (``treadle run``, ``threads``, ...): log records of node code
    and libraries print as Python prints them without any logging set up, but with
    secrets hidden. Does nothing if the root logger already has a handler that is not
    treadle's; :func:`configure_logging` replaces it."""
    root = logging.getLogger()
    if any(not isinstance(h, _Handler) for h in root.handlers):
        return
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_PlainHandler())


class _StartupFailure(logging.Filter):
    """uvicorn logs a lifespan that failed to start (a user's ``http.app`` lifespan, say) as
    the text of its traceback: keep its last line, what went wrong, unless ``--debug``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Traceback (most recent call last)"):
            last = message.strip().splitlines()[-1]
            record.msg, record.args = (f"the application failed to start: {last} "
                                       "(--debug shows the traceback)"), ()
        return True


def configure_logging(format: str = "auto", level: str = "info", *, auto: str = "json",
                      stream: IO[str] | None = None, debug: bool = False) -> str:
    """Route every log record through structlog: ``format`` json, console, or auto
    (``auto`` decides). Returns the format used. Safe to call again (it replaces its
    handler). Without ``debug``, a failed start-up is one line, not a traceback."""
    fmt = _resolve(format.lower(), auto)
    if fmt not in ("json", "console"):
        raise ConfigError(f"log format must be json, console or auto, not {format!r}")
    out = stream if stream is not None else sys.stderr
    timestamper = (structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
                   if fmt == "json" else
                   structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False,
                                                    key="timestamp"))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        # The audit log's records (treadle.store.audit_writer) travel as extra={"audit": ...}.
        structlog.stdlib.ExtraAdder(allow=("audit",)),
        _add_trace,
        timestamper,
    ]
    renderer: list[Any]
    if fmt == "json":
        renderer = [_order, structlog.processors.JSONRenderer(default=str)]
    else:
        # Exceptions arrive formatted (below); the formatter named here is never reached,
        # but must not be structlog's default: rich's, which prints local variables.
        renderer = [structlog.dev.ConsoleRenderer(
            colors=_colors(out), exception_formatter=structlog.dev.plain_traceback)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # A plain traceback (never local variables), then every field, message and
            # traceback with its secrets hidden, in both formats.
            structlog.processors.format_exc_info,
            redact_event,
            *renderer,
        ],
    )
    handler = _Handler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings become log lines too, not stray stderr text
    # Loggers that print on their own would print twice or in another format: uvicorn's
    # (we start it without its logging config) and `treadle --debug`'s handler.
    for name in (*_UVICORN, "treadle"):
        logger = logging.getLogger(name)
        for own in list(logger.handlers):
            logger.removeHandler(own)
        logger.propagate = True
    startup = logging.getLogger("uvicorn.error")
    for old_filter in [f for f in startup.filters if isinstance(f, _StartupFailure)]:
        startup.removeFilter(old_filter)
    if not debug:
        startup.addFilter(_StartupFailure())
    # structlog's own loggers (structlog.get_logger() in node code) render the same way.
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return fmt
