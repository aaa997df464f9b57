"""The PostgreSQL store, transitional: :class:`~treadle.store.base.Store` plus the run
queue's PostgreSQL half (:class:`~treadle.store.postgres_queue.PostgresQueue`), which still
reaches the connector's connections through the private methods below. Goes once the
queue is written over the connector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from treadle.store.base import Store
from treadle.store.drivers.postgres import PostgresConnector
from treadle.store.postgres_queue import PostgresQueue

__all__ = ["PostgresStore"]

T = TypeVar("T")


class PostgresStore(PostgresQueue, Store):
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
        Store.__init__(self, db, linger=linger, auto_migrate=auto_migrate)

    def _connect(self) -> psycopg.Connection[Any]:
        return self.db.connect()

    def _with_conn(self, doing: str, fn: Callable[[psycopg.Connection[Any]], T],
                   big: Callable[[T], bool] = lambda result: False) -> T:
        return self.db.with_conn(doing, fn, big)
