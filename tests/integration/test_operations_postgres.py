"""What GET /operations reads, on PostgreSQL: the backend contract (tests/operations_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from operations_contract import OperationsContract
from treadle.store import Store, open_store

pytestmark = pytest.mark.postgres


class TestPostgresOperations(OperationsContract):
    @pytest.fixture
    def store(self, pg_url: str) -> Iterator[Store]:
        s = open_store(pg_url, auto_migrate=True)
        try:
            yield s
        finally:
            s.close()
