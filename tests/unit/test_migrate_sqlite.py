"""Migration phases and TREADLE_AUTO_MIGRATE on SQLite (the contract: tests/migrate_contract.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from migrate_contract import MigrateContract
from treadle.store import Store
from treadle.store.drivers.sqlite import SqliteConnector


class TestSqliteMigrations(MigrateContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'store.db'}"

    @pytest.fixture
    def backend(self) -> str:
        return "sqlite"

    def _sql(self, store: object, sql: str, *params: object) -> list[tuple[object, ...]]:
        assert isinstance(store, Store) and isinstance(store.db, SqliteConnector)
        with sqlite3.connect(store.db.path) as conn:
            return conn.execute(sql, params).fetchall()

    def _applied(self, store: object) -> list[int]:
        return [int(r[0]) for r in self._sql(store, "SELECT version FROM treadle_migrations")]  # type: ignore[call-overload]

    def _forget(self, store: object, version: int) -> None:
        self._sql(store, "DELETE FROM treadle_migrations WHERE version = ?", version)

    def _record(self, store: object, version: int, name: str) -> None:
        self._sql(store, "INSERT INTO treadle_migrations (version, name) VALUES (?, ?)", version, name)
