"""The run queue's hot paths on PostgreSQL, behind
:class:`~treadle.store.drivers.postgres.PostgresConnector`'s methods of the same names
(:mod:`treadle.store.run_records` calls them).

Queueing a run is one call of the PL/pgSQL function ``treadle_enqueue_run`` (migrations
0003, 0008: the thread's row lock and, with a key, an advisory lock on it). Worker
sessions are advisory locks held by a session of their own
(:mod:`~treadle.store.drivers.postgres_session`); the sweep's query finds the ended ones in
``pg_locks`` itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg

from treadle.errors import ThreadBusyError
from treadle.store.connector import Row, Tx
from treadle.store.drivers.postgres_session import PgWorkerSession

if TYPE_CHECKING:
    from treadle.store.drivers.postgres import PostgresConnector

__all__ = ["ENQUEUE_BUSY_STATE", "ended_sessions", "enqueue_run", "worker_session"]

#: The SQLSTATE treadle_enqueue_run raises when multitask ``reject`` refuses a run (the
#: thread's active run ids, JSON, in its DETAIL).
ENQUEUE_BUSY_STATE = "TRBSY"


def enqueue_run(db: PostgresConnector, doing: str, params: Mapping[str, Any]) -> Row:
    """One call of ``run_enqueue`` (autocommit: the function is one transaction); its
    SQLSTATE TRBSY becomes ThreadBusyError, nothing written."""

    def enqueue(tx: Tx) -> Row:
        try:
            row = tx.one("run_enqueue", params)
        except psycopg.Error as exc:
            if exc.sqlstate != ENQUEUE_BUSY_STATE:
                raise
            active = json.loads(exc.diag.message_detail or "[]")
            raise ThreadBusyError(params["thread_id"], [str(a) for a in active]) from None
        assert row is not None  # the function returns the run
        return row

    return db.autocommit(doing, enqueue)


def ended_sessions(db: PostgresConnector) -> list[int]:
    """None found here: the sweep's query reads ``pg_locks`` itself."""
    return []


def worker_session(db: PostgresConnector, key: int) -> PgWorkerSession:
    return PgWorkerSession(db.connect, key)
