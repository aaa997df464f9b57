"""The SQLite driver: the embedded default, one file, nothing to start.

WAL mode lets readers run beside the single writer; ``synchronous=FULL`` (the default,
override with ``?synchronous=NORMAL`` in the URL) makes every commit survive power loss, not
just a process crash. Several processes may share one file: writes take SQLite's write lock
(``BEGIN IMMEDIATE``) and wait up to ``busy_timeout`` for it; writers of this process queue
on one lock first, instead of on SQLite's busy handler, which sleeps while the file is locked.

Each thread reads on its own autocommit connection. SQLite has no notifications:
:meth:`SqliteConnector.listener` detects commits of other connections instead.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from treadle.errors import ConfigError, StoreDataError, StoreError, StoreUnavailableError
from treadle.store.connector import CheckpointRows, Dialect, Params, Row, load_queries, query_text
from treadle.store.drivers import sqlite_queue
from treadle.store.drivers.sqlite_batch import apply_ops
from treadle.store.drivers.sqlite_listen import SqliteChangeListener
from treadle.store.drivers.sqlite_session import SqliteWorkerSession
from treadle.store.urls import redact

__all__ = ["SqliteConnector", "SqliteTx", "is_data_error", "sqlite_path"]

T = TypeVar("T")

_SYNC_MODES = {"OFF", "NORMAL", "FULL", "EXTRA"}
# SQLite messages meaning the database cannot be reached or locked right now.
_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly")
# The one positional row group ending an INSERT (see SqliteTx.many), and rows per statement
# (far below SQLite's 32,766 bound variables).
_VALUES = re.compile(r"\bVALUES\s*(\(\s*\?(?:\s*,\s*\?)*\s*\))\s*$", re.IGNORECASE)
_CHUNK = 500


def sqlite_path(url: str) -> tuple[Path, dict[str, str]]:
    """``sqlite:///rel/path.db`` or ``sqlite:////abs/path.db`` -> (path, options)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigError(f"not a SQLite URL: {redact(url)!r} (expected sqlite:///path/to/file.db)")
    raw = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc:
        raw = parts.netloc + "/" + raw
    if not raw or raw == ":memory:":
        raise ConfigError(
            f"{url!r} names no file; treadle needs a file so state outlives the process "
            "(use sqlite:///path/to/file.db)"
        )
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return Path(raw), options


def is_data_error(exc: BaseException) -> bool:
    """Whether ``exc`` refuses the data itself, so writing it again can never succeed:
    "string or blob too big" (SQLITE_LIMIT_LENGTH) and the other DataErrors, text Python
    cannot encode (lone surrogates), an int beyond 64 bits."""
    if isinstance(exc, (sqlite3.DataError, UnicodeEncodeError, OverflowError)):
        return True
    return isinstance(exc, sqlite3.Error) and "too big" in str(exc)


