"""The API resources (:class:`~treadle.store.resources.ResourceStore`) on PostgreSQL.

Every method is one short transaction on a pooled autocommit connection (the store's
``_with_conn``): one statement (data-modifying CTEs keep an assistant and its version
row together), or, where a change is computed from the current record (patches), a
transaction that first locks the row ``FOR UPDATE`` so concurrent patches queue instead
of losing each other's changes. JSON is ``jsonb``; metadata filters use ``@>`` (GIN
indexed) plus an exact comparison of nested values (:data:`_JSON_MATCH`), so both
backends match the same rows. Tables come from migration ``0004_resources.pre.sql``.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Int8

from treadle.errors import ConflictError
from treadle.store.jsonsafe import cap_depth
from treadle.store.resources import (
    IF_EXISTS,
    SORT_ORDERS,
    THREAD_STATUSES,
    UNSET,
    Assistant,
    Cron,
    ResourceStore,
    Thread,
    ThreadUpdate,
    Unset,
    check_choice,
    merge_metadata,
    patch_assistant_record,
    patch_cron_record,
)

__all__ = ["PostgresResources"]

T = TypeVar("T")

# --- SQL ---------------------------------------------------------------------------------
# Values are always bound; WHERE / ORDER BY are assembled from the fixed fragments below.
# statement_timestamp() is one value per statement, so a new row's created_at equals its
# updated_at.
_NOW = "statement_timestamp()"


def _seconds(column: str) -> str:
    return f"extract(epoch FROM {column})::float8"


def _json_match(column: str) -> str:
    """``column`` has every top-level key of the bound object with an equal value: ``@>``
    finds candidates (through the GIN index); the second test turns containment into
    equality for nested values (``{"a": [1, 2]}`` contains ``{"a": [1]}``)."""
    return (f"({column} @> %s AND NOT EXISTS (SELECT 1 FROM jsonb_each(%s) f "
            f"WHERE {column} -> f.key IS DISTINCT FROM f.value))")


# Text columns sort by code point, as SQLite does, whatever the database's collation.
_TEXT = ' COLLATE "C"'
_SORT = {"asc": "ASC", "desc": "DESC"}

ASSISTANT_COLUMNS = f"""assistant_id, graph_id, config, context, metadata, name, description,
    version, {_seconds('created_at')}, {_seconds('updated_at')}"""
# The new row and its version 1, in one statement.
INSERT_ASSISTANT = f"""
WITH a AS (
    INSERT INTO treadle_assistants
        (assistant_id, graph_id, config, context, metadata, name, description, created_at,
         updated_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, {_NOW}, {_NOW})
    ON CONFLICT (assistant_id) DO NOTHING
    RETURNING *),
v AS (
    INSERT INTO treadle_assistant_versions
        (assistant_id, version, graph_id, config, context, metadata, name, description,
         created_at)
    SELECT assistant_id, version, graph_id, config, context, metadata, name, description,
        created_at FROM a)
SELECT {ASSISTANT_COLUMNS} FROM a"""
GET_ASSISTANT = f"SELECT {ASSISTANT_COLUMNS} FROM treadle_assistants WHERE assistant_id = %s"
LOCK_ASSISTANT = GET_ASSISTANT + " FOR UPDATE"
# Run after LOCK_ASSISTANT in the same transaction: this statement's snapshot sees every
# version committed before the lock was granted, so max(version) + 1 is free.
UPDATE_ASSISTANT = f"""
WITH a AS (
    UPDATE treadle_assistants SET graph_id = %(graph_id)s, config = %(config)s,
        context = %(context)s, metadata = %(metadata)s, name = %(name)s,
        description = %(description)s,
        version = (SELECT coalesce(max(version), 0) + 1 FROM treadle_assistant_versions
                   WHERE assistant_id = %(assistant_id)s),
        updated_at = {_NOW}
    WHERE assistant_id = %(assistant_id)s
    RETURNING *),
v AS (
    INSERT INTO treadle_assistant_versions
        (assistant_id, version, graph_id, config, context, metadata, name, description,
         created_at)
    SELECT assistant_id, version, graph_id, config, context, metadata, name, description,
        updated_at FROM a)
