"""PostgreSQL connection options, redaction and error classification.

Options in the store URL's query, removed before connecting:

* ``pool_min`` / ``pool_max`` — reader pool size (default 1 / 16);
* ``pool_timeout`` — seconds a read waits for a pooled connection (default 30);
* ``prepare_threshold`` — executions before a statement is prepared server side
  (default 0: at once; ``none`` disables, e.g. behind a transaction-mode pooler).

Everything else in the URL goes to libpq unchanged. The connect timeout comes from
``TREADLE_CONNECT_TIMEOUT`` unless the URL sets ``connect_timeout`` itself.
"""

from __future__ import annotations

import base64
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg_pool

from treadle.errors import ConfigError
from treadle.store.urls import redact

__all__ = [
    "b64",
    "describe",
    "is_data_error",
    "is_dead",
    "number_option",
    "one_line",
    "postgres_options",
    "redact",
]

T = TypeVar("T")

_TREADLE_OPTIONS = ("pool_min", "pool_max", "pool_timeout", "prepare_threshold")
# SQLSTATEs after which the connection is gone: connection exceptions, server shutdown.
_DISCONNECT_STATES = ("08", "57P01", "57P02", "57P03")


def postgres_options(url: str) -> tuple[str, dict[str, str]]:
    """Split treadle's own options off a PostgreSQL URL: (libpq URL, options)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"bad PostgreSQL URL {redact(url)!r}: {exc}") from exc
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {redact(url)!r} (expected postgresql://...)")
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _TREADLE_OPTIONS:
            ours[key] = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


N = TypeVar("N", int, float)


def number_option(
    options: dict[str, str], key: str, default: N, kind: type[N], minimum: N
) -> N:
    raw = options.get(key)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{key} must be {'an integer' if kind is int else 'a number'}, "
                          f"got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {value}")
    return value


def is_dead(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection it came from is gone."""
    if isinstance(exc, (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed)):
        return False
    if isinstance(exc, psycopg.InterfaceError):
        return True
    return isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate.startswith(_DISCONNECT_STATES)
    )


def is_data_error(exc: BaseException) -> bool:
    """Whether ``exc`` refuses the data itself, so sending it again can never succeed:
    class 22 (data exception: invalid text or JSON, untranslatable characters, NUL bytes,
    which psycopg refuses itself with a DataError too) and 54 (program limit exceeded:
    "string too long to represent as jsonb string", an index row too large)."""
    if isinstance(exc, psycopg.DataError):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, psycopg.Error) and state.startswith(("22", "54"))


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def describe(params: dict[str, Any]) -> str:
    """Where a connection goes, for messages: ``host:port/dbname`` (no user, no password)."""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    where = f"{host}:{port}" if not str(host).startswith("/") else f"{host} (port {port})"
    if params.get("dbname"):
        where += f"/{params['dbname']}"
    return where
