"""The item store (:class:`~treadle.store.items.ItemStore`) on SQLite.

Sets of keys and writes travel as one JSON array bound to one statement (``json_each``),
so a batch costs one statement whatever its size. Reads run on the calling thread's
connection without a write lock; a read that must refresh TTLs takes it afterwards, only
when an item it found has a TTL. Filters are SQL over ``json_type`` / ``json_extract``;
stored values have sorted keys, so objects compare equal as text.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

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
from treadle.store.sqlite_queries import NOW

__all__ = ["SqliteItems"]

# --- queries -----------------------------------------------------------------------------------
_LIVE = f"(expires_at IS NULL OR expires_at > {NOW})"
_COLUMNS = "namespace, key, value, created_at, updated_at, ttl_minutes, expires_at"
# ``?`` is a JSON array of [namespace, key] pairs.
_KEYS = "SELECT json_extract(w.value, '$[0]'), json_extract(w.value, '$[1]') FROM json_each(?) AS w"

GET_ITEMS = f"SELECT {_COLUMNS} FROM treadle_items WHERE (namespace, key) IN ({_KEYS}) AND {_LIVE}"
REFRESH_ITEMS = f"""
UPDATE treadle_items SET expires_at = {NOW} + ttl_minutes * 60.0
WHERE (namespace, key) IN ({_KEYS}) AND ttl_minutes IS NOT NULL AND {_LIVE}
RETURNING namespace, key, expires_at"""
DELETE_ITEMS = f"DELETE FROM treadle_items WHERE (namespace, key) IN ({_KEYS})"
# ``?`` is a JSON array of [namespace, labels, key, value text, ttl_minutes or null].
# ("WHERE true" lets SQLite parse ON CONFLICT after INSERT ... SELECT.)
PUT_ITEMS = f"""
INSERT INTO treadle_items
    (namespace, labels, key, value, created_at, updated_at, ttl_minutes, expires_at)
SELECT json_extract(w.value, '$[0]'), json_extract(w.value, '$[1]'),
       json_extract(w.value, '$[2]'), json_extract(w.value, '$[3]'), {NOW}, {NOW},
       json_extract(w.value, '$[4]'), {NOW} + json_extract(w.value, '$[4]') * 60.0
