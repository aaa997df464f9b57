"""Thread TTLs and storage figures on SQLite: the backend contract (tests/retention_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from retention_contract import RetentionContract
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
