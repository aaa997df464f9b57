"""treadle's store: one database (SQLite embedded, PostgreSQL for clusters) behind one protocol."""

from __future__ import annotations

from treadle.errors import ConfigError
from treadle.store.base import Store

__all__ = ["Store", "open_store"]


def open_store(url: str, *, linger: float | None = None, auto_migrate: bool = True) -> Store:
    """Open the store at ``url`` (``sqlite:///path`` or ``postgresql://...``), migrating it."""
    from treadle.config import get_settings

    if linger is None:
        linger = get_settings().write_linger_ms / 1000
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from treadle.store.sqlite import SqliteStore

        return SqliteStore(url, linger=linger, auto_migrate=auto_migrate)
    if scheme in ("postgresql", "postgres"):
        from treadle.store.postgres import PostgresStore

        return PostgresStore(url, linger=linger, auto_migrate=auto_migrate)
    raise ConfigError(
        f"unsupported store URL {url!r}: use sqlite:///path/to/file.db or postgresql://user@host/db"
    )
