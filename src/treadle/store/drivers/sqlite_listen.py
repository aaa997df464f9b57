"""Change detection for SQLite stores (:meth:`Store.listener`), which have no LISTEN/NOTIFY.

A :class:`SqliteChangeListener` holds one dedicated connection and asks it for
``PRAGMA data_version`` every ``tick`` seconds: SQLite changes that number whenever another
connection (of this process or of any other) commits. It cannot say what changed, so it
reports :data:`~treadle.store.queue.CHANNEL_CHANGED` alone, and whoever waits decides what
to read again (:mod:`treadle.cluster.waiters` reads every waited run in one query). One
listener serves a whole process (:class:`treadle.cluster.notify.Notifier`), and only while
someone waits on it, so an idle process asks nothing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

from treadle.store.queue import CHANNEL_CHANGED, Listener

__all__ = ["TICK", "SqliteChangeListener"]

#: Seconds between two looks at ``data_version`` (each a few microseconds).
TICK = 0.02


class SqliteChangeListener(Listener):
    """Reports ``(CHANNEL_CHANGED, "")`` after any commit by another connection.

    ``pushes`` is False: it never says which run or channel changed. A failing connection
    is dropped and reopened on a later call (a wait then reports a change, so callers
    re-read rather than miss one)."""

    pushes = False

    def __init__(self, connect: Callable[[], sqlite3.Connection], tick: float = TICK) -> None:
        self._connect = connect
        self.tick = tick
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._closed = False
        self.looks = 0  # data_version reads so far (tests count them)

    def _look(self) -> bool:
        """Whether the database changed since the previous look."""
        try:
            if self._conn is None:
                self._conn = self._connect()
            row = self._conn.execute("PRAGMA data_version").fetchone()
        except Exception:  # reopened next time; say "changed" meanwhile
            if self._conn is not None:
                self._conn.close()
            self._conn, self._version = None, None
            return True
        self.looks += 1
        version = int(row[0])
        changed = self._version is not None and version != self._version
        self._version = version
        return changed

    def wait(self, timeout: float) -> list[tuple[str, str]]:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            while not self._closed:
                if self._look():
                    return [(CHANNEL_CHANGED, "")]
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(self.tick, left))
        return []

    def close(self) -> None:
        self._closed = True
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
