"""The PostgreSQL driver: for several processes or machines sharing one store.

Reads and short writes use a ``psycopg_pool.ConnectionPool`` of autocommit connections;
a statement whose connection the server dropped (restart, failover) is retried once on a
fresh one. A connection that carried a big payload, or whose data the server refused, is
closed rather than pooled (:mod:`~treadle.store.drivers.postgres_buffers`). URL options and
error classification are in :mod:`~treadle.store.drivers.postgres_options`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Int8

from treadle.errors import ConfigError, StoreDataError, StoreError, StoreUnavailableError
from treadle.store.connector import CheckpointRows, Dialect, Params, Row, load_queries, query_text
from treadle.store.drivers import postgres_queue
from treadle.store.drivers.postgres_batch import op_json, op_result
from treadle.store.drivers.postgres_buffers import RETIRE_AFTER, is_big, retire_pooled
from treadle.store.drivers.postgres_listen import PgListener
from treadle.store.drivers.postgres_options import (
    describe,
    is_data_error,
    is_dead,
    number_option,
    one_line,
    postgres_options,
)
from treadle.store.drivers.postgres_session import PgWorkerSession
from treadle.store.urls import redact, scrub

__all__ = ["PostgresConnector", "PgTx"]

T = TypeVar("T")

#: libpq's connect timeout when neither the URL nor the caller sets one (whole seconds).
DEFAULT_CONNECT_TIMEOUT = 10.0


def _value(v: Any) -> Any:
    """A parameter as psycopg takes it (binary): ints as int8 (psycopg would pick the
    smallest type that fits, and a plan's types would change with the values), dicts as
    jsonb, lists as arrays."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return Int8(v)
    if isinstance(v, dict):
        return Jsonb(v)
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    return v


def _dumps(doc: Any) -> str:
    """JSON text of a batch, with orjson (a third of json.dumps's CPU per step); json.dumps
    for what orjson refuses (a lone surrogate, an integer beyond 64 bits), which then fails
    or passes exactly as it did."""
    try:
        return orjson.dumps(doc).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(doc)


def adapt(params: Params) -> Params:
    if isinstance(params, Mapping):
        return {k: _value(v) for k, v in params.items()}
    return [_value(v) for v in params]


class PgTx:
    """Statements on one connection (inside a transaction, or autocommit)."""

    __slots__ = ("conn", "prepare", "queries", "size")

    def __init__(self, conn: psycopg.Connection[Any], queries: Mapping[str, str],
                 prepare: bool | None = None) -> None:
        self.conn = conn
        self.queries = queries
        self.prepare = prepare  # None: the connection's prepare_threshold decides
        self.size = False  # whether a big payload went through (retire the connection)

    def _run(self, query: str, params: Params) -> psycopg.Cursor[Any]:
        if is_big(params):
            self.size = True
        return self.conn.execute(query_text(self.queries, query), adapt(params), binary=True,
                                 prepare=self.prepare)

    def one(self, query: str, params: Params = ()) -> Row | None:
        row = self._run(query, params).fetchone()
        if row is not None and is_big(row):
            self.size = True
        return row

    def all(self, query: str, params: Params = ()) -> list[Row]:
        rows = self._run(query, params).fetchall()
        if is_big(rows):
            self.size = True
        return rows

    def execute(self, query: str, params: Params = ()) -> int:
        return self._run(query, params).rowcount

    def many(self, query: str, rows: Sequence[Params]) -> None:
        if is_big(list(rows)):
            self.size = True
        with self.conn.cursor(binary=True) as cur:
            cur.executemany(query_text(self.queries, query), [adapt(r) for r in rows])

    def script(self, sql: str) -> None:
        # No parameters: sent as a simple query, so a script may hold many statements.
        self.conn.execute(sql.encode(), prepare=False)  # type: ignore[call-overload]


class PostgresConnector:
    """A pool of connections to one PostgreSQL database, and the PostgreSQL dialect's
    named queries."""

    dialect: Dialect = "postgres"

    def __init__(self, url: str, *, connect_timeout: float | None = None) -> None:
        self.url = url
        self.conninfo, self.options = postgres_options(url)
        try:
            params = conninfo_to_dict(self.conninfo)
        except psycopg.Error as exc:
            raise ConfigError(f"bad PostgreSQL URL {redact(url)!r}: "
                              f"{scrub(one_line(exc), self.conninfo)}") from exc
        self.queries = load_queries("postgres")
        self.where = describe(params)
        self._pool_min = number_option(self.options, "pool_min", 1, int, 0)
        self._pool_max = number_option(self.options, "pool_max", 16, int, 1)
        if self._pool_max < self._pool_min:
            raise ConfigError(f"pool_max ({self._pool_max}) is below pool_min ({self._pool_min})")
        self.pool_timeout = number_option(self.options, "pool_timeout", 30.0, float, 0.001)
        raw_prepare = self.options.get("prepare_threshold", "0")
        prepare: int | None = (
            None
            if raw_prepare.lower() in ("none", "off", "")
            else number_option(self.options, "prepare_threshold", 0, int, 0)
        )
        self.kwargs: dict[str, Any] = {"prepare_threshold": prepare}
        if "connect_timeout" not in params:
            # libpq takes whole seconds (and treats anything under 2 as 2).
            timeout = DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
            self.kwargs["connect_timeout"] = max(1, math.ceil(timeout))
        if "application_name" not in params:
            self.kwargs["application_name"] = "treadle"
        self.pool: psycopg_pool.ConnectionPool[Any] | None = None
        self.closed = False
        self.writer_name = f"treadle-pg-writer:{self.where}"
        self._writer: psycopg.Connection[Any] | None = None
        self._writer_sent = 0  # the size of the last batch the writer sent

    def open(self) -> None:
        """Connect the writer first (which checks, fast and clearly, that the server is
        there), then open the reader pool."""
        if self.pool is not None:
            return
        self._writer = self.connect()
        self.pool = psycopg_pool.ConnectionPool(
            self.conninfo,
            min_size=self._pool_min,
            max_size=self._pool_max,
            timeout=self.pool_timeout,
            kwargs={**self.kwargs, "autocommit": True},
            name=f"treadle-pg-readers:{self.where}",
            open=False,
        )
        self.pool.open(wait=False)

    # --- connections ---------------------------------------------------------------
    def connect(self) -> psycopg.Connection[Any]:
        """A new, unpooled autocommit connection, or StoreUnavailableError naming the server."""
        try:
            return psycopg.connect(self.conninfo, autocommit=True, **self.kwargs)
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {self.where}: {one_line(exc)}"
            ) from exc

    def close(self) -> None:
        self.closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.pool is not None:
            self.pool.close()

    # --- errors --------------------------------------------------------------------
    def error(self, doing: str, exc: psycopg.Error) -> StoreError:
        """The treadle error for a driver error met while ``doing``."""
        if isinstance(exc, psycopg_pool.PoolTimeout):
            return StoreUnavailableError(
                f"no PostgreSQL connection to {self.where} within {self.pool_timeout:g}s "
                f"while {doing}: {one_line(exc)}"
            )
        if isinstance(exc, psycopg_pool.PoolClosed):
            return StoreError("the store is closed")
        if is_dead(exc):
            return StoreUnavailableError(
                f"lost PostgreSQL at {self.where} while {doing}: {one_line(exc)}"
            )
        if is_data_error(exc):
            return StoreDataError(
                f"{doing} failed on PostgreSQL at {self.where}: it cannot store this data "
                f"(not retried): {one_line(exc).split(' CONTEXT:')[0]}"
            )
        return StoreError(f"{doing} failed on PostgreSQL at {self.where}: {one_line(exc)}")

    def with_conn(self, doing: str, fn: Callable[[psycopg.Connection[Any]], T],
                  big: Callable[[T], bool] = lambda result: False) -> T:
        """Run ``fn`` on a pooled connection; retry once if the connection was dead. The
        connection is closed after a refusal of its data or a ``big`` result."""
        if self.closed or self.pool is None:
            raise StoreError("the store is closed")
        for attempt in (1, 2):
            try:
                with self.pool.connection() as conn:
                    try:
                        result = fn(conn)
                    except psycopg.Error as exc:
                        if is_data_error(exc):
                            retire_pooled(conn)
                        raise
                    if big(result):
                        retire_pooled(conn)
                    return result
            except psycopg.Error as exc:
                if attempt == 1 and is_dead(exc):
                    # The server dropped us (restart, failover): the pool has discarded
                    # this connection; weed out its idle siblings too, then retry.
                    try:
                        self.pool.check()
                    except psycopg.Error:
                        pass
                    continue
                raise self.error(doing, exc) from exc
            except UnicodeEncodeError as exc:  # text PostgreSQL cannot hold (lone surrogates)
                raise StoreDataError(
                    f"{doing} failed on PostgreSQL at {self.where}: it cannot store this data "
                    f"(not retried): {exc}"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the connector protocol ------------------------------------------------------
    def sql(self, name: str) -> str:
        return query_text(self.queries, name)

    def autocommit(self, doing: str, fn: Callable[[PgTx], T]) -> T:
        """Run ``fn``'s statements on a pooled connection outside a transaction (each
        commits on its own)."""

        def run(conn: psycopg.Connection[Any]) -> tuple[T, bool]:
            tx = PgTx(conn, self.queries)
            return fn(tx), tx.size

        return self.with_conn(doing, run, lambda r: r[1])[0]

    def one(self, doing: str, query: str, params: Params = ()) -> Row | None:
        return self.autocommit(doing, lambda tx: tx.one(query, params))

    def all(self, doing: str, query: str, params: Params = ()) -> list[Row]:
        return self.autocommit(doing, lambda tx: tx.all(query, params))

    def execute(self, doing: str, query: str, params: Params = ()) -> int:
        return self.autocommit(doing, lambda tx: tx.execute(query, params))

    def write(self, doing: str, query: str, params: Params = ()) -> list[Row]:
        return self.autocommit(doing, lambda tx: tx.all(query, params))

    def transact(self, doing: str, fn: Callable[[PgTx], T]) -> T:
        """Run ``fn`` in one transaction; its result once committed."""

        def run(conn: psycopg.Connection[Any]) -> tuple[T, bool]:
            tx = PgTx(conn, self.queries)
            with conn.transaction():
                result = fn(tx)
            return result, tx.size

        return self.with_conn(doing, run, lambda r: r[1])[0]

    def now(self) -> float:
        row = self.one("reading the clock", "clock")
        assert row is not None
        return float(row[0])

    def listener(self, channels: Sequence[str]) -> PgListener:
        return PgListener(self.connect, channels)

    def read_checkpoints(self, doing: str, query: str, params: Params) -> list[CheckpointRows]:
        # Each row: the checkpoint's 11 columns, its blobs' and its writes' as arrays.
        return [
            (row[:11],
             list(zip(*row[11:15], strict=True)) if row[11] else [],
             list(zip(*row[15:21], strict=True)) if row[15] else [])
            for row in self.all(doing, query, params)
        ]

    def migrating(self, doing: str, fn: Callable[[PgTx], T]) -> T:
        conn = self.connect()
        try:
            with conn.transaction():
                tx = PgTx(conn, self.queries, prepare=False)
                tx.execute("postgres_migration_lock")
                return fn(tx)
        except psycopg.Error as exc:
            raise self.error(doing, exc) from exc
        finally:
            conn.close()

    # --- the group committer's -----------------------------------------------------------
    def writer(self) -> psycopg.Connection[Any]:
        # The connection opened by open() first, then fresh ones after a disconnect.
        conn = self._writer
        if conn is None or conn.closed:
            conn = self._writer = self.connect()
        return conn

    def apply_batch(self, conn: psycopg.Connection[Any], ops: list[Any]) -> list[Any]:
        """Apply ``ops`` with one call of ``treadle_apply``: one statement, so one
        transaction (autocommit) and one round trip, whatever the batch holds. Operations
        travel as JSON with bytes base64-encoded, both encoded in C — psycopg's
        Python-level array adaptation cost more CPU per step than the commit itself."""
        payload = _dumps([op_json(op) for op in ops])  # before any I/O: may raise
        self._writer_sent = len(payload)
        try:
            row = conn.execute(self.queries["postgres_apply_batch"], (payload,)).fetchone()
        except psycopg.Error as exc:
            raise self.error("writing", exc) from exc
        assert row is not None
        return [op_result(op, r) for op, r in zip(ops, row[0], strict=True)]

    def close_writer(self, conn: psycopg.Connection[Any]) -> None:
        if conn is self._writer:
            self._writer = None
        conn.close()

    def is_disconnect(self, exc: BaseException) -> bool:
        cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
        if not isinstance(cause, (psycopg.OperationalError, psycopg.InterfaceError)):
            return False
        conn = self._writer
        return conn is None or conn.closed or conn.broken or is_dead(cause)

    def retire(self, conn: psycopg.Connection[Any]) -> bool:
        """Close the writer after a batch of RETIRE_AFTER bytes or more."""
        sent, self._writer_sent = self._writer_sent, 0
        return sent >= RETIRE_AFTER

    # --- the run queue's hot paths (drivers/postgres_queue.py) ------------------------
    def enqueue_run(self, doing: str, params: Mapping[str, Any]) -> Row:
        return postgres_queue.enqueue_run(self, doing, params)

    def ended_sessions(self) -> list[int]:
        return postgres_queue.ended_sessions(self)

    def worker_session(self, key: int) -> PgWorkerSession:
        return postgres_queue.worker_session(self, key)
