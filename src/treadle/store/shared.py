"""One store per URL per process, shared by every graph that uses it.

Each open store holds connections and a writer; a notebook that re-runs
``treadle.compile`` a hundred times must not hold a hundred of them. Graphs acquire
the store for their URL and release it when closed (or garbage-collected); the last
release closes it. Sharing also lets the runs of several graphs share commits.
"""

from __future__ import annotations

import threading

from treadle.store import Store, open_store

__all__ = ["acquire", "release"]

_lock = threading.Lock()
_stores: dict[str, tuple[Store, int]] = {}


def acquire(url: str) -> Store:
    """The open store for ``url``, opening (and migrating) it on first use."""
    with _lock:
        entry = _stores.get(url)
        if entry is None:
            store = open_store(url)
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
