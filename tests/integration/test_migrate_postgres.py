"""Migration phases and TREADLE_AUTO_MIGRATE on PostgreSQL (the contract:
tests/migrate_contract.py)."""

from __future__ import annotations

import psycopg
import pytest

from migrate_contract import MigrateContract
from treadle.store import Store
from treadle.store.drivers.postgres import PostgresConnector


class TestPostgresMigrations(MigrateContract):
    @pytest.fixture
    def url(self, pg_url: str) -> str:
        return pg_url

    @pytest.fixture
    def backend(self) -> str:
        return "postgres"

    def _sql(self, store: object, sql: str, *params: object) -> list[tuple[object, ...]]:
        assert isinstance(store, Store) and isinstance(store.db, PostgresConnector)
        with psycopg.connect(store.db.conninfo, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def _applied(self, store: object) -> list[int]:
        return [int(r[0]) for r in self._sql(store, "SELECT version FROM treadle_migrations")]  # type: ignore[call-overload]

    def _forget(self, store: object, version: int) -> None:
        self._sql(store, "DELETE FROM treadle_migrations WHERE version = %s", version)

    def _record(self, store: object, version: int, name: str) -> None:
        self._sql(store, "INSERT INTO treadle_migrations (version, name) VALUES (%s, %s)",
                  version, name)
