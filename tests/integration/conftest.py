"""Fixtures for the store integration tests (``pg_url`` comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from treadle.store.postgres import PostgresStore


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    """A migrated PostgresStore on a fresh database."""
    store = PostgresStore(pg_url, linger=0.002)
    try:
        yield store
    finally:
        store.close()