SELECT {ASSISTANT_COLUMNS} FROM a"""
RESTORE_ASSISTANT_VERSION = f"""
UPDATE treadle_assistants a SET graph_id = v.graph_id, config = v.config, context = v.context,
    metadata = v.metadata, name = v.name, description = v.description, version = v.version,
    updated_at = {_NOW}
FROM treadle_assistant_versions v
WHERE a.assistant_id = %(assistant_id)s AND v.assistant_id = a.assistant_id
  AND v.version = %(version)s
RETURNING a.assistant_id, a.graph_id, a.config, a.context, a.metadata, a.name, a.description,
    a.version, {_seconds('a.created_at')}, {_seconds('a.updated_at')}"""
DELETE_ASSISTANT = """
WITH v AS (DELETE FROM treadle_assistant_versions WHERE assistant_id = %(assistant_id)s)
DELETE FROM treadle_assistants WHERE assistant_id = %(assistant_id)s RETURNING 1"""
SEARCH_ASSISTANTS = f"SELECT {ASSISTANT_COLUMNS} FROM treadle_assistants"
COUNT_ASSISTANTS = "SELECT count(*) FROM treadle_assistants"
WHERE_GRAPH_ID = "graph_id = %s"
WHERE_NAME = "strpos(lower(name), lower(%s)) > 0"
WHERE_METADATA = _json_match("metadata")
ASSISTANT_ORDER = {
    "assistant_id": "assistant_id" + _TEXT,
    "graph_id": "graph_id" + _TEXT,
    "name": "name" + _TEXT,
    "created_at": "created_at",
    "updated_at": "updated_at",
}
LIST_VERSIONS = f"""
SELECT assistant_id, graph_id, config, context, metadata, name, description, version,
    {_seconds('created_at')}, {_seconds('created_at')}
FROM treadle_assistant_versions"""
WHERE_ASSISTANT_ID = "assistant_id = %s"
VERSIONS_ORDER = " ORDER BY version DESC LIMIT %s OFFSET %s"

THREAD_COLUMNS = f"""thread_id, metadata, status, state_values, interrupts, config, error,
    {_seconds('created_at')}, {_seconds('updated_at')}"""
INSERT_THREAD = f"""
INSERT INTO treadle_thread_records
    (thread_id, metadata, status, state_values, interrupts, config, error, created_at,
     updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, {_NOW}, {_NOW})
ON CONFLICT (thread_id) DO NOTHING
RETURNING {THREAD_COLUMNS}"""
GET_THREAD = f"SELECT {THREAD_COLUMNS} FROM treadle_thread_records WHERE thread_id = %s"
LOCK_THREAD = GET_THREAD + " FOR UPDATE"
UPDATE_THREAD_METADATA = f"""
UPDATE treadle_thread_records SET metadata = %s, updated_at = {_NOW} WHERE thread_id = %s
RETURNING {THREAD_COLUMNS}"""
SET_THREAD_STATE = f"""
UPDATE treadle_thread_records SET status = %(status)s,
    state_values = CASE WHEN %(set_values)s THEN %(values)s::jsonb ELSE state_values END,
    interrupts = %(interrupts)s, error = %(error)s, updated_at = {_NOW}
WHERE thread_id = %(thread_id)s"""
DELETE_THREAD_RECORD = "DELETE FROM treadle_thread_records WHERE thread_id = %s"
SEARCH_THREADS = f"SELECT {THREAD_COLUMNS} FROM treadle_thread_records"
COUNT_THREADS = "SELECT count(*) FROM treadle_thread_records"
WHERE_VALUES = _json_match("state_values")
WHERE_STATUS = "status = %s"
WHERE_THREAD_IDS = "thread_id = ANY(%s::text[])"
THREAD_ORDER = {
    "thread_id": "thread_id" + _TEXT,
    "status": "status" + _TEXT,
    "created_at": "created_at",
    "updated_at": "updated_at",
}

CRON_COLUMNS = f"""cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time,
    next_run_at, enabled, user_id, {_seconds('created_at')}, {_seconds('updated_at')}"""
INSERT_CRON = f"""
INSERT INTO treadle_crons
    (cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time, next_run_at,
     enabled, user_id, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s::float8, %s::float8, %s, %s, {_NOW}, {_NOW})
