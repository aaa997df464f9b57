"""The API resources on SQLite: the backend contract, plus the schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from resources_contract import ResourcesContract, assistant
from treadle.store import open_store
from treadle.store.base import Store


class TestSqliteResources(ResourcesContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path}/r.db")
        try:
            yield s
        finally:
            s.close()


def test_migration_creates_the_resource_tables(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        assert store.schema_version() >= 3
        conn = sqlite3.connect(tmp_path / "r.db")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"treadle_assistants", "treadle_assistant_versions", "treadle_thread_records",
                "treadle_crons"} <= tables
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO treadle_thread_records (thread_id, status) VALUES ('t', 'x')")
        conn.close()
        assert store.migrate() == []  # idempotent
    finally:
        store.close()


def test_json_is_stored_with_sorted_keys(tmp_path: Path) -> None:
    """Equal objects must have equal text: the metadata filter compares nested values as text."""
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        store.put_assistant(assistant("a1", metadata={"b": {"z": 1, "y": 2}, "a": 1, 3: "int key"}))
        conn = sqlite3.connect(tmp_path / "r.db")
        (text,) = conn.execute("SELECT metadata FROM treadle_assistants").fetchone()
        conn.close()
        assert text == '{"3":"int key","a":1,"b":{"y":2,"z":1}}'
        assert store.count_assistants(metadata={"b": {"y": 2, "z": 1}}) == 1
    finally:
        store.close()
