"""Chunked list values on PostgreSQL (tests/chunked_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chunked_contract import ChunkedContract
from treadle.store import open_store
from treadle.store.base import Store

pytestmark = pytest.mark.postgres


class TestPostgresChunked(ChunkedContract):
    @pytest.fixture
    def store(self, pg_url: str) -> Iterator[Store]:  # type: ignore[override]
        s = open_store(pg_url, auto_migrate=True)
        try:
            yield s
        finally:
            s.close()
