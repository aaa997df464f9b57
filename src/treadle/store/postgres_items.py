"""The item store (:class:`~treadle.store.items.ItemStore`) on PostgreSQL.

Every method is one statement on a pooled autocommit connection, so one transaction and
one round trip: a read and the TTL refresh of what it found are one statement
(data-modifying CTEs), and a batch of puts and deletes travels as one JSON document.
Values are ``jsonb``; filters are SQL over it. Namespaces are ``COLLATE "C"`` text, so a
namespace prefix is a bytewise range and listings sort as on SQLite.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from treadle.store.items import (
    COMPARISONS,
    Condition,
    ItemKey,
    ItemRow,
    ItemSearch,
    ItemStore,
    ItemWrite,
    NamespaceQuery,
    join_namespace,
    last_writes,
    split_namespace,
)

__all__ = ["PostgresItems"]

T = TypeVar("T")


def _seconds(column: str) -> str:
    return f"extract(epoch FROM {column})::float8"


# --- queries -----------------------------------------------------------------------------------
_LIVE = "(i.expires_at IS NULL OR i.expires_at > now())"
_FOUND_COLUMNS = "i.namespace, i.key, i.value, i.created_at, i.updated_at, i.ttl_minutes, i.expires_at"
# Wrap a query returning _FOUND_COLUMNS (as "found"): refresh the TTLs of its rows when the
# last parameter is true, and return them as ItemRow columns, with the new expiry.
_REFRESH_HEAD = "WITH found AS ("
_REFRESH_TAIL = f"""), refreshed AS (
    UPDATE treadle_items i SET expires_at = now() + make_interval(secs => i.ttl_minutes * 60)
    FROM found f
    WHERE %s AND f.ttl_minutes IS NOT NULL AND i.namespace = f.namespace AND i.key = f.key
    RETURNING i.namespace, i.key, i.expires_at
)
SELECT f.namespace, f.key, f.value, {_seconds("f.created_at")}, {_seconds("f.updated_at")},
       f.ttl_minutes, {_seconds("coalesce(r.expires_at, f.expires_at)")}
FROM found f LEFT JOIN refreshed r ON r.namespace = f.namespace AND r.key = f.key"""

GET_ITEMS = f"""{_REFRESH_HEAD}
    SELECT {_FOUND_COLUMNS}
    FROM unnest(%s::text[], %s::text[]) AS w (namespace, key)
    JOIN treadle_items i ON i.namespace = w.namespace AND i.key = w.key
    WHERE {_LIVE}
{_REFRESH_TAIL}"""
# Searches and listings are assembled from these fixed fragments; values stay bound.
SEARCH_HEAD = f"""{_REFRESH_HEAD}
    SELECT {_FOUND_COLUMNS} FROM treadle_items i WHERE {_LIVE}"""
WHERE_PREFIX = "(i.namespace = %s OR (i.namespace >= %s AND i.namespace < %s))"
SEARCH_PAGE = " ORDER BY i.updated_at DESC, i.namespace, i.key LIMIT %s OFFSET %s"
SEARCH_TAIL = f"{_REFRESH_TAIL} ORDER BY f.updated_at DESC, f.namespace, f.key"

LIST_HEAD = f"""
SELECT DISTINCT (CASE WHEN %s::int IS NULL THEN namespace
                      ELSE array_to_string(labels[1:%s::int], '.') END) COLLATE "C" AS ns
