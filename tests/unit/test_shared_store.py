"""treadle.store.shared: one store per URL, closed by its last release, and a release that a
garbage collection runs inside the locked section (a finalizer of a graph) neither deadlocks
nor is lost."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from treadle.config import Settings
from treadle.store import open_store, shared


def test_a_release_from_inside_the_locked_section_is_deferred_not_deadlocked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    first, second = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    old = shared.acquire(first, settings)
    closed: list[str] = []
    real_close = type(old).close

    def close(self: Any) -> None:
        closed.append(first)
        real_close(self)

    monkeypatch.setattr(type(old), "close", close)

    def opening(url: str, **kw: Any) -> Any:
        # What a collection does while a store opens: a dropped graph's finalizer releases
        # its store, in this thread, with the lock held.
        shared.release(first)
        return open_store(url, **kw)

    monkeypatch.setattr(shared, "open_store", opening)
    done = threading.Event()
    result: list[Any] = []

    def run() -> None:
        result.append(shared.acquire(second, settings))
        done.set()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert done.wait(30), "acquire deadlocked on its own lock"
    assert closed == [first]  # the deferred release ran once the lock was let go
    assert first not in shared._stores
    shared.release(second)
    assert second not in shared._stores and result
