"""API keys on PostgreSQL: the backend contract, plus the schema."""

from __future__ import annotations

import psycopg
import pytest

from api_keys_contract import ApiKeysContract
from treadle.store import Store

pytestmark = pytest.mark.postgres


class TestPostgresApiKeys(ApiKeysContract):
    """The backend-independent API keys contract (tests/api_keys_contract.py)."""

    @pytest.fixture
    def store(self, pg_store: Store) -> Store:
        return pg_store  # tests/integration/conftest.py: a migrated store on a fresh database


def test_migration_creates_the_keys_table_without_the_secret(pg_store: Store) -> None:
    _record, key = pg_store.create_api_key("acme", "admin", "ops")
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = 'treadle_api_keys' ORDER BY ordinal_position")]
        rows = conn.execute("SELECT * FROM treadle_api_keys").fetchall()
    assert columns == ["seq", "key_id", "tenant_id", "role", "name", "hash", "created_at",
                       "revoked_at"]
    assert key.split("_", 2)[2] not in repr(rows)
    assert pg_store.migrate() == []
