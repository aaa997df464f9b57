"""Checkpoints and fencing on SQLite: the backend contract (with LangChain's conformance)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from checkpoint_contract import CheckpointContract
from treadle.store import open_store
from treadle.store.base import Store


class TestSqliteCheckpoints(CheckpointContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/c.db"

    @pytest.fixture
    def store(self, url: str) -> Iterator[Store]:
        s = open_store(url, auto_migrate=True)
        try:
            yield s
        finally:
            s.close()
