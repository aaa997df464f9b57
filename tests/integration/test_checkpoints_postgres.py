"""Checkpoints and fencing on PostgreSQL: the backend contract (with LangChain's conformance)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from checkpoint_contract import CheckpointContract
from treadle.store import open_store
from treadle.store.base import Store

pytestmark = pytest.mark.postgres


class TestPostgresCheckpoints(CheckpointContract):
    @pytest.fixture
    def url(self, pg_url: str) -> str:
        return pg_url

    @pytest.fixture
    def store(self, url: str) -> Iterator[Store]:
        s = open_store(url, auto_migrate=True)
        try:
            yield s
        finally:
            s.close()
