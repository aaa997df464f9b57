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


def test_an_encrypted_store_refuses_indexed_puts(tmp_path: Path) -> None:
    from langgraph.store.base import PutOp

    from semantic_contract import index
    from treadle.config import get_settings
    from treadle.errors import InputError
    from treadle.store.cipher import generate_key
    from treadle.store.memory import TreadleStore

    settings = get_settings(encryption_keys=f"k1:{generate_key()}")
    with open_store(f"sqlite:///{tmp_path}/e.db", settings=settings) as store:
        memory = TreadleStore(store, index=index())
        with pytest.raises(InputError, match="encryption at rest is on"):
            memory.batch([PutOp(("n",), "a", {"t": "secret words"})])
        assert memory.get(("n",), "a") is None  # nothing half-written
        memory.put(("n",), "b", {"t": "x"}, index=False)  # not indexed: stored, encrypted
        assert memory.get(("n",), "b") is not None
