"""One store per URL per process, shared by every graph that uses it.

Each open store holds connections and a writer; a notebook that re-runs
``treadle.compile`` a hundred times must not hold a hundred of them. Graphs acquire
the store for their URL and release it when closed (or garbage-collected); the last
release closes it. Sharing also lets the runs of several graphs share commits.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from treadle.store import Store, open_store

if TYPE_CHECKING:
    from treadle.config import Settings

__all__ = ["acquire", "release"]

_lock = threading.Lock()
_stores: dict[str, tuple[Store, int]] = {}
# A graph garbage-collected while this thread holds _lock (opening a store allocates, and a
# collection runs finalizers right there) releases its store from inside the locked section:
# waiting for _lock would deadlock, so that release is deferred until the lock is let go.
_owner: int | None = None
_deferred: list[str] = []


def acquire(url: str, settings: Settings) -> Store:
    """The open store for ``url``, opening (and migrating) it on first use, as
    ``settings`` say (write linger, auto-migrate, connect timeout)."""
    global _owner
    try:
        with _lock:
            _owner = threading.get_ident()
            try:
                entry = _stores.get(url)
                if entry is None:
                    store = open_store(url, settings=settings)
                    _stores[url] = (store, 1)
                    return store
                store, count = entry
                _stores[url] = (store, count + 1)
                return store
            finally:
                _owner = None
    finally:
        _release_deferred()


def release(url: str) -> None:
    """Give back one reference; the last one closes the store."""
    global _owner
    if _owner == threading.get_ident():  # a finalizer run inside this thread's locked section
        _deferred.append(url)
        return
    closing = None
    try:
        with _lock:
            _owner = threading.get_ident()
            try:
                entry = _stores.get(url)
                if entry is not None:
                    store, count = entry
                    if count > 1:
                        _stores[url] = (store, count - 1)
                    else:
                        del _stores[url]
                        closing = store
            finally:
                _owner = None
        if closing is not None:
            closing.close()
    finally:
        _release_deferred()


def _release_deferred() -> None:
    while _deferred:
        try:
            url = _deferred.pop()
        except IndexError:  # another thread took the last one
            return
        release(url)
