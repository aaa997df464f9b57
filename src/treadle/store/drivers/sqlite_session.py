"""A worker's session on SQLite (:meth:`Store.worker_session`): a file lock.

SQLite is one machine, so "the worker's session ended" means "its process is gone". Each
worker holds an exclusive ``flock`` on ``<store>-workers/<key>.lock`` for its life; the
kernel drops it the moment the process dies (``kill -9``, OOM kill, a crash), exactly as
PostgreSQL ends a dead worker's session. Every claim records the key (``worker_lock``);
a sweep with ``check_sessions`` probes the keys of running claims (a probe that gets the
lock, or finds no file, means the owner is gone) and re-queues their runs at once. A
stopped-but-alive process keeps its lock, so its lease decides, as on PostgreSQL.
``flock`` locks belong to the open file, so they work across PID namespaces (containers
sharing the store's volume on one host); not on network file systems, where SQLite
itself is unsafe.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from treadle.errors import StoreError
from treadle.store.queue import WorkerSession

__all__ = ["SqliteWorkerSession", "dead_sessions", "sessions_folder"]

log = logging.getLogger(__name__)


def sessions_folder(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + "-workers")


def _lock_path(folder: Path, key: int) -> Path:
    return folder / f"{key}.lock"


class SqliteWorkerSession(WorkerSession):
    """The file lock of ``key`` in ``folder`` (see the module doc)."""

    def __init__(self, folder: Path, key: int) -> None:
        self.folder = folder
        self.key = key
        self.held_since: float | None = None
        self.reconnected = False  # a process's own lock cannot be lost while it runs
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._closed = False

    def held(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            if self._fd is not None:
                return True
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                while True:
                    fd = os.open(_lock_path(self.folder, self.key), os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:  # another live process drew this key
                        os.close(fd)
                        self.key = secrets.randbits(64) - 2**63
            except OSError as exc:
                raise StoreError(f"cannot take the worker lock in {self.folder}: {exc}") from exc
            self._fd = fd
            self.held_since = time.monotonic()
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            fd, self._fd = self._fd, None
            if fd is None:
                return
            try:
                _lock_path(self.folder, self.key).unlink(missing_ok=True)
            finally:
                os.close(fd)  # releases the lock


def dead_sessions(folder: Path, keys: Iterable[int]) -> list[int]:
    """The ``keys`` whose owner process is gone: its lock file is missing or lockable."""
    dead = []
    for key in keys:
        path = _lock_path(folder, key)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            dead.append(key)
            continue
        except OSError as exc:
            log.debug("cannot probe worker lock %s: %s", path, exc)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # held: alive
        except OSError as exc:
            log.debug("cannot probe worker lock %s: %s", path, exc)
            continue
        finally:
            os.close(fd)
        dead.append(key)
        path.unlink(missing_ok=True)
    return dead