FROM json_each(?) AS w WHERE true
ON CONFLICT (namespace, key) DO UPDATE SET
    value = excluded.value,
    updated_at = excluded.updated_at,
    created_at = CASE WHEN treadle_items.expires_at <= excluded.updated_at
                      THEN excluded.created_at ELSE treadle_items.created_at END,
    ttl_minutes = excluded.ttl_minutes,
    expires_at = excluded.expires_at"""
SWEEP_ITEMS = f"DELETE FROM treadle_items WHERE expires_at <= {NOW}"

# Searches and listings are assembled from these fixed fragments; values stay bound.
SEARCH_ITEMS = f"SELECT {_COLUMNS} FROM treadle_items AS i WHERE {_LIVE}"
WHERE_PREFIX = "(namespace = ? OR (namespace >= ? AND namespace < ?))"
SEARCH_ORDER = " ORDER BY updated_at DESC, namespace, key LIMIT ? OFFSET ?"
# A namespace cut to its first ? labels: their lengths plus the dots between them.
_CUT = """CASE WHEN ? IS NULL OR json_array_length(labels) <= ? THEN namespace
    ELSE substr(namespace, 1, (SELECT sum(length(j.value)) + count(*) - 1
                               FROM json_each(labels) AS j WHERE j.key < ?)) END"""
LIST_NAMESPACES = f"SELECT DISTINCT {_CUT} AS ns FROM treadle_items WHERE {_LIVE}"
WHERE_DEPTH = "json_array_length(labels) >= ?"
WHERE_LABEL = "json_extract(labels, ?) = ?"
LIST_ORDER = " ORDER BY ns LIMIT ? OFFSET ?"

# A value's top-level field: by JSON path, or (for keys a path cannot quote) by json_each.
_FIELD_BY_PATH = ("json_type(i.value, ?)", "json_extract(i.value, ?)")
_FIELD_BY_EACH = ("(SELECT j.type FROM json_each(i.value) AS j WHERE j.key = ?)",
                  "(SELECT j.value FROM json_each(i.value) AS j WHERE j.key = ?)")
# Condition templates over {t} (the field's JSON type, NULL when missing) and {v} (its SQL
# value; JSON text for objects and arrays). Each is 0 or 1, never NULL, so NOT negates it.
_IS_NULL = "coalesce({t}, 'null') = 'null'"
_IS_BOOL = "coalesce({t}, '') = ?"
_EQ_NUMBER = "(coalesce({t}, '') IN ('integer', 'real') AND {v} = ?)"
_EQ_TEXT = "(coalesce({t}, '') = 'text' AND {v} = ?)"
_EQ_JSON = "(coalesce({t}, '') IN ('object', 'array') AND {v} = ?)"
_CMP_NUMBER = "(coalesce({t}, '') IN ('integer', 'real') AND {v} %s ?)"
_CMP_TEXT = "(coalesce({t}, '') = 'text' AND {v} %s ?)"


def _condition(c: Condition) -> tuple[str, list[Any]]:
    """``c`` as SQL over ``i.value`` with its parameters."""
    if '"' in c.key or "\\" in c.key:
        (t, v), ref = _FIELD_BY_EACH, c.key
    else:
        (t, v), ref = _FIELD_BY_PATH, "$." + json.dumps(c.key, ensure_ascii=False)
    x = c.operand
    if isinstance(x, int) and not isinstance(x, bool) and not -(2**63) <= x < 2**63:
        x = float(x)  # beyond SQLite's integers (JSON holds them as reals there too)
    if c.op in COMPARISONS:
        template = (_CMP_TEXT if isinstance(x, str) else _CMP_NUMBER) % COMPARISONS[c.op]
        return template.format(t=t, v=v), [ref, ref, x]
    if x is None:
        sql, params = _IS_NULL.format(t=t), [ref]
    elif isinstance(x, bool):
        sql, params = _IS_BOOL.format(t=t), [ref, "true" if x else "false"]
    else:
        if isinstance(x, int | float):
            template = _EQ_NUMBER
        elif isinstance(x, str):
            template = _EQ_TEXT
        else:
            template, x = _EQ_JSON, c.operand_json
        sql, params = template.format(t=t, v=v), [ref, ref, x]
    return (f"NOT {sql}" if c.op == "$ne" else sql), params


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _keys_json(keys: Sequence[ItemKey]) -> str:
    return _json([[join_namespace(ns), key] for ns, key in keys])


def _row(r: Sequence[Any]) -> ItemRow:
    return ItemRow(split_namespace(r[0]), r[1], json.loads(r[2]), r[3], r[4], r[5], r[6])


class SqliteItems(ItemStore):
    """The :class:`ItemStore` part of :class:`~treadle.store.sqlite.SqliteStore`."""

    @abc.abstractmethod
    def _write(self, what: str) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``); driver errors become StoreError."""

    @abc.abstractmethod
    def _read(self, what: str, sql: str, params: Sequence[Any]) -> list[Any]:
        """Rows of one query; driver errors become StoreError."""

    def get_items(self, keys: Sequence[ItemKey], *, refresh_ttl: bool = True) -> list[ItemRow | None]:
        if not keys:
            return []
        wanted = _keys_json(list(dict.fromkeys(keys)))
        found = {(r.namespace, r.key): r
                 for r in map(_row, self._read("reading items", GET_ITEMS, (wanted,)))}
        if refresh_ttl:
            self._refresh(found)
        return [found.get((tuple(ns), key)) for ns, key in keys]

    def search_items(self, search: ItemSearch) -> list[ItemRow]:
        sql = SEARCH_ITEMS
        params: list[Any] = []
        if search.prefix:
            exact = join_namespace(search.prefix)
            sql += " AND " + WHERE_PREFIX
            params += [exact, exact + ".", exact + "/"]  # '/' follows '.'
        for c in search.conditions:
            fragment, values = _condition(c)
            sql += " AND " + fragment
            params += values
        sql += SEARCH_ORDER
        params += [search.limit, search.offset]
        rows = [_row(r) for r in self._read("searching items", sql, params)]
        if search.refresh_ttl:
            found = {(r.namespace, r.key): r for r in rows}
            self._refresh(found)
            rows = [found[(r.namespace, r.key)] for r in rows]
        return rows

    def list_item_namespaces(self, query: NamespaceQuery) -> list[tuple[str, ...]]:
        depth = query.max_depth
        sql = LIST_NAMESPACES
        params: list[Any] = [depth, depth, depth]
        literal = query.literal_prefix()
        if literal:
            exact = join_namespace(literal)
            sql += " AND " + WHERE_PREFIX
            params += [exact, exact + ".", exact + "/"]
        if query.min_depth() > len(literal):
            sql += " AND " + WHERE_DEPTH
            params.append(query.min_depth())
        for position, label in query.label_checks():
            sql += " AND " + WHERE_LABEL
            params += [f"$[{position}]" if position >= 0 else f"$[#{position}]", label]
        sql += LIST_ORDER
        params += [query.limit, query.offset]
        return [split_namespace(r[0]) for r in self._read("listing namespaces", sql, params)]

    def write_items(self, writes: Sequence[ItemWrite]) -> None:
        final = last_writes(writes)
        if not final:
            return
        deletes = [(w.namespace, w.key) for w in final if w.value is None]
        puts = [[join_namespace(w.namespace), _json(list(w.namespace)), w.key, w.value,
                 w.ttl_minutes] for w in final if w.value is not None]
        with self._write(f"writing {len(final)} item(s)") as conn:
            if deletes:
                conn.execute(DELETE_ITEMS, (_keys_json(deletes),))
            if puts:
                conn.execute(PUT_ITEMS, (_json(puts),))

    def sweep_items(self) -> int:
        with self._write("deleting expired items") as conn:
            return conn.execute(SWEEP_ITEMS).rowcount

    def _refresh(self, found: dict[ItemKey, ItemRow]) -> None:
        """Extend the TTLs of the items in ``found`` that have one; update their rows."""
        keys = [k for k, r in found.items() if r.ttl_minutes is not None]
        if not keys:
            return
        with self._write(f"refreshing the TTL of {len(keys)} item(s)") as conn:
            refreshed = conn.execute(REFRESH_ITEMS, (_keys_json(keys),)).fetchall()
        for ns, key, expires_at in refreshed:
            k = (split_namespace(ns), key)
            row = found.get(k)
            if row is not None:
                found[k] = dataclasses.replace(row, expires_at=expires_at)
