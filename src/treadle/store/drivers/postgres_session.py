"""A worker's session lock on PostgreSQL (:meth:`Store.worker_session`).

The worker takes ``pg_advisory_lock(key)`` (session level, bigint key) on one dedicated
autocommit connection and keeps it for its whole life. When the worker process dies
(``kill -9``, OOM kill, a crash) the kernel closes its socket, the server ends the
session and releases the lock at once; every claim the worker made carries the key
(``worker_lock``), so any sweeper sees the claim is orphaned and re-queues it without
waiting for its lease. A stopped-but-alive worker (SIGSTOP, a stalled VM) keeps its
session, so its claims fall back to the lease and the epoch fences it as before.

After a reconnect (a database restart) the same key is taken again, so claims made
before the restart stay the worker's if it is back within the sweepers' grace period.

A host that vanishes without closing its sockets (power loss, a partition) leaves the
session to the server's TCP keepalive settings; the lease still bounds that case.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from treadle.errors import StoreError
from treadle.store.connector import load_queries
from treadle.store.drivers.postgres_options import one_line
from treadle.store.queue import WorkerSession

__all__ = ["PgWorkerSession"]

log = logging.getLogger(__name__)


class PgWorkerSession(WorkerSession):
    """The session lock ``key`` over a connection made by ``connect`` (see module doc)."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], key: int) -> None:
        self._connect = connect
        self.key = key
        self.held_since: float | None = None
        self.reconnected = False
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def held(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            conn = self._conn
            if conn is not None:
                try:
                    conn.execute(_sql("postgres_session_ping"))  # also keeps an idle_session_timeout away
                    return True
                except psycopg.Error as exc:
                    log.warning("worker session lost (%s); taking the lock again",
                                one_line(exc))
                    self._drop()
                    self.reconnected = True
            try:
                conn = self._connect()
            except StoreError as exc:
                log.debug("worker session cannot reconnect: %s", exc)
                return False
            taken = _take(conn, self.key)
            while taken is False:
                # Our own earlier session, still alive on the server after a partition (it
                # goes at the server's TCP keepalive): its claims fall back to their leases;
                # new claims carry a new key.
                old, self.key = self.key, secrets.randbits(64) - 2**63
                log.warning("worker session key %d is still held by an earlier session; "
                            "using key %d", old, self.key)
                taken = _take(conn, self.key)
            if taken is None:
                return False
            self._conn = conn
            self.held_since = time.monotonic()
            return True

    def _drop(self) -> None:
        conn, self._conn, self.held_since = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def close(self) -> None:
        """Release the lock (closing the session releases it)."""
        with self._lock:
            self._closed = True
            self._drop()


def _take(conn: psycopg.Connection[Any], key: int) -> bool | None:
    """Try to take the session lock ``key`` on ``conn``: taken, held by another session
    (False), or the connection failed (None; it is closed)."""
    try:
        row = conn.execute(_sql("postgres_take_session_lock"), (key,)).fetchone()
    except psycopg.Error as exc:
        log.warning("taking the worker session lock failed (%s)", one_line(exc))
        conn.close()
        return None
    return bool(row and row[0])


def _sql(name: str) -> str:
    """A statement of the PostgreSQL query file (sql/postgres.sql)."""
    return load_queries("postgres")[name]