ON CONFLICT (cron_id) DO NOTHING
RETURNING {CRON_COLUMNS}"""
GET_CRON = f"SELECT {CRON_COLUMNS} FROM treadle_crons WHERE cron_id = %s"
LOCK_CRON = GET_CRON + " FOR UPDATE"
UPDATE_CRON = f"""
UPDATE treadle_crons SET schedule = %s, payload = %s, metadata = %s, end_time = %s::float8,
    enabled = %s, next_run_at = %s::float8, updated_at = {_NOW}
WHERE cron_id = %s
RETURNING {CRON_COLUMNS}"""
DELETE_CRON = "DELETE FROM treadle_crons WHERE cron_id = %s"
DELETE_THREAD_CRONS = "DELETE FROM treadle_crons WHERE thread_id = %s"
SEARCH_CRONS = f"SELECT {CRON_COLUMNS} FROM treadle_crons"
COUNT_CRONS = "SELECT count(*) FROM treadle_crons"
WHERE_CRON_THREAD_ID = "thread_id = %s"
WHERE_ENABLED = "enabled = %s"
CRON_ORDER = {
    "cron_id": "cron_id" + _TEXT,
    "assistant_id": "assistant_id" + _TEXT,
    "thread_id": "thread_id" + _TEXT,
    "next_run_at": "next_run_at",
    "created_at": "created_at",
    "updated_at": "updated_at",
}
DUE_CRONS = f"""
SELECT {CRON_COLUMNS} FROM treadle_crons
WHERE enabled AND next_run_at <= %s::float8
ORDER BY next_run_at, seq LIMIT %s"""
# Compare-and-set: a concurrent advance waits for the row lock, then re-checks the WHERE
# clause against the row it committed, so only one caller moves a tick.
ADVANCE_CRON = f"""
UPDATE treadle_crons SET next_run_at = %s::float8, enabled = %s, updated_at = {_NOW}
WHERE cron_id = %s AND enabled AND next_run_at = %s::float8
RETURNING 1"""


# --- rows --------------------------------------------------------------------------------
def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=_dumps)


def _jsonb_or_null(value: Any) -> Jsonb | None:
    return None if value is None else _jsonb(value)


# Metadata is what clients filter on and every search returns: a row stored before the
# HTTP API refused too-deep JSON still reads (jsonb cannot hold NaN).
def _assistant(row: Sequence[Any]) -> Assistant:
    a = Assistant(*row)
    a.metadata = cap_depth(a.metadata)
    return a


def _thread(row: Sequence[Any]) -> Thread:
    t = Thread(*row)
    t.metadata = cap_depth(t.metadata)
    return t


def _cron(row: Sequence[Any]) -> Cron:
    c = Cron(*row)
    c.metadata = cap_depth(c.metadata)
    return c


class _Query:
    """A search's WHERE clause and parameters, from fixed fragments."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.params: list[Any] = []

    def add(self, fragment: str, *values: Any) -> None:
        self.where.append(fragment)
        self.params.extend(values)

    def json(self, fragment: str, value: dict[str, Any] | None) -> None:
        if value:  # an empty filter matches every row
            self.add(fragment, _jsonb(value), _jsonb(value))

    def sql(self, head: str) -> str:
        return head + (" WHERE " + " AND ".join(self.where) if self.where else "")

    def page(self, head: str, order: dict[str, str], sort_by: str, sort_order: str,
             limit: int, offset: int) -> tuple[str, list[Any]]:
        check_choice("sort_by", sort_by, tuple(order))
        check_choice("sort_order", sort_order, SORT_ORDERS)
        direction = _SORT[sort_order]
        sql = (self.sql(head) + f" ORDER BY {order[sort_by]} {direction} NULLS LAST, "
               f"seq {direction} LIMIT %s OFFSET %s")
        return sql, [*self.params, Int8(max(int(limit), 0)), Int8(max(int(offset), 0))]


