"""The SQLite store, transitional: :class:`~treadle.store.base.Store` over a
:class:`~treadle.store.drivers.sqlite.SqliteConnector`, migrated on opening. Goes once
``open_store`` builds every store."""

from __future__ import annotations

from treadle.store.base import Store
from treadle.store.drivers.sqlite import SqliteConnector, sqlite_path

__all__ = ["SqliteStore", "sqlite_path"]


class SqliteStore(Store):
    db: SqliteConnector

    def __init__(self, url: str | SqliteConnector, *, linger: float = 0.002,
                 auto_migrate: bool = True) -> None:
        db = url if isinstance(url, SqliteConnector) else SqliteConnector(url)
        Store.__init__(self, db, linger=linger)
        self.path = db.path
        if auto_migrate:
            try:
                self.migrate()
            except BaseException:
                self.close()
                raise
