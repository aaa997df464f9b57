"""The audit log on PostgreSQL: the backend contract, plus TRUNCATE refused."""

from __future__ import annotations

import psycopg
import pytest

from audit_contract import AuditContract, entry
from treadle.store import Store

pytestmark = pytest.mark.postgres


class TestPostgresAudit(AuditContract):
    """The backend-independent audit contract (tests/audit_contract.py)."""

    @pytest.fixture
    def store(self, pg_store: Store) -> Store:
        return pg_store  # tests/integration/conftest.py: a migrated store on a fresh database


def test_truncate_is_refused(pg_store: Store) -> None:
    pg_store.append_audit([entry(1)])
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error, match="append-only"):
            conn.execute("TRUNCATE treadle_audit")
    assert pg_store.verify_audit().records == 1
