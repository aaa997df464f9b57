"""The SQLite store, transitional: :class:`~treadle.store.base.Store` plus the run queue's
SQLite half (:class:`~treadle.store.sqlite_queue.SqliteQueue`), which still reaches the
connector's connections through the private methods below. Goes once the queue is written
over the connector."""

from __future__ import annotations

import sqlite3

from treadle.store.base import Store
from treadle.store.drivers.sqlite import SqliteConnector, sqlite_path
from treadle.store.sqlite_queue import SqliteQueue

__all__ = ["SqliteStore", "sqlite_path"]


class SqliteStore(SqliteQueue, Store):
    db: SqliteConnector

    def __init__(self, url: str | SqliteConnector, *, linger: float = 0.002,
                 auto_migrate: bool = True) -> None:
        db = url if isinstance(url, SqliteConnector) else SqliteConnector(url)
        self.path = db.path
        self._write_lock = db.write_lock
        Store.__init__(self, db, linger=linger, auto_migrate=auto_migrate)

    def _reader(self) -> sqlite3.Connection:
        return self.db.reader()
