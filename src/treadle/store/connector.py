"""The connector: the one seam between treadle's store logic and a database driver.

The store's logic (``checkpoints``, ``runs``, ``tasks``, ``resources``, ``items``, ...) is
written once, over this protocol. A driver (``drivers/sqlite.py``, ``drivers/postgres.py``)
owns connections, runs named queries, and turns driver errors into treadle's
(:class:`~treadle.errors.StoreError` and its children), naming what was being done.

Queries are named: each dialect's SQL lives in one file (``sql/sqlite.sql``,
``sql/postgres.sql``) of ``-- name: <name>`` blocks, in the driver's own placeholder style
(``?``/``:name`` for SQLite, ``%s``/``%(name)s`` for PostgreSQL). Both files define the same
names, and a query takes the same parameters in both (a test checks the names). A driver
adapts parameter values to its database (SQLite: lists and dicts as JSON text, booleans as
integers). Where a hot path needs a form only one database can give (the group committer's
batch apply, reading checkpoints with their blobs and writes, queueing a run, worker
sessions), each driver provides it as one named method here, and the logic calls that
method.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from treadle.store.queue import WorkerSession

__all__ = ["CheckpointRows", "Connector", "Params", "Row", "Sql", "Tx", "load_queries"]

Dialect = Literal["sqlite", "postgres"]
Params = Mapping[str, Any] | Sequence[Any]
Row = tuple[Any, ...]
#: A checkpoint's row, the rows of its blobs, the rows of its pending writes.
CheckpointRows = tuple[Row, list[Row], list[Row]]
T = TypeVar("T")


class Sql(str):
    """SQL text composed by the logic from named fragments (not itself a query name)."""

    __slots__ = ()


class Tx(Protocol):
    """Statements inside one transaction (see :meth:`Connector.transact`).

    ``query`` is a query name, or :class:`Sql` composed from named fragments.
    """

    def one(self, query: str, params: Params = ()) -> Row | None: ...

    def all(self, query: str, params: Params = ()) -> list[Row]: ...

    def execute(self, query: str, params: Params = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    def many(self, query: str, rows: Sequence[Params]) -> None:
        """Run a statement once per parameter row."""
        ...

    def script(self, sql: str) -> None:
        """Run a script of several statements, no parameters (a migration file)."""
        ...


class Connector(Protocol):
    """What the store's logic needs of a database. ``doing`` names the operation for
    errors (``"queueing run 1f2e..."``); each single statement runs in its own
    transaction (autocommit).

    Both dialects' queries return the same Python types: JSON as text, times as Unix
    seconds (float), booleans as ``bool()``-able values. Parameters: lists are arrays
    (JSON text on SQLite, read with ``json_each``), dicts JSON objects."""

    dialect: Dialect
    url: str

    def sql(self, name: str) -> str:
        """The text of a named query or fragment, for composing :class:`Sql`."""
        ...

    def one(self, doing: str, query: str, params: Params = ()) -> Row | None: ...

    def all(self, doing: str, query: str, params: Params = ()) -> list[Row]: ...

    def execute(self, doing: str, query: str, params: Params = ()) -> int: ...

    def write(self, doing: str, query: str, params: Params = ()) -> list[Row]:
        """One statement that changes rows and returns some (``RETURNING``), in its own
        write transaction (SQLite: under the write lock; PostgreSQL: autocommit)."""
        ...

    def transact(self, doing: str, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one write transaction and return its result once committed; rolled
        back if ``fn`` raises. ``fn`` may run twice (the PostgreSQL driver retries once on a
        fresh connection when the server dropped the first), so it must only touch the
        database through its ``Tx``."""
        ...

    def listener(self, channels: Sequence[str]) -> Any:
        """A LISTEN on ``channels`` (:class:`~treadle.store.queue.Listener`), or None where
        the database has no notifications (callers poll)."""
        ...

    def now(self) -> float:
        """The database's clock, in Unix seconds (leases mean the same on every machine)."""
        ...

    def read_checkpoints(self, doing: str, query: str, params: Params) -> list[CheckpointRows]:
        """Checkpoint rows of ``query`` (``checkpoints_select`` ... ``checkpoints_tail``),
        each with the rows of the blobs it references and of its pending writes. PostgreSQL
        aggregates them into the checkpoint's row (one round trip); SQLite reads them after
        it (a blob cannot travel inside an aggregate)."""
        ...

    def migrating(self, doing: str, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one transaction on a connection of its own, under the lock that
        makes concurrent migrations queue (PostgreSQL: an advisory lock; SQLite: the write
        lock). Its statements are never prepared (the schema changes under them)."""
        ...

    # --- the group committer's (treadle.store.writer) ----------------------------------
    writer_name: str  # its thread's name

    def open(self) -> None:
        """Connect (PostgreSQL: the writer first, which checks the server is there, then the
        reader pool). Called once, by the store."""
        ...

    def writer(self) -> Any:
        """The committer's connection: a new one, or the first one ``open`` made."""
        ...

    def apply_batch(self, conn: Any, ops: list[Any]) -> list[Any]:
        """Apply the write operations ``ops`` (:mod:`~treadle.store.checkpoints`) in one
        transaction on ``conn``; per operation its result or its refusal (a
        :class:`~treadle.errors.FencedWriteError`). Raises (rolled back) if the batch fails."""
        ...

    def close_writer(self, conn: Any) -> None: ...

    def is_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the writer's connection is gone (reconnect and retry)."""
        ...

    def retire(self, conn: Any) -> bool:
        """Whether to close ``conn`` after its last batch (it carried a big payload)."""
        ...

    def close(self) -> None: ...

    # --- the run queue's hot paths (treadle.store.run_records) -----------------------
    def enqueue_run(self, doing: str, params: Mapping[str, Any]) -> Row:
        """Queue a run (the parameters of the named query ``run_enqueue``) deciding its
        idempotency key and multitask strategy atomically with the insert; the key's
        stored request hash, then the run's columns. ThreadBusyError when ``reject``
        refuses it (nothing written)."""
        ...

    def ended_sessions(self) -> list[int]:
        """Keys of the worker sessions of running claims that the driver finds ended
        outside SQL (SQLite: their lock files beside the database are free); the sweep
        queries take them as ``dead``. PostgreSQL: none, its sweep queries read
        ``pg_locks`` themselves."""
        ...

    def worker_session(self, key: int) -> WorkerSession:
        """A worker's liveness under ``key`` (:class:`~treadle.store.queue.WorkerSession`)."""
        ...


_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """``-- name: x`` blocks of a query file -> {name: sql}. Comment lines inside a block
    are dropped; a repeated name is an error (each name is defined once)."""
    found: dict[str, str] = {}
    marks = list(_NAME.finditer(text))
    for mark, following in zip(marks, [*marks[1:], None], strict=False):
        end = following.start() if following else len(text)
        body = "\n".join(
            line for line in text[mark.end() : end].splitlines() if not line.lstrip().startswith("--")
        ).strip()
        name = mark.group(1)
        if name in found:
            raise ValueError(f"query {name!r} is defined twice")
        found[name] = body.rstrip().rstrip(";").rstrip()
    return found


@cache
def load_queries(dialect: Dialect) -> Mapping[str, str]:
    """The named queries of ``dialect``, read once from ``store/sql/<dialect>.sql``."""
    text = resources.files("treadle.store").joinpath("sql", f"{dialect}.sql").read_text("utf-8")
    return parse_queries(text)


def query_text(queries: Mapping[str, str], query: str) -> str:
    """A name's SQL, or composed :class:`Sql` as it is."""
    if isinstance(query, Sql):
        return str(query)
    try:
        return queries[query]
    except KeyError:
        raise KeyError(f"no query named {query!r}") from None
