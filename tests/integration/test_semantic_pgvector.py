"""Semantic search on PostgreSQL with pgvector installed (a real PostgreSQL 16 with pgvector,
from the pgserver wheel): the backend contract, ranked in SQL by pgvector; the same ranking
and scores as treadle's own exact cosine; rows written before the extension was installed."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from semantic_contract import SemanticContract, index
from treadle.store import Store, open_store
from treadle.store.memory import TreadleStore

pytestmark = pytest.mark.postgres

TEXTS = {"a": "red apple", "b": "green apple pie", "c": "red car", "d": "apple apple red red",
         "e": "tax law"}


@pytest.fixture
def vector_store(pgvector_url: str) -> Iterator[Store]:
    store = open_store(pgvector_url, auto_migrate=True)
    try:
        yield store
    finally:
        store.close()


class TestPgvectorSemantic(SemanticContract):
    @pytest.fixture
    def store(self, vector_store: Store) -> Store:
        assert "by pgvector" in vector_store.vector_ranking()  # type: ignore[attr-defined]
        return vector_store


def _search(memory: TreadleStore) -> list[tuple[str, float | None]]:
    return [(i.key, i.score) for i in memory.search(("n",), query="red apple", limit=10)]


def test_pgvector_ranks_as_treadle_does_in_python(vector_store: Store) -> None:
    memory = TreadleStore(vector_store, index=index())
    for key, text in TEXTS.items():
        memory.put(("n",), key, {"t": text})
    memory.put(("n",), "plain", {"t": "red apple"}, index=False)  # no vector: last
    found = _search(memory)
    vector_store._vec = ""  # type: ignore[attr-defined]  # treadle's own ranking
    python = _search(memory)
    assert [k for k, _ in found] == [k for k, _ in python] and found[-1] == ("plain", None)
    assert [s for _, s in found[:-1]] == pytest.approx([s for _, s in python[:-1]], abs=1e-5)


def test_vectors_written_before_pgvector_rank_the_same(pgvector_url: str) -> None:
    with psycopg.connect(pgvector_url, autocommit=True) as conn:
        conn.execute("DROP EXTENSION vector")
    with open_store(pgvector_url, auto_migrate=True) as store:
        memory = TreadleStore(store, index=index())
        for key, text in TEXTS.items():
            memory.put(("n",), key, {"t": text})
        assert "not installed" in store.vector_ranking()  # type: ignore[attr-defined]
        before = _search(memory)
    with psycopg.connect(pgvector_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
        missing = conn.execute("SELECT count(*) FROM treadle_item_vectors "
                               "WHERE components IS NULL").fetchone()
        assert missing is not None and missing[0] == len(TEXTS)  # no second copy without it
    with open_store(pgvector_url) as store:
        memory = TreadleStore(store, index=index())
        assert "by pgvector" in store.vector_ranking()  # type: ignore[attr-defined]
        after = _search(memory)  # their bytes decoded in SQL (treadle_f32le)
        memory.put(("n",), "a", {"t": TEXTS["a"]})  # a put stores its components
        with psycopg.connect(pgvector_url, autocommit=True) as conn:
            row = conn.execute("SELECT components FROM treadle_item_vectors "
                               "WHERE key = 'a'").fetchone()
        assert row is not None and row[0] is not None
        again = _search(memory)
    assert [k for k, _ in after] == [k for k, _ in before] == [k for k, _ in again]
    assert [s for _, s in after] == pytest.approx([s for _, s in before], abs=1e-5)
    assert [s for _, s in again] == pytest.approx([s for _, s in before], abs=1e-5)


def test_the_float32_decoder_reads_what_treadle_writes(vector_store: Store) -> None:
    from treadle.store.vectors import decode, encode

    values = [0.5, -1.25, 3e-39, -7.0e-45, 1e30, 0.0, -0.0, 0.1]  # subnormals and zeros too
    data = encode(values)
    assert vector_store.db.one(  # type: ignore[attr-defined]
        "decoding", "postgres_pgvector_installed") is not None
    with vector_store.db.connect() as conn:  # type: ignore[attr-defined]
        got = conn.execute("SELECT treadle_f32le(%s)", (data,)).fetchone()[0]
    assert got == pytest.approx(list(decode(data)), rel=1e-7, abs=1e-45)
