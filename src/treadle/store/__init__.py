"""treadle's store: one database (SQLite embedded, PostgreSQL for clusters) behind one protocol."""

from __future__ import annotations

from treadle.errors import ConfigError
from treadle.store.base import Store
from treadle.store.urls import redact

__all__ = ["Store", "open_store"]


def open_store(url: str, *, linger: float | None = None, auto_migrate: bool | None = None) -> Store:
    """Open the store at ``url`` (``sqlite:///path`` or ``postgresql://...``).

    ``auto_migrate`` None follows ``TREADLE_AUTO_MIGRATE``: apply pending migrations, or
    (off) refuse a schema missing a pre migration (:meth:`Store.check_schema`). True
    migrates; False opens the store as it is (``treadle migrate`` itself).
    """
    from treadle.config import get_settings

    settings = get_settings()
    if linger is None:
        linger = settings.write_linger_ms / 1000
    migrate = settings.auto_migrate if auto_migrate is None else auto_migrate
    scheme = url.split(":", 1)[0].lower()
    store: Store
    if scheme == "sqlite":
        from treadle.store.sqlite import SqliteStore

        store = SqliteStore(url, linger=linger, auto_migrate=migrate)
    elif scheme in ("postgresql", "postgres"):
        from treadle.store.postgres import PostgresStore

        store = PostgresStore(url, linger=linger, auto_migrate=migrate)
    else:
        raise ConfigError(
            f"unsupported store URL {redact(url)!r}: use sqlite:///path/to/file.db or postgresql://user@host/db"
        )
    if auto_migrate is None and not migrate:
        try:
            store.check_schema()
        except BaseException:
            store.close()
            raise
    return store