class PostgresResources(ResourceStore):
    """The :class:`ResourceStore` part of :class:`~treadle.store.postgres.PostgresStore`."""

    # Provided by PostgresStore.
    @abc.abstractmethod
    def _with_conn(self, doing: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T: ...

    # --- helpers ---------------------------------------------------------------------
    def _row(self, doing: str, sql: str, params: Any) -> Any:
        return self._with_conn(doing, lambda conn: conn.execute(sql, params, binary=True).fetchone())

    def _rows(self, doing: str, sql: str, params: Any) -> list[Any]:
        return self._with_conn(doing, lambda conn: conn.execute(sql, params, binary=True).fetchall())

    def _changed(self, doing: str, sql: str, params: Any) -> int:
        return self._with_conn(doing, lambda conn: conn.execute(sql, params).rowcount)

    def _create(self, doing: str, insert: str, params: Any, read: str, key: str,
                if_exists: str, what: str) -> Any:
        """``insert`` (… ON CONFLICT DO NOTHING RETURNING the row); when the key exists,
        raise ConflictError or read the existing row (in a later statement, which sees it)."""
        check_choice("if_exists", if_exists, IF_EXISTS)

        def run(conn: psycopg.Connection[Any]) -> Any:
            with conn.transaction():
                row = conn.execute(insert, params, binary=True).fetchone()
                if row is None:
                    if if_exists == "raise":
                        raise ConflictError(f"{what} {key!r} exists already")
                    row = conn.execute(read, (key,), binary=True).fetchone()
                return row

        return self._with_conn(doing, run)

    def _patch(self, doing: str, lock: str, key: str,
               update: Callable[[psycopg.Connection[Any], Any], Any]) -> Any:
        """Lock the row (``lock``), then ``update(conn, row)``; None when there is no row."""

        def run(conn: psycopg.Connection[Any]) -> Any:
            with conn.transaction():
                row = conn.execute(lock, (key,), binary=True).fetchone()
                return None if row is None else update(conn, row)

        return self._with_conn(doing, run)

    def _count(self, doing: str, query: _Query, head: str) -> int:
        return int(self._row(doing, query.sql(head), query.params)[0])

    # --- assistants ----------------------------------------------------------------
    def put_assistant(self, a: Assistant, *, if_exists: str = "raise") -> Assistant:
        params = (a.assistant_id, a.graph_id, _jsonb(a.config), _jsonb(a.context),
                  _jsonb(a.metadata), a.name, a.description)
        return _assistant(self._create(f"creating assistant {a.assistant_id}", INSERT_ASSISTANT,
                                       params, GET_ASSISTANT, a.assistant_id, if_exists,
                                       "assistant"))

    def get_assistant(self, assistant_id: str) -> Assistant | None:
        row = self._row(f"reading assistant {assistant_id}", GET_ASSISTANT, (assistant_id,))
        return _assistant(row) if row else None

    def patch_assistant(
        self,
        assistant_id: str,
        *,
        graph_id: str | None = None,
        config: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> Assistant | None:
        def update(conn: psycopg.Connection[Any], row: Any) -> Any:
            new = patch_assistant_record(
                _assistant(row), graph_id=graph_id, config=config, context=context,
                metadata=metadata, name=name, description=description)
            return conn.execute(UPDATE_ASSISTANT, {
                "assistant_id": assistant_id, "graph_id": new.graph_id,
                "config": _jsonb(new.config), "context": _jsonb(new.context),
                "metadata": _jsonb(new.metadata), "name": new.name,
                "description": new.description,
            }, binary=True).fetchone()

        row = self._patch(f"updating assistant {assistant_id}", LOCK_ASSISTANT, assistant_id,
                          update)
        return _assistant(row) if row else None

    def delete_assistant(self, assistant_id: str) -> bool:
        row = self._row(f"deleting assistant {assistant_id}", DELETE_ASSISTANT,
                        {"assistant_id": assistant_id})
        return row is not None

    @staticmethod
    def _assistant_query(graph_id: str | None, name: str | None,
                         metadata: dict[str, Any] | None) -> _Query:
        query = _Query()
        if graph_id is not None:
            query.add(WHERE_GRAPH_ID, graph_id)
        if name:
            query.add(WHERE_NAME, name)
        query.json(WHERE_METADATA, metadata)
        return query

    def search_assistants(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> list[Assistant]:
        query = self._assistant_query(graph_id, name, metadata)
        sql, params = query.page(SEARCH_ASSISTANTS, ASSISTANT_ORDER, sort_by, sort_order,
                                 limit, offset)
        return [_assistant(r) for r in self._rows("searching assistants", sql, params)]

    def count_assistants(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        return self._count("counting assistants",
                           self._assistant_query(graph_id, name, metadata), COUNT_ASSISTANTS)

    def list_assistant_versions(
        self,
        assistant_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Assistant]:
        query = _Query()
        query.add(WHERE_ASSISTANT_ID, assistant_id)
        query.json(WHERE_METADATA, metadata)
        rows = self._rows(f"listing versions of assistant {assistant_id}",
                          query.sql(LIST_VERSIONS) + VERSIONS_ORDER,
                          [*query.params, Int8(max(int(limit), 0)), Int8(max(int(offset), 0))])
        return [_assistant(r) for r in rows]

    def set_latest_assistant_version(self, assistant_id: str, version: int) -> Assistant | None:
        row = self._row(f"restoring version {version} of assistant {assistant_id}",
                        RESTORE_ASSISTANT_VERSION,
                        {"assistant_id": assistant_id, "version": int(version)})
        return _assistant(row) if row else None

    # --- threads -------------------------------------------------------------------
    def put_thread(self, t: Thread, *, if_exists: str = "raise") -> Thread:
        check_choice("thread status", t.status, THREAD_STATUSES)
        params = (t.thread_id, _jsonb(t.metadata), t.status, _jsonb_or_null(t.values),
                  _jsonb(t.interrupts), _jsonb(t.config), t.error)
        return _thread(self._create(f"creating thread {t.thread_id}", INSERT_THREAD, params,
                                    GET_THREAD, t.thread_id, if_exists, "thread"))

    def get_thread(self, thread_id: str) -> Thread | None:
        row = self._row(f"reading thread {thread_id}", GET_THREAD, (thread_id,))
        return _thread(row) if row else None

    def patch_thread(
        self, thread_id: str, *, metadata: dict[str, Any] | None = None
    ) -> Thread | None:
        def update(conn: psycopg.Connection[Any], row: Any) -> Any:
            merged = merge_metadata(_thread(row).metadata, metadata)
            return conn.execute(UPDATE_THREAD_METADATA, (_jsonb(merged), thread_id),
                                binary=True).fetchone()

        row = self._patch(f"updating thread {thread_id}", LOCK_THREAD, thread_id, update)
        return _thread(row) if row else None

    def delete_thread_record(self, thread_id: str) -> bool:
        return self._changed(f"deleting thread {thread_id}", DELETE_THREAD_RECORD,
                             (thread_id,)) == 1

    @staticmethod
    def _thread_query(metadata: dict[str, Any] | None, values: dict[str, Any] | None,
                      status: str | None) -> _Query:
        query = _Query()
        query.json(WHERE_METADATA, metadata)
        query.json(WHERE_VALUES, values)
        if status is not None:
            query.add(WHERE_STATUS, status)
        return query

    def search_threads(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: str | None = None,
        ids: list[str] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> list[Thread]:
        query = self._thread_query(metadata, values, status)
        if ids is not None:
            query.add(WHERE_THREAD_IDS, [str(i) for i in ids])
        sql, params = query.page(SEARCH_THREADS, THREAD_ORDER, sort_by, sort_order, limit, offset)
        return [_thread(r) for r in self._rows("searching threads", sql, params)]

    def count_threads(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: str | None = None,
    ) -> int:
        return self._count("counting threads", self._thread_query(metadata, values, status),
                           COUNT_THREADS)

    def _thread_state_stmt(self, u: ThreadUpdate) -> tuple[str, dict[str, Any]]:
        """The statement recording ``u`` (for callers inside their own transaction)."""
        check_choice("thread status", u.status, THREAD_STATUSES)
        given = not isinstance(u.values, Unset)
        return SET_THREAD_STATE, {
            "status": u.status, "set_values": given,
            "values": _jsonb_or_null(u.values) if given else None,
            "interrupts": _jsonb(u.interrupts or {}), "error": u.error, "thread_id": u.thread_id,
        }

    def set_thread_state(
        self,
        thread_id: str,
        *,
        status: str,
        values: Any = UNSET,
        interrupts: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        check_choice("thread status", status, THREAD_STATUSES)
        given = not isinstance(values, Unset)
        return self._changed(f"recording the state of thread {thread_id}", SET_THREAD_STATE, {
            "status": status, "set_values": given,
            "values": _jsonb_or_null(values) if given else None,
            "interrupts": _jsonb(interrupts or {}), "error": error, "thread_id": thread_id,
        }) == 1

    def ensure_thread(self, thread_id: str, *, metadata: dict[str, Any] | None = None) -> Thread:
        params = (thread_id, _jsonb(metadata or {}), "idle", None, _jsonb({}), _jsonb({}), None)
        return _thread(self._create(f"creating thread {thread_id}", INSERT_THREAD, params,
                                    GET_THREAD, thread_id, "do_nothing", "thread"))

    # --- crons ---------------------------------------------------------------------
    def put_cron(self, c: Cron) -> Cron:
        params = (c.cron_id, c.assistant_id, c.thread_id, c.schedule, _jsonb(c.payload),
                  _jsonb(c.metadata), c.end_time, c.next_run_at, bool(c.enabled), c.user_id)
        return _cron(self._create(f"creating cron {c.cron_id}", INSERT_CRON, params, GET_CRON,
                                  c.cron_id, "raise", "cron"))

    def get_cron(self, cron_id: str) -> Cron | None:
        row = self._row(f"reading cron {cron_id}", GET_CRON, (cron_id,))
        return _cron(row) if row else None

    def patch_cron(
        self,
        cron_id: str,
        *,
        schedule: str | None = None,
        payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        end_time: float | None | Unset = UNSET,
        enabled: bool | None = None,
        next_run_at: float | None | Unset = UNSET,
    ) -> Cron | None:
        def update(conn: psycopg.Connection[Any], row: Any) -> Any:
            new = patch_cron_record(_cron(row), schedule=schedule, payload=payload,
                                    metadata=metadata, end_time=end_time, enabled=enabled,
                                    next_run_at=next_run_at)
            return conn.execute(UPDATE_CRON, (
                new.schedule, _jsonb(new.payload), _jsonb(new.metadata), new.end_time,
                new.enabled, new.next_run_at, cron_id), binary=True).fetchone()

        row = self._patch(f"updating cron {cron_id}", LOCK_CRON, cron_id, update)
        return _cron(row) if row else None

    def delete_cron(self, cron_id: str) -> bool:
        return self._changed(f"deleting cron {cron_id}", DELETE_CRON, (cron_id,)) == 1

    def delete_crons_of_thread(self, thread_id: str) -> int:
        return self._changed(f"deleting the crons of thread {thread_id}", DELETE_THREAD_CRONS,
                             (thread_id,))

    @staticmethod
    def _cron_query(assistant_id: str | None, thread_id: str | None) -> _Query:
        query = _Query()
        if assistant_id is not None:
            query.add(WHERE_ASSISTANT_ID, assistant_id)
        if thread_id is not None:
            query.add(WHERE_CRON_THREAD_ID, thread_id)
        return query

    def search_crons(
        self,
        *,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        enabled: bool | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> list[Cron]:
        query = self._cron_query(assistant_id, thread_id)
        if enabled is not None:
            query.add(WHERE_ENABLED, bool(enabled))
        sql, params = query.page(SEARCH_CRONS, CRON_ORDER, sort_by, sort_order, limit, offset)
        return [_cron(r) for r in self._rows("searching crons", sql, params)]

    def count_crons(self, *, assistant_id: str | None = None, thread_id: str | None = None) -> int:
        return self._count("counting crons", self._cron_query(assistant_id, thread_id),
                           COUNT_CRONS)

    def due_crons(self, now: float, limit: int = 100) -> list[Cron]:
        rows = self._rows("reading due crons", DUE_CRONS, (float(now), Int8(max(int(limit), 0))))
        return [_cron(r) for r in rows]

    def advance_cron(self, cron_id: str, expected_next: float, new_next: float | None) -> bool:
        row = self._row(f"advancing cron {cron_id}", ADVANCE_CRON,
                        (new_next, new_next is not None, cron_id, float(expected_next)))
        return row is not None
