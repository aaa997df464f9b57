"""What GET /operations reads, on SQLite: the backend contract (tests/operations_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from operations_contract import OperationsContract
from treadle.store import Store, open_store


class TestSqliteOperations(OperationsContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path}/ops.db")
        try:
            yield s
        finally:
            s.close()