FROM (SELECT i.namespace, string_to_array(i.namespace, '.') AS labels
      FROM treadle_items i WHERE {_LIVE}"""
LIST_FILTER = ") AS n WHERE true"
WHERE_DEPTH = " AND cardinality(labels) >= %s::int"
WHERE_LABEL = " AND labels[%s::int] = %s"
WHERE_LABEL_FROM_END = " AND labels[cardinality(labels) + 1 + %s::int] = %s"
LIST_ORDER = " ORDER BY ns LIMIT %s OFFSET %s"

# %s: a JSON array of {"ns", "k", "v" (JSON text, null to delete), "ttl"}, one per item.
WRITE_ITEMS = """
WITH w AS (
    SELECT * FROM jsonb_to_recordset(%s::jsonb) AS w (ns text, k text, v text, ttl float8)
), deleted AS (
    DELETE FROM treadle_items i USING w
    WHERE w.v IS NULL AND i.namespace = w.ns AND i.key = w.k
)
INSERT INTO treadle_items AS i
    (namespace, key, value, created_at, updated_at, ttl_minutes, expires_at)
SELECT w.ns, w.k, w.v::jsonb, now(), now(), w.ttl, now() + make_interval(secs => w.ttl * 60)
FROM w WHERE w.v IS NOT NULL
ON CONFLICT (namespace, key) DO UPDATE SET
    value = EXCLUDED.value,
    updated_at = EXCLUDED.updated_at,
    created_at = CASE WHEN i.expires_at <= now() THEN EXCLUDED.created_at ELSE i.created_at END,
    ttl_minutes = EXCLUDED.ttl_minutes,
    expires_at = EXCLUDED.expires_at"""
SWEEP_ITEMS = "DELETE FROM treadle_items WHERE expires_at <= now()"

# Conditions over the value's top-level field (``value -> key``, NULL when missing).
_EQ = "coalesce(i.value -> %s, 'null'::jsonb) = %s::jsonb"
_NE = "coalesce(i.value -> %s, 'null'::jsonb) <> %s::jsonb"
_CMP_NUMBER = "(jsonb_typeof(i.value -> %%s) = 'number' AND i.value -> %%s %s %%s::jsonb)"
_CMP_TEXT = "(jsonb_typeof(i.value -> %%s) = 'string' AND (i.value ->> %%s) COLLATE \"C\" %s %%s)"


def _condition(c: Condition) -> tuple[str, list[Any]]:
    """``c`` as SQL over ``i.value`` with its parameters."""
    if c.op in COMPARISONS:
        if isinstance(c.operand, str):
            return _CMP_TEXT % COMPARISONS[c.op], [c.key, c.key, c.operand]
        return _CMP_NUMBER % COMPARISONS[c.op], [c.key, c.key, c.operand_json]
    return (_NE if c.op == "$ne" else _EQ), [c.key, c.operand_json]


def _row(r: Sequence[Any]) -> ItemRow:
    return ItemRow(split_namespace(r[0]), r[1], r[2], r[3], r[4], r[5], r[6])


class PostgresItems(ItemStore):
    """The :class:`ItemStore` part of :class:`~treadle.store.postgres.PostgresStore`."""

    @abc.abstractmethod
    def _with_conn(self, doing: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn`` on a pooled autocommit connection; driver errors become StoreError."""

    def _rows(self, doing: str, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._with_conn(doing, lambda conn: conn.execute(sql, params).fetchall())

    def get_items(self, keys: Sequence[ItemKey], *, refresh_ttl: bool = True) -> list[ItemRow | None]:
        if not keys:
            return []
        wanted = list(dict.fromkeys((join_namespace(ns), key) for ns, key in keys))
        rows = self._rows("reading items", GET_ITEMS,
                          ([n for n, _ in wanted], [k for _, k in wanted], refresh_ttl))
        found = {(r.namespace, r.key): r for r in map(_row, rows)}
        return [found.get((tuple(ns), key)) for ns, key in keys]

    def search_items(self, search: ItemSearch) -> list[ItemRow]:
        sql = SEARCH_HEAD
        params: list[Any] = []
        if search.prefix:
            exact = join_namespace(search.prefix)
            sql += " AND " + WHERE_PREFIX
            params += [exact, exact + ".", exact + "/"]  # '/' follows '.'
        for c in search.conditions:
            fragment, values = _condition(c)
            sql += " AND " + fragment
            params += values
        sql += SEARCH_PAGE + SEARCH_TAIL
        params += [search.limit, search.offset, search.refresh_ttl]
        return [_row(r) for r in self._rows("searching items", sql, params)]

    def list_item_namespaces(self, query: NamespaceQuery) -> list[tuple[str, ...]]:
        sql = LIST_HEAD
        params: list[Any] = [query.max_depth, query.max_depth]
        literal = query.literal_prefix()
        if literal:
            exact = join_namespace(literal)
            sql += " AND " + WHERE_PREFIX
            params += [exact, exact + ".", exact + "/"]
        sql += LIST_FILTER
        if query.min_depth() > len(literal):
            sql += WHERE_DEPTH
            params.append(query.min_depth())
        for position, label in query.label_checks():
            if position >= 0:
                sql += WHERE_LABEL
                params += [position + 1, label]
            else:
                sql += WHERE_LABEL_FROM_END
                params += [position, label]
        sql += LIST_ORDER
        params += [query.limit, query.offset]
        return [split_namespace(r[0]) for r in self._rows("listing namespaces", sql, params)]

    def write_items(self, writes: Sequence[ItemWrite]) -> None:
        final = last_writes(writes)
        if not final:
            return
        doc = json.dumps([
            {"ns": join_namespace(w.namespace), "k": w.key, "v": w.value, "ttl": w.ttl_minutes}
            for w in final
        ])
        self._with_conn(f"writing {len(final)} item(s)",
                        lambda conn: conn.execute(WRITE_ITEMS, (doc,)))

    def sweep_items(self) -> int:
        return self._with_conn("deleting expired items",
                               lambda conn: conn.execute(SWEEP_ITEMS).rowcount)
