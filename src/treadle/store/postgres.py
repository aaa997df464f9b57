"""The PostgreSQL store, transitional: :class:`~treadle.store.base.Store` over a
:class:`~treadle.store.drivers.postgres.PostgresConnector`, migrated on opening. Goes once
``open_store`` builds every store."""

from __future__ import annotations

from treadle.store.base import Store
from treadle.store.drivers.postgres import PostgresConnector

__all__ = ["PostgresStore"]


class PostgresStore(Store):
    db: PostgresConnector

    def __init__(self, url: str | PostgresConnector, *, linger: float = 0.002,
                 auto_migrate: bool = True, connect_timeout: float | None = None) -> None:
        if isinstance(url, PostgresConnector):
            db = url
        else:
            if connect_timeout is None:
                from treadle.config import get_settings

                connect_timeout = get_settings().connect_timeout
            db = PostgresConnector(url, connect_timeout=connect_timeout)
        Store.__init__(self, db, linger=linger)
        if auto_migrate:
            try:
                self.migrate()
            except BaseException:
                self.close()
                raise
