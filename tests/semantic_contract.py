"""Semantic search in the memory store (langgraph.json ``store.index``;
``treadle.store.vectors``), for every backend.

A backend's test module subclasses :class:`SemanticContract` and provides a function-scoped
``store`` fixture yielding a fresh, migrated, empty store (as for ``MemoryContract``). The
embedder is the hashed bag of words of tests/e2e/semantic_graphs/embed.py, loaded the way
langgraph.json names it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from langgraph.store.base import PutOp, SearchOp

from treadle.errors import InputError
from treadle.graphs.store_index import load_index
from treadle.store.base import Store
from treadle.store.connector import Sql
from treadle.store.memory import TreadleStore
from treadle.store.vectors import SemanticIndex

EMBED = Path(__file__).parent / "e2e" / "semantic_graphs" / "embed.py"
NS = ("users", "u1")


def index(fn: str = "embed", fields: list[str] | None = None) -> SemanticIndex:
    spec: dict[str, object] = {"dims": 64, "embed": f"{EMBED}:{fn}"}
    if fields is not None:
        spec["fields"] = fields
    found = load_index(spec)
    assert found is not None
    return found


def vector_rows(store: Store) -> int:
    row = store.db.one("counting vectors", Sql("SELECT count(*) FROM treadle_item_vectors"))
    assert row is not None
    return int(row[0])


class SemanticContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("a backend's test module provides the store fixture")

    @pytest.fixture
    def memory(self, store: Store) -> TreadleStore:
        return TreadleStore(store, index=index())

    def test_a_query_ranks_by_cosine_with_scores(self, memory: TreadleStore) -> None:
        memory.put(NS, "dogs", {"text": "I like dogs and cats"})
        memory.put(NS, "tax", {"text": "tax law and accounting rules"})
        memory.put(NS, "bark", {"text": "dogs bark at night"})
        found = memory.search(NS, query="dogs bark")
        assert [i.key for i in found] == ["bark", "dogs", "tax"]
        scores = [i.score for i in found]
        assert all(s is not None for s in scores)
        assert scores[0] > scores[1] > scores[2]  # type: ignore[operator]
        assert scores[2] == pytest.approx(0.0, abs=1e-6)
        # Without a query: no score, most recently updated first, as before (two puts in the
        # same clock tick tie, and the tie goes by key).
        plain = memory.search(NS)
        assert {i.key for i in plain} == {"bark", "tax", "dogs"}
        assert [i.key for i in plain] == [
            i.key for i in sorted(plain, key=lambda i: (-i.updated_at.timestamp(), i.key))]
        assert [i.updated_at for i in plain] == sorted((i.updated_at for i in plain), reverse=True)
        assert {i.score for i in plain} == {None}

    def test_filter_limit_and_offset_apply_to_ranked_results(self, memory: TreadleStore) -> None:
        for n, text in enumerate(["red apple", "red apple pie", "green apple", "red car"]):
            memory.put(NS, f"k{n}", {"text": text, "n": n})
        memory.put(("other",), "x", {"text": "red apple"})
        ranked = [i.key for i in memory.search(NS, query="red apple pie", limit=10)]
        assert ranked[0] == "k1" and set(ranked) == {"k0", "k1", "k2", "k3"}
        assert [i.key for i in memory.search(NS, query="red apple pie", limit=2)] == ranked[:2]
        assert [i.key for i in memory.search(NS, query="red apple pie", limit=2, offset=1)] \
            == ranked[1:3]
        assert [i.key for i in memory.search(NS, query="red apple pie",
                                             filter={"n": {"$gte": 2}})] == \
            [k for k in ranked if k in ("k2", "k3")]

    def test_fields_and_the_put_index_argument(self, store: Store) -> None:
        memory = TreadleStore(store, index=index(fields=["title"]))
        memory.put(NS, "a", {"title": "gardening tips", "body": "taxes"})
        memory.put(NS, "b", {"title": "taxes", "body": "gardening"})
        memory.put(NS, "c", {"title": "gardening", "body": "x"}, index=False)
        memory.put(NS, "d", {"title": "x", "body": "gardening"}, index=["body"])
        found = memory.search(NS, query="gardening")
        scored = [i.key for i in found if i.score is not None and i.score > 0]
        assert set(scored) == {"a", "d"}
        by_key = {i.key: i for i in found}
        assert by_key["c"].score is None  # not indexed: listed after the scored items
        assert [i.key for i in found][-1] == "c"

    def test_a_put_re_embeds_and_a_delete_removes_vectors(self, store: Store,
                                                          memory: TreadleStore) -> None:
        memory.put(NS, "a", {"text": "dogs"})
        memory.put(NS, "b", {"text": "cats"})
        assert memory.search(NS, query="dogs")[0].key == "a"
        memory.put(NS, "a", {"text": "cats"})
        memory.put(NS, "b", {"text": "dogs"})
        assert memory.search(NS, query="dogs")[0].key == "b"
        assert vector_rows(store) == 2
        memory.put(NS, "b", {"text": "dogs"}, index=False)
        assert vector_rows(store) == 1
        memory.delete(NS, "a")
        assert vector_rows(store) == 0

    def test_a_ttl_sweep_removes_vectors(self, store: Store, memory: TreadleStore) -> None:
        memory.put(NS, "brief", {"text": "dogs"}, ttl=0.005)
        memory.put(NS, "kept", {"text": "dogs"})
        assert vector_rows(store) == 2
        time.sleep(0.6)
        assert [i.key for i in memory.search(NS, query="dogs")] == ["kept"]
        assert memory.sweep_expired() == 1
        assert vector_rows(store) == 1

    def test_async_embedder_and_batches(self, store: Store) -> None:
        memory = TreadleStore(store, index=index("aembed"))

        async def go() -> list[str]:
            await memory.abatch([PutOp(NS, "a", {"t": "blue sky"}),
                                 PutOp(NS, "b", {"t": "green grass"})])
            found = await memory.asearch(NS, query="green")
            return [i.key for i in found]

        assert asyncio.run(go())[0] == "b"
        # One batch: the search sees the store as before the batch's puts.
        results = TreadleStore(store, index=index()).batch(
            [SearchOp(NS, query="sky"), PutOp(NS, "c", {"t": "sky sky"})])
        assert [i.key for i in results[0]] == ["a", "b"]  # type: ignore[union-attr]

    def test_a_vector_of_the_wrong_size_is_refused(self, store: Store) -> None:
        idx = index()
        wrong = SemanticIndex(32, idx.embeddings, idx.fields)
        with pytest.raises(InputError, match="dims is 32"):
            TreadleStore(store, index=wrong).put(NS, "a", {"t": "x"})
        assert TreadleStore(store).get(NS, "a") is None  # nothing half-written

    def test_without_an_index_query_and_index_are_ignored(self, store: Store) -> None:
        memory = TreadleStore(store)
        memory.put(NS, "a", {"t": "dogs"}, index=["t"])
        assert [(i.key, i.score) for i in memory.search(NS, query="dogs")] == [("a", None)]
        assert vector_rows(store) == 0

    def test_the_ranking_is_reported(self, store: Store) -> None:
        said = store.vector_ranking()
        assert said.startswith("exact cosine computed")
        assert ("pgvector" in said) or ("sqlite" in said)
