"""The audit log on PostgreSQL: the backend contract, plus TRUNCATE refused."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from audit_contract import AuditContract, entry
from treadle.store import Store, open_store

pytestmark = pytest.mark.postgres


class TestPostgresAudit(AuditContract):
    """The backend-independent audit contract (tests/audit_contract.py)."""

    @pytest.fixture
    def store(self, pg_url: str) -> Iterator[Store]:
        store = open_store(pg_url, auto_migrate=True)
        try:
            yield store
        finally:
            store.close()


def test_truncate_is_refused(pg_store: Store) -> None:
    pg_store.append_audit([entry(1)])
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error, match="append-only"):
            conn.execute("TRUNCATE treadle_audit")
    assert pg_store.verify_audit().records == 1
