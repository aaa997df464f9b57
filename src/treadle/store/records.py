"""What the API resources (assistants, threads, crons) share: JSON columns, choices,
metadata merges, row creation and patching, and the search builder.

JSON goes to the database as text with sorted keys (equal objects have equal text, which
SQLite's filters rely on; PostgreSQL casts it to ``jsonb``) and comes back as text, read
with :func:`treadle.store.jsonsafe.loads` so a row written before the HTTP API refused NaN
or too-deep JSON still reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from treadle.errors import ConflictError, InputError
from treadle.store import jsonsafe
from treadle.store.access import Access, compile_access
from treadle.store.connector import Connector, Row, Sql, Tx

__all__ = [
    "IF_EXISTS",
    "SORT_ORDERS",
    "UNSET",
    "Search",
    "Unset",
    "check_choice",
    "create",
    "dump_json",
    "load_json",
    "merge_metadata",
    "patch",
    "scoped",
]

IF_EXISTS = ("raise", "do_nothing")
SORT_ORDERS = ("asc", "desc")
# Sort columns that are not text (no collation applies to them).
_NOT_TEXT = frozenset({"created_at", "updated_at", "next_run_at"})


class Unset:
    """The type of :data:`UNSET`: "not given", where None is a meaningful value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()


def check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise InputError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise InputError(f"unknown {kind} {value!r} (use one of {', '.join(allowed)})")


def merge_metadata(current: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    """Shallow merge: the keys of ``changes`` replace those of ``current``."""
    return {**current, **changes} if changes else dict(current)


def dump_json(value: Any) -> str:
    """JSON text with sorted keys (equal objects, equal text)."""
    try:
        return json.dumps(value, default=str, sort_keys=True, separators=(",", ":"))
    except TypeError:  # keys that do not sort (int beside str): sort their JSON form
        plain = json.loads(json.dumps(value, default=str))
        return json.dumps(plain, sort_keys=True, separators=(",", ":"))


def load_json(text: str | None) -> Any:
    return None if text is None else jsonsafe.loads(text)


def create(db: Connector, doing: str, insert: str, params: dict[str, Any], get: str,
           key: dict[str, Any], if_exists: str, what: str,
           then: Callable[[Tx], object] | None = None) -> Row:
    """``insert`` (``ON CONFLICT DO NOTHING RETURNING`` the row), then ``then``; when the key
    exists, raise ConflictError or read the existing row (``get``), per ``if_exists``."""
    check_choice("if_exists", if_exists, IF_EXISTS)

    def run(tx: Tx) -> Row:
        row = tx.one(insert, params)
        if row is not None:
            if then is not None:
                then(tx)
            return row
        if if_exists == "raise":
            raise ConflictError(f"{what} {next(iter(key.values()))!r} exists already")
        found = tx.one(get, key)
        assert found is not None  # it conflicted, and rows are never deleted inside a tx
        return found

    return db.transact(doing, run)


def scoped(db: Connector, query: str, params: dict[str, Any], access: Access
           ) -> tuple[str, dict[str, Any]]:
    """``query`` (a named query ending in its ``WHERE``) narrowed by the access filter
    ``access`` (:mod:`treadle.store.access`), with its parameters; unchanged for None."""
    if access is None:
        return query, params
    condition, extra = compile_access(db, access)
    return Sql(f"{db.sql(query)} AND {condition}"), {**params, **extra}


def patch(db: Connector, doing: str, lock: str, key: dict[str, Any],
          update: Callable[[Tx, Row], Row | None], *, get: str | None = None,
          access: Access = None) -> Row | None:
    """Read and lock the row (``lock``), then ``update(tx, row)``, in one transaction; None
    when there is no row, or (``access``, checked with ``get`` once the row is locked) when
    the access filter excludes it."""

    def run(tx: Tx) -> Row | None:
        row = tx.one(lock, key)
        if row is not None and access is not None:
            assert get is not None, "patch with access needs the get query"
            row = tx.one(*scoped(db, get, key, access))
        return None if row is None else update(tx, row)

    return db.transact(doing, run)


class Search:
    """A search over one resource table, composed from named fragments: filters (each
    binds one named parameter), then a count, or a sort and a page of rows."""

    def __init__(self, db: Connector) -> None:
        self.db = db
        self.where: list[str] = []
        self.params: dict[str, Any] = {}

    def match(self, fragment: str, name: str, value: Any) -> Search:
        """Rows meeting ``fragment``, with ``value`` bound as ``name``; no filter for None."""
        if value is not None:
            self.where.append(self.db.sql(fragment))
            self.params[name] = value
        return self

    def access(self, filters: Access) -> Search:
        """Rows the access filter ``filters`` admits (:mod:`treadle.store.access`)."""
        if filters is not None:
            condition, params = compile_access(self.db, filters)
            self.where.append(condition)
            self.params.update(params)
        return self

    def contains(self, fragment: str, name: str, value: dict[str, Any] | None) -> Search:
        """A JSON filter (``value`` as sorted-key JSON); an empty one matches every row."""
        return self.match(fragment, name, dump_json(value) if value else None)

    def _sql(self, head: str, *tail: str) -> Sql:
        where = " WHERE " + " AND ".join(self.where) if self.where else ""
        return Sql(" ".join([self.db.sql(head) + where, *tail]))

    def count(self, doing: str, head: str) -> int:
        row = self.db.one(doing, self._sql(head), self.params)
        return int(row[0]) if row else 0

    def page(self, doing: str, head: str, tail: str, limit: int, offset: int) -> list[Row]:
        """Rows of ``head`` with the filters, then ``tail`` (its order and its page)."""
        params = {**self.params, "limit": max(int(limit), 0), "offset": max(int(offset), 0)}
        return self.db.all(doing, self._sql(head, self.db.sql(tail)), params)

    def sorted(self, doing: str, head: str, allowed: tuple[str, ...], sort_by: str,
               sort_order: str, limit: int, offset: int) -> list[Row]:
        """Rows ordered by ``sort_by`` (one of ``allowed``, which are column names; empty
        values last), then by creation order in the same direction."""
        check_choice("sort_by", sort_by, allowed)
        check_choice("sort_order", sort_order, SORT_ORDERS)
        direction = "ASC" if sort_order == "asc" else "DESC"
        column = sort_by if sort_by in _NOT_TEXT else f"{sort_by} {self.db.sql('resource_collate')}"
        order = f"ORDER BY {column} {direction} NULLS LAST, seq {direction}"
        params = {**self.params, "limit": max(int(limit), 0), "offset": max(int(offset), 0)}
        return self.db.all(doing, self._sql(head, order, self.db.sql("resource_page")), params)
