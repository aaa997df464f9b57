"""Thread TTLs and storage figures on SQLite: the backend contract (tests/retention_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from retention_contract import RetentionContract, SweepContract
from treadle.store import Store, open_store


class TestSqliteRetention(RetentionContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path}/ttl.db")
        try:
            yield s
        finally:
            s.close()

    @pytest.fixture
    def second(self, store: Store, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path}/ttl.db")
        try:
            yield s
        finally:
            s.close()


class TestSqliteSweep(SweepContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> Iterator[str]:
        yield f"sqlite:///{tmp_path}/sweep.db"
