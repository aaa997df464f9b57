"""Access filters inside the store's queries (``treadle.store.access``), for every driver.

Mixed into :class:`resources_contract.ResourcesContract`, so it runs on SQLite (unit) and
PostgreSQL (integration) with the same ``store`` fixture.
"""

from __future__ import annotations

from typing import Any

import pytest

from treadle.errors import AccessFilterError
from treadle.store.assistant_records import Assistant
from treadle.store.base import Store
from treadle.store.cron_records import Cron
from treadle.store.thread_records import Thread

ROWS: dict[str, dict[str, Any]] = {
    "t1": {"owner": "alice", "tags": ["a", "b"], "n": 1},
    "t2": {"owner": "bob", "tags": ["b"], "n": 1.0},
    "t3": {"owner": "alice", "tags": "a", "team": {"x": 1}},
    "t4": {},
}

FILTERS: list[tuple[dict[str, Any], list[str]]] = [
    ({"owner": "alice"}, ["t1", "t3"]),
    ({"owner": {"$eq": "bob"}}, ["t2"]),
    ({"owner": "carol"}, []),
    ({"n": 1}, ["t1", "t2"]),
    ({"team": {"x": 1}}, ["t3"]),
    ({"tags": {"$contains": "a"}}, ["t1"]),  # t3's tags is not a list
    ({"tags": {"$contains": ["a", "b"]}}, ["t1"]),
    ({"tags": {"$contains": "b"}, "owner": "bob"}, ["t2"]),
    ({"$or": [{"owner": "bob"}, {"team": {"x": 1}}]}, ["t2", "t3"]),
    ({"$and": [{"owner": "alice"}, {"tags": {"$contains": "b"}}]}, ["t1"]),
    ({"$or": []}, []),
    ({"$and": []}, ["t1", "t2", "t3", "t4"]),
    ({}, ["t1", "t2", "t3", "t4"]),
    ({"owner": {"$eq": "alice", "$contains": "x"}}, []),
    ({"it's": "'; DROP TABLE x; --"}, []),
]


def _threads(store: Store) -> None:
    for thread_id, metadata in ROWS.items():
        store.put_thread(Thread(thread_id, metadata=metadata))


class AccessContract:
    @pytest.mark.parametrize(("flt", "expected"), FILTERS)
    def test_access_filters_threads_search_and_count(
            self, store: Store, flt: dict[str, Any], expected: list[str]) -> None:
        _threads(store)
        found = store.search_threads(access=flt, limit=100, sort_by="thread_id",
                                     sort_order="asc")
        assert [t.thread_id for t in found] == expected
        assert store.count_threads(access=flt) == len(expected)
        got = [i for i in ROWS if store.get_thread(i, access=flt) is not None]
        assert got == expected

    def test_access_combines_with_the_search_filters(self, store: Store) -> None:
        _threads(store)
        found = store.search_threads(metadata={"n": 1}, access={"owner": "bob"})
        assert [t.thread_id for t in found] == ["t2"]

    def test_access_guards_thread_patch_and_delete(self, store: Store) -> None:
        _threads(store)
        mine, theirs = {"owner": "alice"}, {"owner": "bob"}
        assert store.patch_thread("t1", metadata={"x": 1}, access=theirs) is None
        assert store.get_thread("t1").metadata.get("x") is None  # type: ignore[union-attr]
        patched = store.patch_thread("t1", metadata={"x": 1}, access=mine)
        assert patched is not None and patched.metadata["x"] == 1
        assert store.delete_thread_record("t1", access=theirs) is False
        assert store.get_thread("t1") is not None
        assert store.delete_thread_record("t1", access=mine) is True

    def test_access_guards_assistants(self, store: Store) -> None:
        store.put_assistant(Assistant("a1", "g", metadata={"owner": "alice"}))
        store.put_assistant(Assistant("a2", "g", metadata={"owner": "bob"}))
        mine, theirs = {"owner": "alice"}, {"owner": "bob"}
        assert [a.assistant_id for a in store.search_assistants(access=mine)] == ["a1"]
        assert store.count_assistants(access=theirs) == 1
        assert store.get_assistant("a1", access=theirs) is None
        assert store.get_assistant("a1", access=mine) is not None
        assert store.patch_assistant("a1", name="x", access=theirs) is None
        assert store.patch_assistant("a1", name="x", access=mine) is not None
        assert store.delete_assistant("a1", access=theirs) is False
        assert store.delete_assistant("a1", access=mine) is True

    def test_access_guards_crons(self, store: Store) -> None:
        store.put_cron(Cron("c1", "a", None, "* * * * *", metadata={"owner": "alice"}))
        store.put_cron(Cron("c2", "a", None, "* * * * *", metadata={"owner": "bob"}))
        mine, theirs = {"owner": "alice"}, {"owner": "bob"}
        assert [c.cron_id for c in store.search_crons(access=mine)] == ["c1"]
        assert store.count_crons(access=theirs) == 1
        assert store.get_cron("c1", access=theirs) is None
        assert store.patch_cron("c1", enabled=False, access=theirs) is None
        assert store.patch_cron("c1", enabled=False, access=mine) is not None
        assert store.delete_cron("c1", access=theirs) is False
        assert store.delete_cron("c1", access=mine) is True

    @pytest.mark.parametrize("flt", [
        {"owner": {"$ne": "x"}}, {"$not": {"owner": "x"}}, {"owner": {}},
        {"$or": {"owner": "x"}}, {"$and": ["owner"]},
    ])
    def test_unsupported_filters_are_errors_not_allows(self, store: Store,
                                                       flt: dict[str, Any]) -> None:
        _threads(store)
        with pytest.raises(AccessFilterError):
            store.search_threads(access=flt)
        with pytest.raises(AccessFilterError):
            store.get_thread("t1", access=flt)
