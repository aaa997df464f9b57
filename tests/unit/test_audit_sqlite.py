"""The audit log on SQLite: the backend contract, plus the schema's triggers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_contract import AuditContract, entry
from treadle.store import open_store
from treadle.store.base import Store


class TestSqliteAudit(AuditContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path}/a.db", auto_migrate=True)
        try:
            yield s
        finally:
            s.close()


def test_another_connection_cannot_edit_the_file_without_dropping_triggers(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a.db", auto_migrate=True)
    try:
        store.append_audit([entry(1)])
        conn = sqlite3.connect(tmp_path / "a.db")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE treadle_audit SET outcome = '500'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM treadle_audit")
        conn.close()
        assert store.verify_audit().ok
    finally:
        store.close()
