"""Semantic search on SQLite: the backend contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from semantic_contract import SemanticContract
from treadle.store import open_store
from treadle.store.base import Store


class TestSqliteSemantic(SemanticContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path}/m.db")
        try:
            yield s
        finally:
            s.close()
