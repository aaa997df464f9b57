"""The run queue's hot paths on SQLite, behind :class:`~treadle.store.drivers.sqlite.SqliteConnector`'s
methods of the same names (:mod:`treadle.store.run_records` calls them).

SQLite has one writer at a time, so the decisions PostgreSQL takes inside PL/pgSQL are
taken here in Python, under the write lock (``BEGIN IMMEDIATE``): nothing changes between
the reads and the writes. A worker's session is a lock file beside the database
(:mod:`~treadle.store.drivers.sqlite_session`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from treadle.errors import ThreadBusyError
from treadle.store.connector import Row, Tx
from treadle.store.drivers.sqlite_session import SqliteWorkerSession, dead_sessions, sessions_folder

if TYPE_CHECKING:
    from treadle.store.drivers.sqlite import SqliteConnector

__all__ = ["ended_sessions", "enqueue_run", "worker_session"]


def enqueue_run(db: SqliteConnector, doing: str, params: Mapping[str, Any]) -> Row:
    """The idempotency key's run if there is one; else the multitask decision, then the
    insert (``run_enqueue``'s row: the key's stored request hash, then the run)."""

    def enqueue(tx: Tx) -> Row:
        if params["idempotency_key"] is not None:
            found = tx.one("run_by_key", params)
            if found is not None:
                return found
        active = tx.all("sqlite_run_active", params)
        if active and params["multitask"] == "reject":
            raise ThreadBusyError(params["thread_id"], [r[0] for r in active])
        if active and params["multitask"] in ("interrupt", "rollback"):
            tx.execute("sqlite_run_stop_pending", params)
            tx.execute("sqlite_run_stop_running", params)
        row = tx.one("run_enqueue", params)
        assert row is not None  # INSERT ... RETURNING
        return row

    return db.transact(doing, enqueue)


def ended_sessions(db: SqliteConnector) -> list[int]:
    """Session keys of running claims whose process is gone: nobody holds the ``flock`` on
    their file beside the database."""
    keys = [r[0] for r in db.all("reading worker locks", "sqlite_run_session_keys")]
    return dead_sessions(sessions_folder(db.path), keys)


def worker_session(db: SqliteConnector, key: int) -> SqliteWorkerSession:
    return SqliteWorkerSession(sessions_folder(db.path), key)
