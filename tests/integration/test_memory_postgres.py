"""Long-term memory on PostgreSQL: the backend contract, plus concurrent writers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from langgraph.store.base import PutOp

from memory_contract import MemoryContract
from treadle.store import Store
from treadle.store.memory import TreadleStore

pytestmark = pytest.mark.postgres


class TestPostgresMemory(MemoryContract):
    @pytest.fixture
    def store(self, pg_store: Store) -> Store:
        return pg_store


def test_values_are_jsonb_objects(pg_store: Store, pg_url: str) -> None:
    TreadleStore(pg_store).put(("a", "b"), "k", {"z": 1, "a": [1, 2]})
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT namespace, key, value, jsonb_typeof(value) FROM treadle_items").fetchone()
        assert row == ("a.b", "k", {"z": 1, "a": [1, 2]}, "object")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO treadle_items (namespace, key, value) VALUES ('a', 'x', '[1]')")


def test_concurrent_batches_on_the_same_items(pg_store: Store) -> None:
    memory = TreadleStore(pg_store)

    def write(n: int) -> None:
        memory.batch([PutOp(("race", str(i % 3)), f"k{i}", {"writer": n}) for i in range(50)])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(16)))
    found = memory.search(("race",), limit=100)
    assert len(found) == 50
    # Each batch is one transaction: every item ends with the value of one whole batch.
    assert len({i.value["writer"] for i in found}) == 1
