"""Chunked list values on SQLite, with and without encryption at rest (tests/chunked_contract.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from chunked_contract import ChunkedContract, put, read
from treadle.config import get_settings
from treadle.store import open_store
from treadle.store.base import Store
from treadle.store.checkpointer import TreadleSaver

KEYS = "k1:" + base64.b64encode(b"c" * 32).decode()


class TestSqliteChunked(ChunkedContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:  # type: ignore[override]
        s = open_store(f"sqlite:///{tmp_path}/c.db", auto_migrate=True)
        try:
            yield s
        finally:
            s.close()


class TestEncryptedSqliteChunked(ChunkedContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:  # type: ignore[override]
        s = open_store(f"sqlite:///{tmp_path}/e.db", settings=get_settings(encryption_keys=KEYS))
        try:
            yield s
        finally:
            s.close()


def test_no_plaintext_of_a_chunked_value_reaches_the_file(tmp_path: Path) -> None:
    db = tmp_path / "secret.db"
    store = open_store(f"sqlite:///{db}", settings=get_settings(encryption_keys=KEYS))
    saver = TreadleSaver(store)
    value: list[Any] = []
    parent = None
    for step in range(60):
        value = [*value, {"id": str(step), "text": f"MARKER-{step:04d}-secret"}]
        parent = put(saver, "enc", parent, value, step)
    assert parent is not None and read(TreadleSaver(store), "enc", parent) == value
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("secret.db"))
    assert b"MARKER-" not in raw


def test_short_lists_and_other_values_are_stored_whole(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/w.db", auto_migrate=True)
    saver = TreadleSaver(store)
    cp = empty_checkpoint()
    cp["channel_versions"] = {"a": "1", "b": "1", "c": "1"}
    cp["channel_values"] = {"a": [1, 2, 3], "b": "x" * 100, "c": {"k": list(range(50))}}
    saver.put({"configurable": {"thread_id": "w", "checkpoint_ns": ""}}, cp, {}, dict(cp["channel_versions"]))
    types = {str(r[0]) for r in store.db.all("t", "threads_chunk_rows", (["w"],))}
    assert types == set()
    got = saver.get_tuple({"configurable": {"thread_id": "w", "checkpoint_ns": ""}})
    assert got is not None and got.checkpoint["channel_values"] == cp["channel_values"]
    store.close()
