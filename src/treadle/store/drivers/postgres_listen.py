"""LISTEN/NOTIFY wake-ups for the PostgreSQL run queue (:meth:`Store.listener`).

A :class:`PgListener` holds one dedicated autocommit connection (never a pooled one:
LISTEN belongs to a session). Notifications are only wake-ups: callers poll as well,
so losing some while the connection is down only delays them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from treadle.errors import StoreError
from treadle.store.drivers.postgres_options import one_line
from treadle.store.queue import Listener

__all__ = ["PgListener"]

log = logging.getLogger(__name__)


class PgListener(Listener):
    """LISTEN on ``channels`` over a connection made by ``connect``.

    ``wait`` returns early on the first notification, with whatever else has already
    arrived. A lost connection makes ``wait`` return ``[]``; the next call reconnects
    and LISTENs again (a failed reconnect sleeps out that call's timeout, so a caller
    looping on ``wait`` does not spin while the server is down). Meant for one consumer
    thread; ``close`` may be called from any thread (a wait in progress then
    returns at its timeout).
    """

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], channels: Sequence[str]
    ) -> None:
        self._connect = connect
        self._channels = list(dict.fromkeys(channels))
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self._conn = self._listen()  # a first failure is the caller's to see

    def _listen(self) -> psycopg.Connection[Any]:
        conn = self._connect()
        try:
            for channel in self._channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def wait(self, timeout: float) -> list[tuple[str, str]]:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            if self._closed:
                return []
            conn = self._conn
            if conn is None or conn.closed:
                try:
                    conn = self._conn = self._listen()
                except (StoreError, psycopg.Error) as exc:
                    log.debug("listener cannot reconnect: %s", one_line(exc))
                    time.sleep(max(0.0, deadline - time.monotonic()))
                    return []
            got: list[tuple[str, str]] = []
            try:
                remaining = max(0.0, deadline - time.monotonic())
                for n in conn.notifies(timeout=remaining, stop_after=1):
                    got.append((n.channel, n.payload))
                if got:  # drain what has already arrived, without waiting
                    for n in conn.notifies(timeout=0):
                        got.append((n.channel, n.payload))
            except psycopg.Error as exc:
                log.warning("listener lost its connection (%s); will reconnect", one_line(exc))
                self._drop(conn)
                return []
            finally:
                if self._closed:  # close() was called during the wait
                    self._drop(conn)
            return got

    def _drop(self, conn: psycopg.Connection[Any]) -> None:
        if self._conn is conn:
            self._conn = None
        try:
            conn.close()
        except psycopg.Error:
            pass

    def close(self) -> None:
        self._closed = True
        # A wait in progress holds the lock; it closes the connection when it returns.
        if self._lock.acquire(blocking=False):
            try:
                if self._conn is not None:
                    self._drop(self._conn)
            finally:
                self._lock.release()

    def __enter__(self) -> PgListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
