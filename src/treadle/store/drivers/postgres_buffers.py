"""Connections that carried a big payload are closed, not kept.

libpq grows a connection's input and output buffers to the largest message it received or
sent (to the power of two above it) and never shrinks them: a connection that once carried
a 260 MB state keeps 512 MB resident for as long as it lives. So the writer connection is
closed after a batch of :data:`RETIRE_AFTER` bytes or more, and a pooled connection after a
checkpoint read, or a run's payload or result sent or read, that big, or after the server
refused its data (what it sent may have been huge); the pool opens a fresh one.
Reconnecting costs far less than moving that much data.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import psycopg

__all__ = ["RETIRE_AFTER", "is_big", "retire_pooled", "size_of"]

#: Bytes (of a write batch's JSON, of a read's str and bytes values) from which the
#: connection that carried them is closed after use.
RETIRE_AFTER = 16 * 1024 * 1024

_retired: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


class _QuietRetired(logging.Filter):
    """psycopg_pool warns "discarding closed connection" for a connection closed before it
    came back: expected for those closed here."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(a, psycopg.Connection) and a in _retired for a in args)


logging.getLogger("psycopg.pool").addFilter(_QuietRetired())


def retire_pooled(conn: psycopg.Connection[Any]) -> None:
    """Close a pooled connection before it goes back to its pool, which replaces it."""
    _retired.add(conn)
    conn.close()


def size_of(value: Any) -> int:
    """The bytes of the str and bytes values in a row, a sequence of rows or a statement's
    parameters (lists, tuples and dicts' values are walked, without recursion; anything else
    counts 0)."""
    total, todo = 0, [value]
    while todo:
        v = todo.pop()
        if isinstance(v, (bytes, bytearray, str)):
            total += len(v)
        elif isinstance(v, (list, tuple)):
            todo.extend(v)
        elif isinstance(v, dict):
            todo.extend(v.values())
    return total


def is_big(*values: Any) -> bool:
    """Whether ``values`` (what a connection sent and received) hold RETIRE_AFTER bytes."""
    return size_of(values) >= RETIRE_AFTER
