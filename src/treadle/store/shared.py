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


def acquire(url: str, settings: Settings) -> Store:
    """The open store for ``url``, opening (and migrating) it on first use, as
    ``settings`` say (write linger, auto-migrate, connect timeout)."""
    with _lock:
        entry = _stores.get(url)
        if entry is None:
            store = open_store(url, settings=settings)
            _stores[url] = (store, 1)
            return store
        store, count = entry
        _stores[url] = (store, count + 1)
        return store


def release(url: str) -> None:
    """Give back one reference; the last one closes the store."""
    with _lock:
        entry = _stores.get(url)
        if entry is None:
            return
        store, count = entry
        if count > 1:
            _stores[url] = (store, count - 1)
            return
        del _stores[url]
    store.close()
