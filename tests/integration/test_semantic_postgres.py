"""Semantic search on PostgreSQL: the backend contract."""

from __future__ import annotations

import pytest

from semantic_contract import SemanticContract
from treadle.store import Store

pytestmark = pytest.mark.postgres


class TestPostgresSemantic(SemanticContract):
    @pytest.fixture
    def store(self, pg_store: Store) -> Store:
        return pg_store
