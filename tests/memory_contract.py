"""The long-term memory contract (``treadle.store.items.ItemStore`` behind
``treadle.store.memory.TreadleStore``), for every backend.

A backend's test module subclasses :class:`MemoryContract` and provides a function-scoped
``store`` fixture yielding a fresh, migrated, empty store::

    from memory_contract import MemoryContract

    class TestSqliteMemory(MemoryContract):
        @pytest.fixture
        def store(self, tmp_path):
            ...

TTLs are minutes; tests that watch one expire use a few milliseconds' worth and sleep
past it. The backend's clock is the database's, which is this machine's in tests.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import pytest
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)

from treadle.errors import InputError, StoreDataError
from treadle.store.base import Store
from treadle.store.items import (
    ItemRow,
    ItemSearch,
    ItemWrite,
    NamespaceMatch,
    NamespaceQuery,
    parse_filter,
)
from treadle.store.memory import TreadleStore

SHORT_TTL = 0.005  # minutes: 300 ms
EXPIRE = 0.6  # seconds: sleep this long to see SHORT_TTL expire


def keys(items: object) -> list[str]:
    """The keys of a list of items (a search's answer, or a batch's result for one)."""
    assert isinstance(items, list)
    return [i.key for i in items]


def as_item(result: object) -> Item:
    """A batch's result for a get that found its item."""
    assert isinstance(result, Item)
    return result


def value_of(memory: BaseStore, namespace: tuple[str, ...], key: str) -> dict[str, Any]:
    """The value of the item at ``namespace``/``key`` (which must be there)."""
    item = memory.get(namespace, key)
    assert item is not None
    return item.value


def expiry(row: ItemRow | None) -> float:
    """When ``row`` expires (it must be there, with a TTL)."""
    assert row is not None and row.expires_at is not None
    return row.expires_at


def tick() -> None:
    """Let the database clock move on, so the next write has a later updated_at."""
    time.sleep(0.005)


class MemoryContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("a backend's test module provides the store fixture")

    @pytest.fixture
    def memory(self, store: Store) -> TreadleStore:
        return TreadleStore(store)

    # --- put / get / delete -------------------------------------------------------------
    def test_put_then_get_returns_the_item(self, memory: TreadleStore) -> None:
        before = datetime.now(UTC) - timedelta(seconds=5)
        value = {"name": "Ada", "tags": ["a", "b"], "nested": {"z": 1, "a": None}, "n": 1.5,
                 "text": "héllo ✓", "ok": True}
        memory.put(("users", "u1"), "profile", value)
        item = memory.get(("users", "u1"), "profile")
        assert item is not None
        assert item.namespace == ("users", "u1") and item.key == "profile"
        assert item.value == value
        assert item.created_at == item.updated_at
        assert item.created_at.tzinfo is not None
        assert before < item.created_at < datetime.now(UTC) + timedelta(seconds=5)

    def test_get_of_a_missing_item_is_none(self, memory: TreadleStore) -> None:
        memory.put(("users", "u1"), "a", {"x": 1})
        assert memory.get(("users", "u1"), "b") is None
        assert memory.get(("users",), "a") is None
        assert memory.get(("users", "u1", "deeper"), "a") is None

    def test_put_replaces_the_value_and_keeps_created_at(self, memory: TreadleStore) -> None:
        memory.put(("n",), "k", {"v": 1, "gone": True})
        first = memory.get(("n",), "k")
        tick()
        memory.put(("n",), "k", {"v": 2})
        second = memory.get(("n",), "k")
        assert first is not None and second is not None
        assert second.value == {"v": 2}
        assert second.created_at == first.created_at
        assert second.updated_at > first.updated_at

    def test_delete_removes_the_item_and_ignores_missing_ones(self, memory: TreadleStore) -> None:
        memory.put(("n",), "k", {"v": 1})
        memory.put(("n",), "other", {"v": 2})
        memory.delete(("n",), "k")
        memory.delete(("n",), "never-there")
        memory.delete(("elsewhere",), "k")
        assert memory.get(("n",), "k") is None
        assert memory.get(("n",), "other") is not None

    def test_namespaces_and_keys_are_exact(self, memory: TreadleStore) -> None:
        odd = ("50%_off", "*", "ünï", "a b")
        memory.put(odd, "k/with:odd chars", {"v": 1})
        memory.put(("50%_off",), "k/with:odd chars", {"v": 2})
        item = memory.get(odd, "k/with:odd chars")
        assert item is not None and item.namespace == odd and item.value == {"v": 1}
        assert value_of(memory, ("50%_off",), "k/with:odd chars") == {"v": 2}
        assert memory.get(("50X_off", "*", "ünï", "a b"), "k/with:odd chars") is None

    # --- validation ---------------------------------------------------------------------
    @pytest.mark.parametrize("namespace", [("a.b",), ("a", ""), ("a", "b\x00")])
    def test_bad_namespace_labels_are_refused(self, memory: TreadleStore,
                                              namespace: tuple[str, ...]) -> None:
        with pytest.raises(InvalidNamespaceError):
            memory.put(namespace, "k", {"v": 1})
        with pytest.raises(InvalidNamespaceError):
            memory.get(namespace, "k")
        with pytest.raises(InvalidNamespaceError):
            memory.search(namespace)
        with pytest.raises(InvalidNamespaceError):
            memory.batch([PutOp(namespace, "k", {"v": 1})])

    def test_empty_and_reserved_namespaces_cannot_be_written(self, memory: TreadleStore) -> None:
        with pytest.raises(InvalidNamespaceError):
            memory.put((), "k", {"v": 1})
        with pytest.raises(InvalidNamespaceError):
            memory.batch([PutOp((), "k", {"v": 1})])
        with pytest.raises(InvalidNamespaceError):
            memory.batch([PutOp(("langgraph", "x"), "k", {"v": 1})])

    @pytest.mark.parametrize("value", [[1, 2], "text", 3, {"bad": math.nan}, {"bad": object()}])
    def test_values_must_be_json_objects(self, memory: TreadleStore, value: Any) -> None:
        with pytest.raises(InputError):
            memory.put(("n",), "k", value)
        assert memory.get(("n",), "k") is None

    @pytest.mark.parametrize("ttl", [0, -1, math.inf, math.nan])
    def test_ttl_must_be_positive_minutes(self, memory: TreadleStore, ttl: float) -> None:
        with pytest.raises(InputError, match="ttl"):
            memory.put(("n",), "k", {"v": 1}, ttl=ttl)

    @pytest.mark.parametrize("limit, offset", [(-1, 0), (10, -1)])
    def test_negative_paging_is_refused(self, memory: TreadleStore, limit: int, offset: int) -> None:
        with pytest.raises(InputError):
            memory.search(("n",), limit=limit, offset=offset)
        with pytest.raises(InputError):
            memory.list_namespaces(limit=limit, offset=offset)

    # --- batches --------------------------------------------------------------------------
    def test_batch_results_follow_the_ops(self, memory: TreadleStore) -> None:
        memory.put(("a",), "1", {"v": 1})
        memory.put(("b",), "2", {"v": 2})
        results = memory.batch([
            GetOp(("a",), "1"),
            SearchOp(("b",)),
            GetOp(("a",), "missing"),
            ListNamespacesOp(),
            PutOp(("c",), "3", {"v": 3}),
            GetOp(("a",), "1"),
        ])
        assert len(results) == 6
        assert as_item(results[0]).value == {"v": 1}
        assert keys(results[1]) == ["2"]
        assert results[2] is None
        assert results[3] == [("a",), ("b",)]
        assert results[4] is None
        assert results[5] == results[0]

    def test_reads_in_a_batch_see_the_store_before_its_writes(self, memory: TreadleStore) -> None:
        memory.put(("n",), "k", {"v": "old"})
        results = memory.batch([
            PutOp(("n",), "k", {"v": "new"}),
            GetOp(("n",), "k"),
            PutOp(("n",), "fresh", {"v": 1}),
            SearchOp(("n",)),
        ])
        assert as_item(results[1]).value == {"v": "old"}
        assert keys(results[3]) == ["k"]
        assert value_of(memory, ("n",), "k") == {"v": "new"}
        assert memory.get(("n",), "fresh") is not None

    def test_the_last_write_of_an_item_in_a_batch_wins(self, memory: TreadleStore) -> None:
        memory.put(("n",), "deleted-then-put", {"v": 0})
        memory.batch([
            PutOp(("n",), "k", {"v": 1}),
            PutOp(("n",), "k", {"v": 2}),
            PutOp(("n",), "put-then-deleted", {"v": 1}),
            PutOp(("n",), "put-then-deleted", None),
            PutOp(("n",), "deleted-then-put", None),
            PutOp(("n",), "deleted-then-put", {"v": 3}),
        ])
        assert value_of(memory, ("n",), "k") == {"v": 2}
        assert memory.get(("n",), "put-then-deleted") is None
        assert value_of(memory, ("n",), "deleted-then-put") == {"v": 3}

    def test_a_batch_with_a_bad_op_writes_nothing(self, memory: TreadleStore) -> None:
        with pytest.raises(InputError):
            memory.batch([
                PutOp(("n",), "good", {"v": 1}),
                SearchOp(("n",), filter={"v": {"$nope": 1}}),
            ])
        with pytest.raises(InputError):
            memory.batch([PutOp(("n",), "good", {"v": 1}), PutOp(("n",), "bad", [1])])  # type: ignore[arg-type]
        assert memory.get(("n",), "good") is None

    def test_many_writes_in_one_batch(self, memory: TreadleStore) -> None:
        memory.batch([PutOp(("bulk", str(i % 7)), f"k{i}", {"i": i}) for i in range(500)])
        assert len(memory.search(("bulk",), limit=1000)) == 500
        got = memory.batch([GetOp(("bulk", str(i % 7)), f"k{i}") for i in range(500)])
        assert [as_item(g).value["i"] for g in got] == list(range(500))
        memory.batch([PutOp(("bulk", str(i % 7)), f"k{i}", None) for i in range(0, 500, 2)])
        assert len(memory.search(("bulk",), limit=1000)) == 250

    def test_async_methods(self, memory: TreadleStore) -> None:
        async def scenario() -> None:
            await memory.aput(("a", "b"), "k", {"v": 1})
            item = await memory.aget(("a", "b"), "k")
            assert item is not None and item.value == {"v": 1}
            assert keys(await memory.asearch(("a",))) == ["k"]
            assert await memory.alist_namespaces(prefix=("a",)) == [("a", "b")]
            await memory.adelete(("a", "b"), "k")
            assert await memory.aget(("a", "b"), "k") is None
            results = await memory.abatch([PutOp(("x",), "1", {"v": 1}), GetOp(("x",), "1")])
            assert results == [None, None]
            assert await memory.asweep_expired() == 0

        asyncio.run(scenario())

    # --- search -----------------------------------------------------------------------------
    def test_search_matches_whole_labels_of_the_prefix(self, memory: TreadleStore) -> None:
        for ns in [("a",), ("a", "b"), ("a", "b", "c"), ("ab",), ("a-b",), ("a!",), ("b", "a")]:
            memory.put(ns, "k", {"ns": list(ns)})
        found = {i.namespace for i in memory.search(("a",), limit=100)}
        assert found == {("a",), ("a", "b"), ("a", "b", "c")}
        found = {i.namespace for i in memory.search(("a", "b"), limit=100)}
        assert found == {("a", "b"), ("a", "b", "c")}
        assert len(memory.search((), limit=100)) == 7

    def test_search_returns_the_most_recently_updated_first_and_pages(
        self, memory: TreadleStore
    ) -> None:
        for i in range(5):
            memory.put(("n",), f"k{i}", {"i": i})
            tick()
        memory.put(("n",), "k1", {"i": 10})
        assert keys(memory.search(("n",))) == ["k1", "k4", "k3", "k2", "k0"]
        assert keys(memory.search(("n",), limit=2)) == ["k1", "k4"]
        assert keys(memory.search(("n",), limit=2, offset=2)) == ["k3", "k2"]
        assert keys(memory.search(("n",), offset=4)) == ["k0"]
        assert memory.search(("n",), offset=5) == []
        assert memory.search(("n",), limit=0) == []

    def test_search_items_carry_their_fields(self, memory: TreadleStore) -> None:
        memory.put(("n", "m"), "k", {"v": 1})
        (found,) = memory.search(("n",))
        item = memory.get(("n", "m"), "k")
        assert item is not None
        assert (found.namespace, found.key, found.value) == (("n", "m"), "k", {"v": 1})
        assert (found.created_at, found.updated_at) == (item.created_at, item.updated_at)
        assert found.score is None

    def test_a_search_query_is_ignored_without_an_index(self, memory: TreadleStore) -> None:
        memory.put(("n",), "a", {"text": "apples"})
        memory.put(("n",), "b", {"text": "pears"})
        found = memory.search(("n",), query="something else entirely", filter={"text": "pears"})
        assert keys(found) == ["b"]
        assert len(memory.search(("n",), query="anything")) == 2

    # --- filters ------------------------------------------------------------------------------
    @pytest.fixture
    def catalog(self, memory: TreadleStore) -> TreadleStore:
        rows: dict[str, dict[str, Any]] = {
            "int3": {"n": 3, "s": "b", "flag": True, "obj": {"x": 1, "y": [1, 2]}, "arr": [1, "a"]},
            "float3": {"n": 3.0, "s": "a", "flag": False, "obj": {"x": 2}},
            "float4.5": {"n": 4.5, "s": "c", "flag": None},
            "str": {"n": "3", "s": "B"},
            "bool": {"n": True, "s": "é"},
            "null": {"n": None},
            "none": {"other": 1},
        }
        for key, value in rows.items():
            memory.put(("cat",), key, value)
        return memory

    def find(self, memory: TreadleStore, filter: dict[str, Any]) -> set[str]:
        return set(keys(memory.search(("cat",), filter=filter, limit=100)))

    def test_equality_compares_json_values(self, catalog: TreadleStore) -> None:
        assert self.find(catalog, {"n": 3}) == {"int3", "float3"}  # numbers by value
        assert self.find(catalog, {"n": 3.0}) == {"int3", "float3"}
        assert self.find(catalog, {"n": {"$eq": 3}}) == {"int3", "float3"}
        assert self.find(catalog, {"n": "3"}) == {"str"}
        assert self.find(catalog, {"n": True}) == {"bool"}  # true is not 1
        assert self.find(catalog, {"n": 1}) == set()
        assert self.find(catalog, {"flag": False}) == {"float3"}
        assert self.find(catalog, {"s": "b"}) == {"int3"}  # case-sensitive
        assert self.find(catalog, {"s": "é"}) == {"bool"}

    def test_equality_with_none_matches_null_and_missing(self, catalog: TreadleStore) -> None:
        assert self.find(catalog, {"n": None}) == {"null", "none"}
        assert self.find(catalog, {"flag": None}) == {"float4.5", "str", "bool", "null", "none"}

    def test_objects_and_arrays_compare_exactly(self, catalog: TreadleStore) -> None:
        assert self.find(catalog, {"obj": {"y": [1, 2], "x": 1}}) == {"int3"}  # key order
        assert self.find(catalog, {"obj": {"x": 1}}) == set()  # not a subset match
        assert self.find(catalog, {"arr": [1, "a"]}) == {"int3"}
        assert self.find(catalog, {"arr": ["a", 1]}) == set()

    def test_ne_is_the_negation_of_equality(self, catalog: TreadleStore) -> None:
        everything = {"int3", "float3", "float4.5", "str", "bool", "null", "none"}
        assert self.find(catalog, {"n": {"$ne": 3}}) == everything - {"int3", "float3"}
        assert self.find(catalog, {"n": {"$ne": None}}) == everything - {"null", "none"}
        assert self.find(catalog, {"obj": {"$ne": {"x": 2}}}) == everything - {"float3"}

    def test_comparisons_on_numbers(self, catalog: TreadleStore) -> None:
        assert self.find(catalog, {"n": {"$gt": 3}}) == {"float4.5"}
        assert self.find(catalog, {"n": {"$gte": 3}}) == {"int3", "float3", "float4.5"}
        assert self.find(catalog, {"n": {"$lt": 4.5}}) == {"int3", "float3"}
        assert self.find(catalog, {"n": {"$lte": 4.5}}) == {"int3", "float3", "float4.5"}
        assert self.find(catalog, {"n": {"$gt": 2.5, "$lt": 4}}) == {"int3", "float3"}
        assert self.find(catalog, {"n": {"$gt": -1e300}}) == {"int3", "float3", "float4.5"}

    def test_comparisons_on_strings_are_by_code_point(self, catalog: TreadleStore) -> None:
        assert self.find(catalog, {"s": {"$gt": "a"}}) == {"int3", "float4.5", "bool"}
        assert self.find(catalog, {"s": {"$gte": "a"}}) == {"int3", "float3", "float4.5", "bool"}
        assert self.find(catalog, {"s": {"$lt": "a"}}) == {"str"}  # "B" < "a"
        assert self.find(catalog, {"n": {"$gte": "0"}}) == {"str"}  # strings only

    def test_several_keys_must_all_match(self, catalog: TreadleStore) -> None:
        assert self.find(catalog, {"n": 3, "s": "a"}) == {"float3"}
        assert self.find(catalog, {"n": {"$gte": 3}, "flag": {"$ne": True}}) == {"float3",
                                                                                  "float4.5"}

    def test_filter_keys_may_hold_any_characters(self, memory: TreadleStore) -> None:
        memory.put(("odd",), "k", {'qu"ote': 1, "dot.ted": 2, "back\\slash": 3, "": 4, "$x": 5,
                                   "1": 6, "[0]": 7})
        for key, value in [('qu"ote', 1), ("dot.ted", 2), ("back\\slash", 3), ("", 4),
                           ("$x", 5), ("1", 6), ("[0]", 7)]:
            assert keys(memory.search(("odd",), filter={key: value})) == ["k"], key
            assert keys(memory.search(("odd",), filter={key: {"$gte": value}})) == ["k"], key
            assert memory.search(("odd",), filter={key: value + 1}) == [], key

    def test_numbers_beyond_64_bits(self, memory: TreadleStore) -> None:
        memory.put(("big",), "huge", {"n": 10**30})
        memory.put(("big",), "small", {"n": -5})
        assert value_of(memory, ("big",), "huge") == {"n": 10**30}
        assert keys(memory.search(("big",), filter={"n": {"$gt": 10**20}})) == ["huge"]
        assert keys(memory.search(("big",), filter={"n": {"$lt": -(10**20)}})) == []
        assert keys(memory.search(("big",), filter={"n": 10**30})) == ["huge"]

    @pytest.mark.parametrize("filter", [
        {"n": {"$regex": "x"}},
        {"n": {"$gt": 1, "plain": 2}},
        {"n": {"$gt": True}},
        {"n": {"$lt": None}},
        {"n": {"$gte": [1]}},
        {"n": {"$gt": math.nan}},
        {"n": object()},
    ])
    def test_bad_filters_are_refused(self, memory: TreadleStore, filter: dict[str, Any]) -> None:
        with pytest.raises(InputError):
            memory.search(("n",), filter=filter)

    # --- namespaces ------------------------------------------------------------------------------
    @pytest.fixture
    def tree(self, memory: TreadleStore) -> TreadleStore:
        for ns in [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("a", "e", "c", "f"), ("x",),
                   ("x", "b", "c"), ("y", "z")]:
            memory.put(ns, "k", {"v": 1})
        memory.put(("a", "b", "c"), "second", {"v": 2})  # a namespace is listed once
        return memory

    def test_list_namespaces_lists_each_once_sorted(self, tree: TreadleStore) -> None:
        assert tree.list_namespaces() == [
            ("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("a", "e", "c", "f"), ("x",),
            ("x", "b", "c"), ("y", "z"),
        ]

    def test_list_namespaces_by_prefix_and_suffix(self, tree: TreadleStore) -> None:
        assert tree.list_namespaces(prefix=("a", "b")) == [("a", "b", "c"), ("a", "b", "d")]
        assert tree.list_namespaces(prefix=("a", "e", "c", "f")) == [("a", "e", "c", "f")]
        assert tree.list_namespaces(prefix=("a", "e", "c", "f", "g")) == []
        assert tree.list_namespaces(suffix=("c",)) == [("a", "b", "c"), ("x", "b", "c")]
        assert tree.list_namespaces(suffix=("b", "c")) == [("a", "b", "c"), ("x", "b", "c")]
        assert tree.list_namespaces(prefix=("a",), suffix=("c",)) == [("a", "b", "c")]
        assert tree.list_namespaces(prefix=("nope",)) == []

    def test_wildcards_match_any_one_label(self, tree: TreadleStore) -> None:
        assert tree.list_namespaces(prefix=("*", "b")) == [("a", "b", "c"), ("a", "b", "d"),
                                                         ("x", "b", "c")]
        assert tree.list_namespaces(prefix=("a", "*", "c")) == [("a", "b", "c"),
                                                              ("a", "e", "c", "f")]
        assert tree.list_namespaces(prefix=("*", "*", "*", "*")) == [("a", "e", "c", "f")]
        assert tree.list_namespaces(suffix=("*", "c")) == [("a", "b", "c"), ("x", "b", "c")]
        assert tree.list_namespaces(suffix=("b", "*")) == [("a", "b", "c"), ("a", "b", "d"),
                                                         ("x", "b", "c")]
        assert tree.list_namespaces(suffix=("*", "*", "*")) == [
            ("a", "b", "c"), ("a", "b", "d"), ("a", "e", "c", "f"), ("x", "b", "c")]
        assert tree.list_namespaces(prefix=("*",), suffix=("z",)) == [("y", "z")]

    def test_max_depth_cuts_namespaces_and_merges_them(self, tree: TreadleStore) -> None:
        assert tree.list_namespaces(max_depth=1) == [("a",), ("x",), ("y",)]
        assert tree.list_namespaces(max_depth=2) == [("a", "b"), ("a", "e"), ("x",), ("x", "b"),
                                                     ("y", "z")]
        assert tree.list_namespaces(prefix=("a",), max_depth=3) == [
            ("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("a", "e", "c")]
        assert tree.list_namespaces(suffix=("c",), max_depth=2) == [("a", "b"), ("x", "b")]

    def test_list_namespaces_pages(self, tree: TreadleStore) -> None:
        everything = tree.list_namespaces()
        assert tree.list_namespaces(limit=3) == everything[:3]
        assert tree.list_namespaces(limit=3, offset=3) == everything[3:6]
        assert tree.list_namespaces(offset=6) == everything[6:]
        assert tree.list_namespaces(max_depth=1, limit=1, offset=1) == [("x",)]

    def test_list_namespaces_op_with_match_conditions(self, tree: TreadleStore) -> None:
        (found,) = tree.batch([ListNamespacesOp(
            match_conditions=(MatchCondition("prefix", ("a",)), MatchCondition("prefix", ("*", "e"))),
        )])
        assert found == [("a", "e"), ("a", "e", "c", "f")]
        with pytest.raises(InputError):
            tree.batch([ListNamespacesOp(match_conditions=(MatchCondition("infix", ("a",)),))])  # type: ignore[arg-type]
        with pytest.raises(InputError):
            tree.list_namespaces(max_depth=0)

    def test_deleting_the_last_item_removes_the_namespace(self, tree: TreadleStore) -> None:
        tree.delete(("y", "z"), "k")
        assert ("y", "z") not in tree.list_namespaces()

    # --- TTL -----------------------------------------------------------------------------------------
    def test_expired_items_are_invisible_to_every_read(self, memory: TreadleStore) -> None:
        memory.put(("t", "short"), "k", {"v": 1}, ttl=SHORT_TTL)
        memory.put(("t",), "long", {"v": 2}, ttl=60)
        memory.put(("t",), "forever", {"v": 3})
        assert memory.get(("t", "short"), "k") is not None
        time.sleep(EXPIRE)
        assert memory.get(("t", "short"), "k") is None
        assert keys(memory.search(("t",))) == ["forever", "long"]
        assert memory.list_namespaces() == [("t",)]
        assert memory.get(("t",), "long") is not None

    def test_sweep_deletes_only_expired_items(self, store: Store, memory: TreadleStore) -> None:
        memory.put(("t",), "c", {"v": 1}, ttl=60)
        memory.put(("t",), "d", {"v": 1})
        # Nothing to sweep yet. (Checked before the short-lived items are written: a busy
        # machine can take their 300 ms to get from their put to a sweep.)
        assert memory.sweep_expired() == 0
        memory.put(("t",), "a", {"v": 1}, ttl=SHORT_TTL)
        memory.put(("t",), "b", {"v": 1}, ttl=SHORT_TTL)
        time.sleep(EXPIRE)
        assert memory.sweep_expired() == 2
        assert memory.sweep_expired() == 0
        assert [r is None for r in store.get_items([(("t",), k) for k in "abcd"])] == [
            True, True, False, False]

    def test_reads_refresh_the_ttl_unless_told_not_to(self, store: Store,
                                                     memory: TreadleStore) -> None:
        memory.put(("t",), "k", {"v": 1}, ttl=1)
        (row,) = store.get_items([(("t",), "k")], refresh_ttl=False)
        assert row is not None and row.ttl_minutes == 1 and row.expires_at is not None
        assert row.expires_at == pytest.approx(row.updated_at + 60, abs=1)
        start = row.expires_at
        time.sleep(0.05)
        memory.get(("t",), "k", refresh_ttl=False)
        memory.search(("t",), refresh_ttl=False)
        (same,) = store.get_items([(("t",), "k")], refresh_ttl=False)
        assert same is not None and same.expires_at == start
        memory.get(("t",), "k")  # refresh_ttl defaults to True
        (after_get,) = store.get_items([(("t",), "k")], refresh_ttl=False)
        assert expiry(after_get) > start
        time.sleep(0.05)
        memory.search(("t",))
        (after_search,) = store.get_items([(("t",), "k")], refresh_ttl=False)
        assert after_search is not None
        assert expiry(after_search) > expiry(after_get)
        assert after_search.updated_at == row.updated_at  # a refresh is not an update

    def test_a_refreshing_read_keeps_an_item_alive(self, memory: TreadleStore) -> None:
        memory.put(("t",), "k", {"v": 1}, ttl=0.01)  # 600 ms
        for _ in range(4):  # 800 ms in all: without the refreshes it would have expired
            time.sleep(0.2)
            assert memory.get(("t",), "k") is not None
        time.sleep(0.9)
        assert memory.get(("t",), "k") is None

    def test_a_put_without_ttl_clears_it(self, store: Store, memory: TreadleStore) -> None:
        memory.put(("t",), "k", {"v": 1}, ttl=SHORT_TTL)
        memory.put(("t",), "k", {"v": 2})
        time.sleep(EXPIRE)
        item = memory.get(("t",), "k")
        assert item is not None and item.value == {"v": 2}
        (row,) = store.get_items([(("t",), "k")])
        assert row is not None and row.ttl_minutes is None and row.expires_at is None

    def test_a_put_over_an_expired_item_creates_it_anew(self, memory: TreadleStore) -> None:
        memory.put(("t",), "k", {"v": 1}, ttl=SHORT_TTL)
        first = memory.get(("t",), "k", refresh_ttl=False)
        time.sleep(EXPIRE)
        memory.put(("t",), "k", {"v": 2})
        second = memory.get(("t",), "k")
        assert first is not None and second is not None
        assert second.created_at > first.created_at

    def test_ttl_config_sets_defaults(self, store: Store) -> None:
        memory = TreadleStore(store, ttl={"default_ttl": 1, "refresh_on_read": False})
        memory.put(("t",), "k", {"v": 1})
        memory.put(("t",), "none", {"v": 1}, ttl=None)
        (row, none) = store.get_items([(("t",), "k"), (("t",), "none")], refresh_ttl=False)
        assert row is not None and row.ttl_minutes == 1 and none is not None
        assert none.ttl_minutes is None
        time.sleep(0.05)
        memory.get(("t",), "k")
        (same,) = store.get_items([(("t",), "k")], refresh_ttl=False)
        assert same is not None and same.expires_at == row.expires_at
        memory.get(("t",), "k", refresh_ttl=True)
        (later,) = store.get_items([(("t",), "k")], refresh_ttl=False)
        assert expiry(later) > expiry(row)

    # --- the item store itself ----------------------------------------------------------------------
    def test_get_items_answers_in_the_order_asked(self, store: Store) -> None:
        store.write_items([ItemWrite.put(("a",), "1", {"v": 1}),
                           ItemWrite.put(("a", "b"), "2", {"v": 2})])
        rows = store.get_items([(("a", "b"), "2"), (("a",), "x"), (("a",), "1"), (("a", "b"), "2")])
        assert [r.value if r else None for r in rows] == [{"v": 2}, None, {"v": 1}, {"v": 2}]
        assert store.get_items([]) == []
        store.write_items([])

    def test_item_store_queries(self, store: Store) -> None:
        store.write_items([ItemWrite.put(("p", "q"), "k", {"v": 1}),
                           ItemWrite.put(("p",), "k", {"v": 2}),
                           ItemWrite.delete(("p",), "nothing")])
        found = store.search_items(ItemSearch(("p",), limit=5))
        assert sorted(r.namespace for r in found) == [("p",), ("p", "q")]
        assert store.list_item_namespaces(
            NamespaceQuery((NamespaceMatch("suffix", ("q",)),))) == [("p", "q")]
        with pytest.raises(InputError):
            ItemWrite(("p.q",), "k", "{}")
        with pytest.raises(InputError):
            ItemSearch(("p",), limit=-1)

    def test_text_no_database_can_hold_is_refused_and_nothing_is_written(self, store: Store) -> None:
        """A lone surrogate in a key or a value: StoreDataError (not retried) on every
        driver, and the batch it came in leaves nothing behind."""
        for bad in (ItemWrite.put(("a",), "k\udc80", {"v": 1}),
                    ItemWrite.put(("a",), "k", {"v": "x\udc80"})):
            with pytest.raises(StoreDataError, match="cannot store this data"):
                store.write_items([ItemWrite.put(("a",), "fine", {"v": 1}), bad])
        assert store.get_items([(("a",), "fine"), (("a",), "k")]) == [None, None]

    def test_filters_on_keys_a_json_path_cannot_quote(self, store: Store) -> None:
        """Keys holding quotes, backslashes, dots or brackets filter like any other."""
        odd = ['a"b', "a\\b", "a.b", "[0]", "$", "é ☃"]
        store.write_items([ItemWrite.put(("o",), str(n), {k: n for k in odd})
                           for n in range(3)])
        for k in odd:
            for cond, want in (({k: 1}, ["1"]), ({k: {"$ne": 1}}, ["0", "2"]),
                               ({k: {"$gte": 1}}, ["1", "2"]), ({k: {"$lt": 1}}, ["0"])):
                found = store.search_items(ItemSearch(("o",), parse_filter(cond)))
                assert sorted(r.key for r in found) == want, (k, cond)

    # --- a LangGraph graph using it -------------------------------------------------------------------
    def test_a_compiled_graph_reads_and_writes_items(self, memory: TreadleStore) -> None:
        from langgraph.config import get_store
        from langgraph.graph import END, START, StateGraph

        class State(TypedDict, total=False):
            user: str
            visits: int
            known: list[str]

        def remember(state: State, *, store: BaseStore) -> State:
            namespace = ("memories", state["user"])
            item = store.get(namespace, "visits")
            visits = (item.value["n"] if item else 0) + 1
            store.put(namespace, "visits", {"n": visits})
            return {"visits": visits}

        def recall(state: State) -> State:
            store = get_store()
            return {"known": sorted(ns[1] for ns in store.list_namespaces(prefix=("memories",)))}

        builder = StateGraph(State)
        builder.add_node("remember", remember)
        builder.add_node("recall", recall)
        builder.add_edge(START, "remember")
        builder.add_edge("remember", "recall")
        builder.add_edge("recall", END)
        graph = builder.compile(store=memory)

        assert graph.invoke({"user": "ada"}) == {"user": "ada", "visits": 1, "known": ["ada"]}
        assert graph.invoke({"user": "ada"})["visits"] == 2
        out = asyncio.run(graph.ainvoke({"user": "bob"}))
        assert out == {"user": "bob", "visits": 1, "known": ["ada", "bob"]}
        item = memory.get(("memories", "ada"), "visits")
        assert item is not None and item.value == {"n": 2}