def _value(v: Any) -> Any:
    """A parameter as SQLite takes it: lists and dicts as JSON text, booleans as 0/1."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return v


def adapt(params: Params) -> Params:
    if isinstance(params, Mapping):
        return {k: _value(v) for k, v in params.items()}
    return [_value(v) for v in params]


class SqliteTx:
    """Statements on one connection, inside the transaction its connector opened."""

    __slots__ = ("conn", "queries")

    def __init__(self, conn: sqlite3.Connection, queries: Mapping[str, str]) -> None:
        self.conn = conn
        self.queries = queries

    def one(self, query: str, params: Params = ()) -> Row | None:
        row = self.conn.execute(query_text(self.queries, query), adapt(params)).fetchone()
        return tuple(row) if row is not None else None

    def all(self, query: str, params: Params = ()) -> list[Row]:
        return self.conn.execute(query_text(self.queries, query), adapt(params)).fetchall()

    def execute(self, query: str, params: Params = ()) -> int:
        return self.conn.execute(query_text(self.queries, query), adapt(params)).rowcount

    def many(self, query: str, rows: Sequence[Params]) -> None:
        """An ``INSERT ... VALUES (?, ...)`` runs as multi-row statements of up to
        ``_CHUNK`` rows: sqlite3 releases and re-takes the GIL around every row of an
        executemany, and under a busy event loop each re-take can wait a whole switch
        interval (measured: 400 rows, 407 ms vs 25 ms). Anything else: executemany."""
        sql = query_text(self.queries, query)
        group = _VALUES.search(sql)
        if group is None or len(rows) < 2:
            self.conn.executemany(sql, [adapt(r) for r in rows])
            return
        head = sql[: group.start(1)]
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            self.conn.execute(head + ", ".join([group.group(1)] * len(chunk)),
                              [v for r in chunk for v in adapt(r)])

    def script(self, sql: str) -> None:
        for statement in _statements(sql):
            self.conn.execute(statement)


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements: at semicolons, joining pieces until SQLite
    says the statement is complete (a trigger's body holds semicolons of its own)."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    found: list[str] = []
    current = ""
    for piece in body.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\n;"):
                found.append(current.strip().rstrip(";").strip())
            current = ""
    if current.strip(" \t\n;"):
        found.append(current.strip().rstrip(";").strip())
    return found


class SqliteConnector:
    """Connections to one SQLite file, and the named queries of the SQLite dialect."""

    dialect: Dialect = "sqlite"

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, self.options = sqlite_path(url)
        self.queries = load_queries("sqlite")
        self._synchronous = self.options.get("synchronous", "FULL").upper()
        if self._synchronous not in _SYNC_MODES:
            raise ConfigError(f"synchronous must be one of {sorted(_SYNC_MODES)}")
        self._busy_ms = int(float(self.options.get("busy_timeout", "30")) * 1000)
        # The largest string or blob SQLite accepts (SQLITE_LIMIT_LENGTH; SQLite's own
        # default, 1e9 bytes, when unset): a bigger state fails its run at once.
        try:
            self._max_length = int(self.options.get("max_length", "0"))
        except ValueError as exc:
            raise ConfigError(
                f"max_length must be a number of bytes, not {self.options['max_length']!r}"
            ) from exc
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create {self.path.parent}: {exc}") from exc
        self._local = threading.local()
        self.write_lock = threading.RLock()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.closed = False
        self.writer_name = f"treadle-sqlite-writer:{self.path.name}"

    # --- connections ---------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A new autocommit connection (the group committer's, a migration's)."""
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False,
                timeout=self._busy_ms / 1000,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            if self._max_length > 0:
                conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self._max_length)
            _load_sqlite_vec(conn)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open SQLite store {self.path}: {exc}") from exc
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's autocommit connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self.closed:
                raise StoreError("the store is closed")
            conn = self.connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        self.closed = True
        with self._readers_lock:
            for conn in self._readers:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._readers.clear()

    # --- errors --------------------------------------------------------------------
    def error(self, doing: str, exc: BaseException) -> StoreError:
        """The treadle error for a driver error met while ``doing``."""
        if is_data_error(exc):
            return StoreDataError(
                f"{doing} failed on SQLite store {self.path}: it cannot store this data "
                f"(not retried): {' '.join(str(exc).split())}"
            )
        message = f"{doing} failed on SQLite store {self.path}: {' '.join(str(exc).split())}"
        if isinstance(exc, sqlite3.OperationalError) and any(
            word in str(exc).lower() for word in _UNAVAILABLE
        ):
            return StoreUnavailableError(message)
        return StoreError(message)

    # --- the connector protocol ------------------------------------------------------
    def sql(self, name: str) -> str:
        return query_text(self.queries, name)

    def _read(self, doing: str, fn: Callable[[SqliteTx], T]) -> T:
        try:
            return fn(SqliteTx(self.reader(), self.queries))
        except sqlite3.Error as exc:
            raise self.error(doing, exc) from exc
        except (UnicodeEncodeError, OverflowError) as exc:
            raise self.error(doing, exc) from exc

    def one(self, doing: str, query: str, params: Params = ()) -> Row | None:
        return self._read(doing, lambda tx: tx.one(query, params))

    def all(self, doing: str, query: str, params: Params = ()) -> list[Row]:
        return self._read(doing, lambda tx: tx.all(query, params))

    def execute(self, doing: str, query: str, params: Params = ()) -> int:
        return self.transact(doing, lambda tx: tx.execute(query, params))

    def write(self, doing: str, query: str, params: Params = ()) -> list[Row]:
        return self.transact(doing, lambda tx: tx.all(query, params))

    @contextmanager
    def begin(self, doing: str, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` on ``conn`` (default: this thread's), under the
        process's write lock; rolled back, and driver errors translated, if the block raises."""
        with self.write_lock:
            conn = conn or self.reader()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailableError(
                    f"{doing}: cannot lock SQLite store {self.path}: {exc}"
                ) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error) or is_data_error(exc):
                    raise self.error(doing, exc) from exc
                raise

    def transact(self, doing: str, fn: Callable[[SqliteTx], T]) -> T:
        """Run ``fn`` in one write transaction; its result once committed."""
        with self.begin(doing) as conn:
            return fn(SqliteTx(conn, self.queries))

    def now(self) -> float:
        row = self.one("reading the clock", "clock")
        assert row is not None
        return float(row[0])

    def listener(self, channels: Sequence[str]) -> SqliteChangeListener:
        """SQLite has no notifications: a detector of commits by other connections
        (:mod:`~treadle.store.drivers.sqlite_listen`), whatever ``channels``."""
        return SqliteChangeListener(self.connect)

    def read_checkpoints(self, doing: str, query: str, params: Params) -> list[CheckpointRows]:
        def read(tx: SqliteTx) -> list[CheckpointRows]:
            return [
                (row,
                 tx.all("sqlite_checkpoint_blobs", (row[7], row[0], row[1])),
                 tx.all("sqlite_checkpoint_writes", (row[0], row[1], row[2])))
                for row in map(tuple, tx.all(query, params))
            ]

        return self._read(doing, read)

    def migrating(self, doing: str, fn: Callable[[SqliteTx], T]) -> T:
        conn = self.connect()
        try:
            with self.begin(doing, conn):
                return fn(SqliteTx(conn, self.queries))
        finally:
            conn.close()

    # --- the group committer's -----------------------------------------------------------
    def open(self) -> None:
        """Nothing to open: connections are made on first use."""

    def writer(self) -> sqlite3.Connection:
        return self.connect()

    def apply_batch(self, conn: sqlite3.Connection, ops: list[Any]) -> list[Any]:
        with self.begin("writing", conn):
            return apply_ops(SqliteTx(conn, self.queries), ops)

    def close_writer(self, conn: sqlite3.Connection) -> None:
        conn.close()

    def is_disconnect(self, exc: BaseException) -> bool:
        return False

    def retire(self, conn: sqlite3.Connection) -> bool:
        return False
    # --- the run queue's hot paths (drivers/sqlite_queue.py) --------------------------
    def enqueue_run(self, doing: str, params: Mapping[str, Any]) -> Row:
        return sqlite_queue.enqueue_run(self, doing, params)

    def ended_sessions(self) -> list[int]:
        return sqlite_queue.ended_sessions(self)

    def worker_session(self, key: int) -> SqliteWorkerSession:
        return sqlite_queue.worker_session(self, key)


def _load_sqlite_vec(conn: sqlite3.Connection) -> None:
    """Load the ``sqlite-vec`` extension when this Python's sqlite3 can load extensions (a
    semantic search then ranks in SQL: treadle.store.items); else nothing (treadle ranks in
    Python)."""
    if not hasattr(conn, "enable_load_extension"):
        return  # a Python built without extension loading (pyenv's default build)
    try:
        import sqlite_vec
    except ImportError:  # pragma: no cover - a dependency
        return
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
    except sqlite3.Error:
        pass  # the extension cannot load here: exact cosine in Python
    finally:
        conn.enable_load_extension(False)
