"""Long-term memory on SQLite: the backend contract, plus what only a shared file shows."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory_contract import MemoryContract
from treadle.store import open_store
from treadle.store.base import Store
from treadle.store.memory import TreadleStore


class TestSqliteMemory(MemoryContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path}/m.db")
        try:
            yield s
        finally:
            s.close()


def test_items_are_shared_by_every_store_on_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    with open_store(url) as one, open_store(url) as two:
        TreadleStore(one).put(("shared",), "k", {"v": 1})
        item = TreadleStore(two).get(("shared",), "k")
        assert item is not None and item.value == {"v": 1}
    with open_store(url) as again:
        assert TreadleStore(again).get(("shared",), "k") is not None


def test_values_are_stored_as_json_text_with_sorted_keys(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/m.db") as store:
        TreadleStore(store).put(("a", "b"), "k", {"z": 1, "a": {"y": 2, "b": "é"}})
    conn = sqlite3.connect(tmp_path / "m.db")
    row = conn.execute("SELECT namespace, labels, key, value FROM treadle_items").fetchone()
    assert row == ("a.b", '["a","b"]', "k", '{"a":{"b":"é","y":2},"z":1}')
    # The table refuses anything but a JSON object.
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO treadle_items VALUES ('a', '[\"a\"]', 'x', '[1]', 0, 0, NULL, NULL)")
