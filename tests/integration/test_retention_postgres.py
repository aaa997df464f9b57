"""Thread TTLs and storage figures on PostgreSQL: the backend contract
(tests/retention_contract.py), two stores standing for two replicas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retention_contract import RetentionContract, SweepContract
from treadle.store import Store, open_store

pytestmark = pytest.mark.postgres


class TestPostgresRetention(RetentionContract):
    @pytest.fixture
    def store(self, pg_url: str) -> Iterator[Store]:
        s = open_store(pg_url, auto_migrate=True)
        try:
            yield s
        finally:
            s.close()

    @pytest.fixture
    def second(self, store: Store, pg_url: str) -> Iterator[Store]:
        s = open_store(pg_url)
        try:
            yield s
        finally:
            s.close()


class TestPostgresSweep(SweepContract):
    @pytest.fixture
    def url(self, pg_url: str) -> Iterator[str]:
        yield pg_url
