"""The database drivers behind the :mod:`~treadle.store.connector` protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from treadle.errors import ConfigError
from treadle.store.urls import redact

if TYPE_CHECKING:
    from treadle.store.connector import Connector

__all__ = ["connect"]


def connect(url: str, *, connect_timeout: float | None = None) -> Connector:
    """The connector for ``url`` (``sqlite:///path`` or ``postgresql://...``)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from treadle.store.drivers.sqlite import SqliteConnector

        return SqliteConnector(url)
    if scheme in ("postgresql", "postgres"):
        from treadle.store.drivers.postgres import PostgresConnector

        return PostgresConnector(url, connect_timeout=connect_timeout)
    raise ConfigError(
        f"unsupported store URL {redact(url)!r}: use sqlite:///path/to/file.db or postgresql://user@host/db"
    )
