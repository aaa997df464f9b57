"""The API resources (:class:`~treadle.store.resources.ResourceStore`) on SQLite.

Every method is one short transaction on the calling thread's connection, through the
run queue's helpers (``_write``: ``BEGIN IMMEDIATE``, which serialises writers in every
process sharing the file; ``_read``: one autocommit query). JSON is stored as TEXT with
sorted keys, so equal objects have equal text: the metadata filter
(:data:`_JSON_MATCH`) compares nested values as text and top-level scalars by type and
value. Tables come from migration ``0003_resources.sql``.
"""

from __future__ import annotations

import abc
import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from treadle.errors import ConflictError
from treadle.store import jsonsafe
from treadle.store.resources import (
    ASSISTANT_SORT,
    CRON_SORT,
    IF_EXISTS,
    SORT_ORDERS,
    THREAD_SORT,
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

__all__ = ["SqliteResources"]

# --- SQL ---------------------------------------------------------------------------------
# Values are always bound; WHERE / ORDER BY are assembled from the fixed fragments below.
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"  # as sqlite_queries.NOW


def _json_match(column: str) -> str:
    """``column`` (a JSON object) has every top-level key of the bound JSON object ``?``
    with an equal value. Objects and arrays compare as (sorted-key) text; a number
    equals a number of the same value, whether integer or real. A row whose column is not
    valid JSON (``NaN`` written before the HTTP API refused it) matches nothing, and cannot
    make the search fail."""
    return f"""NOT EXISTS (SELECT 1 FROM json_each(?) f WHERE NOT EXISTS (
    SELECT 1 FROM json_each(CASE WHEN json_valid({column}) THEN {column} ELSE '{{}}' END) m
    WHERE m.key = f.key AND m.value IS f.value
      AND (m.type = f.type OR (m.type IN ('integer', 'real') AND f.type IN ('integer', 'real')))))"""


def _order(allowed: tuple[str, ...]) -> dict[str, str]:
    # Keys are the allowed sort_by values, which are also the column names.
    return {name: name for name in allowed}


_SORT = {"asc": "ASC", "desc": "DESC"}

ASSISTANT_COLUMNS = """assistant_id, graph_id, config, context, metadata, name, description,
    version, created_at, updated_at"""
INSERT_ASSISTANT = f"""
INSERT INTO treadle_assistants
    (assistant_id, graph_id, config, context, metadata, name, description)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (assistant_id) DO NOTHING
RETURNING {ASSISTANT_COLUMNS}"""
# The current record becomes the version it names (made at its updated_at).
SNAPSHOT_ASSISTANT = """
INSERT INTO treadle_assistant_versions
    (assistant_id, version, graph_id, config, context, metadata, name, description, created_at)
SELECT assistant_id, version, graph_id, config, context, metadata, name, description, updated_at
FROM treadle_assistants WHERE assistant_id = ?"""
GET_ASSISTANT = f"SELECT {ASSISTANT_COLUMNS} FROM treadle_assistants WHERE assistant_id = ?"
# ? x6 = the new fields, ? = assistant_id (the next version), ? = assistant_id
UPDATE_ASSISTANT = f"""
UPDATE treadle_assistants SET graph_id = ?, config = ?, context = ?, metadata = ?, name = ?,
    description = ?,
    version = (SELECT coalesce(max(version), 0) + 1 FROM treadle_assistant_versions
               WHERE assistant_id = ?),
    updated_at = {_NOW}
WHERE assistant_id = ?
RETURNING {ASSISTANT_COLUMNS}"""
# ? = assistant_id, ? = version
RESTORE_ASSISTANT_VERSION = f"""
UPDATE treadle_assistants SET
    (graph_id, config, context, metadata, name, description, version) = (
        SELECT graph_id, config, context, metadata, name, description, version
        FROM treadle_assistant_versions v
        WHERE v.assistant_id = treadle_assistants.assistant_id AND v.version = ?2),
    updated_at = {_NOW}
WHERE assistant_id = ?1 AND EXISTS (
    SELECT 1 FROM treadle_assistant_versions WHERE assistant_id = ?1 AND version = ?2)
RETURNING {ASSISTANT_COLUMNS}"""
DELETE_ASSISTANT_VERSIONS = "DELETE FROM treadle_assistant_versions WHERE assistant_id = ?"
DELETE_ASSISTANT = "DELETE FROM treadle_assistants WHERE assistant_id = ?"
SEARCH_ASSISTANTS = f"SELECT {ASSISTANT_COLUMNS} FROM treadle_assistants"
COUNT_ASSISTANTS = "SELECT count(*) FROM treadle_assistants"
WHERE_GRAPH_ID = "graph_id = ?"
WHERE_NAME = "instr(lower(name), lower(?)) > 0"
WHERE_METADATA = _json_match("metadata")
ASSISTANT_ORDER = _order(ASSISTANT_SORT)
LIST_VERSIONS = """
SELECT assistant_id, graph_id, config, context, metadata, name, description, version,
    created_at, created_at
FROM treadle_assistant_versions"""
WHERE_ASSISTANT_ID = "assistant_id = ?"
VERSIONS_ORDER = " ORDER BY version DESC LIMIT ? OFFSET ?"

THREAD_COLUMNS = """thread_id, metadata, status, state_values, interrupts, config, error,
    created_at, updated_at"""
INSERT_THREAD = f"""
INSERT INTO treadle_thread_records
    (thread_id, metadata, status, state_values, interrupts, config, error)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (thread_id) DO NOTHING
RETURNING {THREAD_COLUMNS}"""
GET_THREAD = f"SELECT {THREAD_COLUMNS} FROM treadle_thread_records WHERE thread_id = ?"
# ? = metadata, ? = thread_id
UPDATE_THREAD_METADATA = f"""
UPDATE treadle_thread_records SET metadata = ?, updated_at = {_NOW} WHERE thread_id = ?
RETURNING {THREAD_COLUMNS}"""
# ? = status, ? = 1 to set values, ? = values, ? = interrupts, ? = error, ? = thread_id
SET_THREAD_STATE = f"""
UPDATE treadle_thread_records SET status = ?,
    state_values = CASE WHEN ? THEN ? ELSE state_values END,
    interrupts = ?, error = ?, updated_at = {_NOW}
WHERE thread_id = ?"""
DELETE_THREAD_RECORD = "DELETE FROM treadle_thread_records WHERE thread_id = ?"
SEARCH_THREADS = f"SELECT {THREAD_COLUMNS} FROM treadle_thread_records"
COUNT_THREADS = "SELECT count(*) FROM treadle_thread_records"
WHERE_VALUES = _json_match("state_values")
WHERE_STATUS = "status = ?"
WHERE_THREAD_IDS = "thread_id IN (SELECT value FROM json_each(?))"
THREAD_ORDER = _order(THREAD_SORT)

CRON_COLUMNS = """cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time,
    next_run_at, enabled, user_id, created_at, updated_at"""
INSERT_CRON = f"""
INSERT INTO treadle_crons
    (cron_id, assistant_id, thread_id, schedule, payload, metadata, end_time, next_run_at,
     enabled, user_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (cron_id) DO NOTHING
RETURNING {CRON_COLUMNS}"""
GET_CRON = f"SELECT {CRON_COLUMNS} FROM treadle_crons WHERE cron_id = ?"
# ? x6 = the new fields, ? = cron_id
UPDATE_CRON = f"""
UPDATE treadle_crons SET schedule = ?, payload = ?, metadata = ?, end_time = ?, enabled = ?,
    next_run_at = ?, updated_at = {_NOW}
WHERE cron_id = ?
RETURNING {CRON_COLUMNS}"""
DELETE_CRON = "DELETE FROM treadle_crons WHERE cron_id = ?"
DELETE_THREAD_CRONS = "DELETE FROM treadle_crons WHERE thread_id = ?"
SEARCH_CRONS = f"SELECT {CRON_COLUMNS} FROM treadle_crons"
COUNT_CRONS = "SELECT count(*) FROM treadle_crons"
WHERE_CRON_THREAD_ID = "thread_id = ?"
WHERE_ENABLED = "enabled = ?"
CRON_ORDER = _order(CRON_SORT)
DUE_CRONS = f"""
SELECT {CRON_COLUMNS} FROM treadle_crons
WHERE enabled AND next_run_at <= ?
ORDER BY next_run_at, seq LIMIT ?"""
# ? = new next_run_at, ? = enabled after, ? = cron_id, ? = expected next_run_at
ADVANCE_CRON = f"""
UPDATE treadle_crons SET next_run_at = ?, enabled = ?, updated_at = {_NOW}
WHERE cron_id = ? AND enabled AND next_run_at = ?"""


# --- rows --------------------------------------------------------------------------------
def _dump(value: Any) -> str:
    """JSON text with sorted keys (equal objects, equal text)."""
    try:
        return json.dumps(value, default=str, sort_keys=True, separators=(",", ":"))
    except TypeError:  # keys that do not sort (int beside str): sort their JSON form
        plain = json.loads(json.dumps(value, default=str))
        return json.dumps(plain, sort_keys=True, separators=(",", ":"))


def _load(text: str | None) -> Any:
    # A row stored before the HTTP API refused NaN or too-deep JSON still reads.
    return None if text is None else jsonsafe.loads(text)


def _assistant(row: Sequence[Any]) -> Assistant:
    return Assistant(row[0], row[1], _load(row[2]), _load(row[3]), _load(row[4]), row[5], row[6],
                     row[7], row[8], row[9])


def _thread(row: Sequence[Any]) -> Thread:
    return Thread(row[0], _load(row[1]), row[2], _load(row[3]), _load(row[4]), _load(row[5]),
                  row[6], row[7], row[8])


def _cron(row: Sequence[Any]) -> Cron:
    return Cron(row[0], row[1], row[2], row[3], _load(row[4]), _load(row[5]), row[6], row[7],
                bool(row[8]), row[9], row[10], row[11])


class _Query:
    """A search's WHERE clause and parameters, from fixed fragments."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.params: list[Any] = []

    def add(self, fragment: str, value: Any) -> None:
        self.where.append(fragment)
        self.params.append(value)

    def json(self, fragment: str, value: dict[str, Any] | None) -> None:
        if value:  # an empty filter matches every row
            self.add(fragment, _dump(value))

    def sql(self, head: str) -> str:
        return head + (" WHERE " + " AND ".join(self.where) if self.where else "")

    def page(self, head: str, order: dict[str, str], sort_by: str, sort_order: str,
             limit: int, offset: int) -> tuple[str, list[Any]]:
        check_choice("sort_by", sort_by, tuple(order))
        check_choice("sort_order", sort_order, SORT_ORDERS)
        direction = _SORT[sort_order]
        sql = (self.sql(head) + f" ORDER BY {order[sort_by]} {direction} NULLS LAST, "
               f"seq {direction} LIMIT ? OFFSET ?")
        return sql, [*self.params, max(int(limit), 0), max(int(offset), 0)]


class SqliteResources(ResourceStore):
    """The :class:`ResourceStore` part of :class:`~treadle.store.sqlite.SqliteStore`."""

    # Provided by SqliteQueue.
    @abc.abstractmethod
    def _write(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...

    @abc.abstractmethod
    def _read(self, what: str, sql: str, params: Sequence[Any]) -> list[Any]: ...

    def _count(self, what: str, query: _Query, head: str) -> int:
        return int(self._read(what, query.sql(head), query.params)[0][0])

    # --- assistants ----------------------------------------------------------------
    def put_assistant(self, a: Assistant, *, if_exists: str = "raise") -> Assistant:
        check_choice("if_exists", if_exists, IF_EXISTS)
        with self._write(f"creating assistant {a.assistant_id}") as conn:
            row = conn.execute(INSERT_ASSISTANT, (
                a.assistant_id, a.graph_id, _dump(a.config), _dump(a.context), _dump(a.metadata),
                a.name, a.description)).fetchone()
            if row is not None:
                conn.execute(SNAPSHOT_ASSISTANT, (a.assistant_id,))
            elif if_exists == "raise":
                raise ConflictError(f"assistant {a.assistant_id!r} exists already")
            else:
                row = conn.execute(GET_ASSISTANT, (a.assistant_id,)).fetchone()
        return _assistant(row)

    def get_assistant(self, assistant_id: str) -> Assistant | None:
        rows = self._read(f"reading assistant {assistant_id}", GET_ASSISTANT, (assistant_id,))
        return _assistant(rows[0]) if rows else None

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
        with self._write(f"updating assistant {assistant_id}") as conn:
            row = conn.execute(GET_ASSISTANT, (assistant_id,)).fetchone()
            if row is None:
                return None
            new = patch_assistant_record(
                _assistant(row), graph_id=graph_id, config=config, context=context,
                metadata=metadata, name=name, description=description)
            row = conn.execute(UPDATE_ASSISTANT, (
                new.graph_id, _dump(new.config), _dump(new.context), _dump(new.metadata),
                new.name, new.description, assistant_id, assistant_id)).fetchone()
            conn.execute(SNAPSHOT_ASSISTANT, (assistant_id,))
        return _assistant(row)

    def delete_assistant(self, assistant_id: str) -> bool:
        with self._write(f"deleting assistant {assistant_id}") as conn:
            conn.execute(DELETE_ASSISTANT_VERSIONS, (assistant_id,))
            deleted = conn.execute(DELETE_ASSISTANT, (assistant_id,)).rowcount
        return deleted == 1

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
        return [_assistant(r) for r in self._read("searching assistants", sql, params)]

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
        rows = self._read(f"listing versions of assistant {assistant_id}",
                          query.sql(LIST_VERSIONS) + VERSIONS_ORDER,
                          [*query.params, max(int(limit), 0), max(int(offset), 0)])
        return [_assistant(r) for r in rows]

    def set_latest_assistant_version(self, assistant_id: str, version: int) -> Assistant | None:
        with self._write(f"restoring version {version} of assistant {assistant_id}") as conn:
            row = conn.execute(RESTORE_ASSISTANT_VERSION, (assistant_id, int(version))).fetchone()
        return _assistant(row) if row else None

    # --- threads -------------------------------------------------------------------
    def put_thread(self, t: Thread, *, if_exists: str = "raise") -> Thread:
        check_choice("if_exists", if_exists, IF_EXISTS)
        check_choice("thread status", t.status, THREAD_STATUSES)
        with self._write(f"creating thread {t.thread_id}") as conn:
            row = conn.execute(INSERT_THREAD, (
                t.thread_id, _dump(t.metadata), t.status,
                None if t.values is None else _dump(t.values), _dump(t.interrupts),
                _dump(t.config), t.error)).fetchone()
            if row is None:
                if if_exists == "raise":
                    raise ConflictError(f"thread {t.thread_id!r} exists already")
                row = conn.execute(GET_THREAD, (t.thread_id,)).fetchone()
        return _thread(row)

    def get_thread(self, thread_id: str) -> Thread | None:
        rows = self._read(f"reading thread {thread_id}", GET_THREAD, (thread_id,))
        return _thread(rows[0]) if rows else None

    def patch_thread(
        self, thread_id: str, *, metadata: dict[str, Any] | None = None
    ) -> Thread | None:
        with self._write(f"updating thread {thread_id}") as conn:
            row = conn.execute(GET_THREAD, (thread_id,)).fetchone()
            if row is None:
                return None
            merged = merge_metadata(_thread(row).metadata, metadata)
            row = conn.execute(UPDATE_THREAD_METADATA, (_dump(merged), thread_id)).fetchone()
        return _thread(row)

    def delete_thread_record(self, thread_id: str) -> bool:
        with self._write(f"deleting thread {thread_id}") as conn:
            return bool(conn.execute(DELETE_THREAD_RECORD, (thread_id,)).rowcount == 1)

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
            query.add(WHERE_THREAD_IDS, json.dumps([str(i) for i in ids]))
        sql, params = query.page(SEARCH_THREADS, THREAD_ORDER, sort_by, sort_order, limit, offset)
        return [_thread(r) for r in self._read("searching threads", sql, params)]

    def count_threads(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: str | None = None,
    ) -> int:
        return self._count("counting threads", self._thread_query(metadata, values, status),
                           COUNT_THREADS)

    def _thread_state_stmt(self, u: ThreadUpdate) -> tuple[str, tuple[Any, ...]]:
        """The statement recording ``u`` (for callers inside their own transaction)."""
        check_choice("thread status", u.status, THREAD_STATUSES)
        given = not isinstance(u.values, Unset)
        return SET_THREAD_STATE, (
            u.status, int(given), _dump(u.values) if given and u.values is not None else None,
            _dump(u.interrupts or {}), u.error, u.thread_id)

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
        with self._write(f"recording the state of thread {thread_id}") as conn:
            changed = conn.execute(SET_THREAD_STATE, (
                status, int(given), _dump(values) if given and values is not None else None,
                _dump(interrupts or {}), error, thread_id)).rowcount
        return bool(changed == 1)

    def ensure_thread(self, thread_id: str, *, metadata: dict[str, Any] | None = None) -> Thread:
        with self._write(f"creating thread {thread_id}") as conn:
            row = conn.execute(INSERT_THREAD, (
                thread_id, _dump(metadata or {}), "idle", None, "{}", "{}", None)).fetchone()
            if row is None:
                row = conn.execute(GET_THREAD, (thread_id,)).fetchone()
        return _thread(row)

    # --- crons ---------------------------------------------------------------------
    def put_cron(self, c: Cron) -> Cron:
        with self._write(f"creating cron {c.cron_id}") as conn:
            row = conn.execute(INSERT_CRON, (
                c.cron_id, c.assistant_id, c.thread_id, c.schedule, _dump(c.payload),
                _dump(c.metadata), c.end_time, c.next_run_at, int(c.enabled),
                c.user_id)).fetchone()
            if row is None:
                raise ConflictError(f"cron {c.cron_id!r} exists already")
        return _cron(row)

    def get_cron(self, cron_id: str) -> Cron | None:
        rows = self._read(f"reading cron {cron_id}", GET_CRON, (cron_id,))
        return _cron(rows[0]) if rows else None

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
        with self._write(f"updating cron {cron_id}") as conn:
            row = conn.execute(GET_CRON, (cron_id,)).fetchone()
            if row is None:
                return None
            new = patch_cron_record(_cron(row), schedule=schedule, payload=payload,
                                    metadata=metadata, end_time=end_time, enabled=enabled,
                                    next_run_at=next_run_at)
            row = conn.execute(UPDATE_CRON, (
                new.schedule, _dump(new.payload), _dump(new.metadata), new.end_time,
                int(new.enabled), new.next_run_at, cron_id)).fetchone()
        return _cron(row)

    def delete_cron(self, cron_id: str) -> bool:
        with self._write(f"deleting cron {cron_id}") as conn:
            return bool(conn.execute(DELETE_CRON, (cron_id,)).rowcount == 1)

    def delete_crons_of_thread(self, thread_id: str) -> int:
        with self._write(f"deleting the crons of thread {thread_id}") as conn:
            return int(conn.execute(DELETE_THREAD_CRONS, (thread_id,)).rowcount)

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
            query.add(WHERE_ENABLED, int(enabled))
        sql, params = query.page(SEARCH_CRONS, CRON_ORDER, sort_by, sort_order, limit, offset)
        return [_cron(r) for r in self._read("searching crons", sql, params)]

    def count_crons(self, *, assistant_id: str | None = None, thread_id: str | None = None) -> int:
        return self._count("counting crons", self._cron_query(assistant_id, thread_id),
                           COUNT_CRONS)

    def due_crons(self, now: float, limit: int = 100) -> list[Cron]:
        rows = self._read("reading due crons", DUE_CRONS, (float(now), max(int(limit), 0)))
        return [_cron(r) for r in rows]

    def advance_cron(self, cron_id: str, expected_next: float, new_next: float | None) -> bool:
        with self._write(f"advancing cron {cron_id}") as conn:
            changed = conn.execute(ADVANCE_CRON, (
                new_next, int(new_next is not None), cron_id, expected_next)).rowcount
        return bool(changed == 1)
