"""Fixtures for the store integration tests (``pg_url`` comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from treadle.store import Store, open_store


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    """A migrated PostgreSQL store on a fresh database."""
    store = open_store(pg_url, linger=0.002, auto_migrate=True)
    try:
        yield store
    finally:
        store.close()
