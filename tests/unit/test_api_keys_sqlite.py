"""API keys on SQLite: the backend contract, plus the schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from api_keys_contract import ApiKeysContract
from treadle.store import open_store
from treadle.store.base import Store


class TestSqliteApiKeys(ApiKeysContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path}/k.db")
        try:
            yield s
        finally:
            s.close()


def test_migration_creates_the_keys_table_without_the_secret(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/k.db")
    try:
        _record, key = store.create_api_key("acme", "admin", "ops")
        conn = sqlite3.connect(tmp_path / "k.db")
        columns = [r[1] for r in conn.execute("PRAGMA table_info(treadle_api_keys)")]
        rows = conn.execute("SELECT * FROM treadle_api_keys").fetchall()
        conn.close()
        assert columns == ["seq", "key_id", "tenant_id", "role", "name", "hash", "created_at",
                           "revoked_at"]
        assert key.split("_", 2)[2] not in repr(rows)
        assert store.migrate() == []  # idempotent
    finally:
        store.close()
