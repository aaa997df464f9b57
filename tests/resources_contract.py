"""The API resources contract (``treadle.store.resources.ResourceStore``), for every driver.

A backend's test module subclasses :class:`ResourcesContract` and provides a
function-scoped ``store`` fixture yielding a fresh, migrated, empty store (as for
``queue_contract.QueueContract``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from access_contract import AccessContract
from treadle.errors import ConflictError, InputError
from treadle.store.assistant_records import ASSISTANT_SORT, Assistant
from treadle.store.base import Store
from treadle.store.cron_records import CRON_SORT, Cron
from treadle.store.resources import ResourceStore
from treadle.store.thread_records import THREAD_SORT, Thread

TICK = 0.01  # sleep this long so the database clock moves on (SQLite: milliseconds)


def assistant(assistant_id: str, graph_id: str = "g", **kw: Any) -> Assistant:
    return Assistant(assistant_id=assistant_id, graph_id=graph_id, **kw)


def cron(cron_id: str, assistant_id: str = "a", thread_id: str | None = None, **kw: Any) -> Cron:
    return Cron(cron_id=cron_id, assistant_id=assistant_id, thread_id=thread_id,
                schedule="*/5 * * * *", **kw)


def ids(rows: list[Any], attr: str) -> list[str]:
    return [getattr(r, attr) for r in rows]


NESTED = {"s": "x", "n": 2, "f": 1.5, "b": True, "z": None, "l": [1, {"k": "v"}],
          "o": {"deep": {"er": [1, 2]}, "u": "é ☃"}}


class ResourcesContract(AccessContract):
    """Backend-independent tests; subclasses provide the ``store`` fixture."""

    def test_the_store_is_a_resource_store(self, store: Store) -> None:
        assert isinstance(store, ResourceStore)

    # --- assistants: create, read --------------------------------------------------------
    def test_put_assistant_stores_version_1_with_database_times(self, store: Store) -> None:
        before = store.now()
        a = store.put_assistant(assistant(
            "a1", "graph", config={"configurable": {"x": 1}}, context={"c": [1, 2]},
            metadata=NESTED, name="First", description="the first", version=7,
            created_at=1.0, updated_at=2.0))
        assert (a.assistant_id, a.graph_id, a.name, a.description) == (
            "a1", "graph", "First", "the first")
        assert a.config == {"configurable": {"x": 1}} and a.context == {"c": [1, 2]}
        assert a.metadata == NESTED
        assert a.version == 1
        assert before - 1 <= a.created_at <= store.now() + 1
        assert a.updated_at == a.created_at
        assert store.get_assistant("a1") == a
        assert store.get_assistant("nope") is None
        (v1,) = store.list_assistant_versions("a1")
        assert v1 == a

    def test_put_assistant_defaults(self, store: Store) -> None:
        a = store.put_assistant(assistant("a1"))
        assert (a.config, a.context, a.metadata, a.name, a.description) == ({}, {}, {}, "", None)

    def test_put_assistant_if_exists(self, store: Store) -> None:
        first = store.put_assistant(assistant("a1", metadata={"v": 1}))
        with pytest.raises(ConflictError, match="a1"):
            store.put_assistant(assistant("a1", "other", metadata={"v": 2}))
        again = store.put_assistant(assistant("a1", "other", metadata={"v": 2}),
                                    if_exists="do_nothing")
        assert again == first
        assert store.get_assistant("a1") == first
        assert len(store.list_assistant_versions("a1")) == 1
        with pytest.raises(InputError, match="if_exists"):
            store.put_assistant(assistant("a2"), if_exists="replace")
        assert store.get_assistant("a2") is None

    # --- assistants: versions ------------------------------------------------------------
    def test_patch_assistant_makes_a_new_version(self, store: Store) -> None:
        a = store.put_assistant(assistant("a1", config={"c": 1}, context={"x": 1},
                                          metadata={"keep": 1, "over": "old"}, name="n",
                                          description="d"))
        time.sleep(TICK)
        b = store.patch_assistant("a1", config={"c": 2}, metadata={"over": "new", "add": [1]})
        assert b is not None
        assert b.version == 2
        assert b.config == {"c": 2}  # replaced
        assert b.metadata == {"keep": 1, "over": "new", "add": [1]}  # merged
        assert (b.graph_id, b.context, b.name, b.description) == ("g", {"x": 1}, "n", "d")
        assert b.created_at == a.created_at and b.updated_at > a.updated_at
        assert store.get_assistant("a1") == b
        c = store.patch_assistant("a1", graph_id="g2", context={}, name="m", description="e")
        assert c is not None and c.version == 3
        assert (c.graph_id, c.context, c.name, c.description) == ("g2", {}, "m", "e")
        assert c.metadata == b.metadata and c.config == b.config
        assert store.patch_assistant("nope", name="x") is None

    def test_versions_hold_full_records_newest_first(self, store: Store) -> None:
        a = store.put_assistant(assistant("a1", metadata={"step": 0}))
        store.put_assistant(assistant("other"))
        for step in (1, 2, 3):
            store.patch_assistant("a1", metadata={"step": step}, config={"n": step})
        versions = store.list_assistant_versions("a1")
        assert [v.version for v in versions] == [4, 3, 2, 1]
        assert [v.metadata["step"] for v in versions] == [3, 2, 1, 0]
        assert [v.config for v in versions] == [{"n": 3}, {"n": 2}, {"n": 1}, {}]
        assert all(v.assistant_id == "a1" and v.updated_at == v.created_at for v in versions)
        assert versions[-1] == a
        latest = store.get_assistant("a1")
        assert latest is not None and versions[0].created_at == latest.updated_at
        assert [v.version for v in store.list_assistant_versions("a1", limit=2)] == [4, 3]
        assert [v.version for v in store.list_assistant_versions("a1", limit=2, offset=3)] == [1]
        assert [v.version for v in store.list_assistant_versions(
            "a1", metadata={"step": 2})] == [3]
        assert store.list_assistant_versions("a1", metadata={"step": 9}) == []
        assert store.list_assistant_versions("nope") == []

    def test_set_latest_assistant_version(self, store: Store) -> None:
        v1 = store.put_assistant(assistant("a1", config={"n": 1}, metadata={"m": 1}, name="one"))
        v2 = store.patch_assistant("a1", config={"n": 2}, metadata={"m": 2}, name="two")
        assert v2 is not None
        time.sleep(TICK)
        back = store.set_latest_assistant_version("a1", 1)
        assert back is not None
        assert (back.version, back.config, back.metadata, back.name) == (1, {"n": 1}, {"m": 1},
                                                                          "one")
        assert back.created_at == v1.created_at and back.updated_at > v2.updated_at
        assert store.get_assistant("a1") == back
        # The next patch starts from the current record (version 1) as version 3.
        v3 = store.patch_assistant("a1", metadata={"x": True})
        assert v3 is not None and v3.version == 3
        assert v3.metadata == {"m": 1, "x": True} and v3.name == "one"
        assert [v.version for v in store.list_assistant_versions("a1")] == [3, 2, 1]
        assert store.set_latest_assistant_version("a1", 9) is None
        assert store.set_latest_assistant_version("nope", 1) is None
        assert store.get_assistant("a1") == v3

    def test_delete_assistant_deletes_its_versions(self, store: Store) -> None:
        store.put_assistant(assistant("a1"))
        store.patch_assistant("a1", name="x")
        store.put_assistant(assistant("a2"))
        assert store.delete_assistant("a1") is True
        assert store.get_assistant("a1") is None
        assert store.list_assistant_versions("a1") == []
        assert store.delete_assistant("a1") is False
        assert store.get_assistant("a2") is not None
        again = store.put_assistant(assistant("a1"))
        assert again.version == 1
        assert [v.version for v in store.list_assistant_versions("a1")] == [1]

    # --- assistants: search --------------------------------------------------------------
    def test_search_assistants_filters(self, store: Store) -> None:
        store.put_assistant(assistant("a1", "g1", name="Support Bot", metadata={"team": "x"}))
        store.put_assistant(assistant("a2", "g1", name="sales", metadata={"team": "y"}))
        store.put_assistant(assistant("a3", "g2", name="SUPPORT-2", metadata={"team": "x"}))
        found = store.search_assistants(sort_by="assistant_id", sort_order="asc")
        assert ids(found, "assistant_id") == ["a1", "a2", "a3"]
        assert ids(store.search_assistants(graph_id="g1", sort_order="asc"),
                   "assistant_id") == ["a1", "a2"]
        assert ids(store.search_assistants(name="support", sort_order="asc"),
                   "assistant_id") == ["a1", "a3"]
        assert ids(store.search_assistants(name="PORT B"), "assistant_id") == ["a1"]
        assert ids(store.search_assistants(name="%"), "assistant_id") == []  # no wildcards
        assert ids(store.search_assistants(metadata={"team": "x"}, graph_id="g2"),
                   "assistant_id") == ["a3"]
        assert store.search_assistants(graph_id="g3") == []
        assert store.count_assistants() == 3
        assert store.count_assistants(graph_id="g1") == 2
        assert store.count_assistants(name="SUPPORT") == 2
        assert store.count_assistants(metadata={"team": "x"}) == 2
        assert store.count_assistants(metadata={"team": "z"}) == 0
        assert store.count_assistants(graph_id="g1", name="sup", metadata={"team": "x"}) == 1
        # Searches see current records only.
        store.patch_assistant("a2", metadata={"team": "x"})
        assert store.count_assistants(metadata={"team": "x"}) == 3
        assert store.count_assistants(metadata={"team": "y"}) == 0

    @pytest.mark.parametrize(("flt", "expected"), [
        ({}, ["a1", "a2", "a3", "a4", "a5"]),
        ({"s": "x"}, ["a1"]),
        ({"s": "x", "n": 2}, ["a1"]),
        ({"s": "x", "n": 3}, []),
        ({"n": 2.0}, ["a1"]),  # numbers by value
        ({"n": "2"}, ["a3"]),  # a string is not a number
        ({"b": True}, ["a1"]),
        ({"b": 1}, ["a2"]),  # true is not 1
        ({"z": None}, ["a1"]),  # null matches null, not a missing key
        ({"l": [1, {"k": "v"}]}, ["a1"]),  # nested values: equality
        ({"l": [1]}, ["a3"]),  # not a1: [1, {...}] contains [1] but is not equal
        ({"o": {"u": "é ☃", "deep": {"er": [1, 2]}}}, ["a1"]),  # key order does not matter
        ({"o": {"deep": {"er": [1, 2]}}}, ["a4"]),  # not a1: its "o" holds more
        ({"missing": "x"}, []),
        ({"s": None}, []),
    ])
    def test_metadata_filter(self, store: Store, flt: dict[str, Any], expected: list[str]) -> None:
        store.put_assistant(assistant("a1", metadata=NESTED))
        store.put_assistant(assistant("a2", metadata={"b": 1, "n": 1}))
        store.put_assistant(assistant("a3", metadata={"n": "2", "l": [1]}))
        store.put_assistant(assistant("a4", metadata={"o": {"deep": {"er": [1, 2]}}}))
        store.put_assistant(assistant("a5"))
        found = store.search_assistants(metadata=flt, sort_by="assistant_id", sort_order="asc")
        assert ids(found, "assistant_id") == expected
        assert store.count_assistants(metadata=flt) == len(expected)

    def test_search_assistants_sorting_and_paging(self, store: Store) -> None:
        store.put_assistant(assistant("a2", "g3", name="beta"))
        time.sleep(TICK)
        store.put_assistant(assistant("a3", "g1", name="Alpha"))
        time.sleep(TICK)
        store.put_assistant(assistant("a1", "g2", name="gamma"))
        time.sleep(TICK)
        store.patch_assistant("a2", description="touched")
        expected = {
            "assistant_id": ["a1", "a2", "a3"],
            "graph_id": ["a3", "a1", "a2"],
            "name": ["a3", "a2", "a1"],  # by code point: upper case first
            "created_at": ["a2", "a3", "a1"],
            "updated_at": ["a3", "a1", "a2"],
        }
        assert set(expected) == set(ASSISTANT_SORT)
        for sort_by, order in expected.items():
            asc = store.search_assistants(sort_by=sort_by, sort_order="asc")
            desc = store.search_assistants(sort_by=sort_by, sort_order="desc")
            assert ids(asc, "assistant_id") == order, sort_by
            assert ids(desc, "assistant_id") == order[::-1], sort_by
        assert ids(store.search_assistants(), "assistant_id") == ["a1", "a3", "a2"]  # newest
        page = store.search_assistants(sort_by="assistant_id", sort_order="asc", limit=2, offset=1)
        assert ids(page, "assistant_id") == ["a2", "a3"]
        assert store.search_assistants(limit=0) == []
        assert store.search_assistants(offset=3) == []
        with pytest.raises(InputError, match="sort_by"):
            store.search_assistants(sort_by="description")
        with pytest.raises(InputError, match="sort_order"):
            store.search_assistants(sort_order="up")

    def test_equal_sort_keys_keep_creation_order(self, store: Store) -> None:
        for i in range(5):
            store.put_assistant(assistant(f"a{i}", "same"))
        asc = store.search_assistants(sort_by="graph_id", sort_order="asc")
        assert ids(asc, "assistant_id") == [f"a{i}" for i in range(5)]
        desc = store.search_assistants(sort_by="graph_id", sort_order="desc")
        assert ids(desc, "assistant_id") == [f"a{i}" for i in reversed(range(5))]

    # --- threads -------------------------------------------------------------------------
    def test_put_thread_round_trip(self, store: Store) -> None:
        before = store.now()
        t = store.put_thread(Thread("t1", metadata=NESTED, status="interrupted",
                                    values={"messages": [{"role": "ai", "content": "hi"}]},
                                    interrupts={"task": [{"value": "ask", "id": "i1"}]},
                                    config={"configurable": {"k": 1}}, error="boom",
                                    created_at=5.0, updated_at=6.0))
        assert (t.thread_id, t.status, t.error) == ("t1", "interrupted", "boom")
        assert t.metadata == NESTED
        assert t.values == {"messages": [{"role": "ai", "content": "hi"}]}
        assert t.interrupts == {"task": [{"value": "ask", "id": "i1"}]}
        assert t.config == {"configurable": {"k": 1}}
        assert before - 1 <= t.created_at <= store.now() + 1 and t.updated_at == t.created_at
        assert store.get_thread("t1") == t
        assert store.get_thread("nope") is None

    def test_put_thread_defaults_and_if_exists(self, store: Store) -> None:
        t = store.put_thread(Thread("t1", metadata={"a": 1}))
        assert (t.status, t.values, t.interrupts, t.config, t.error) == ("idle", None, {}, {}, None)
        with pytest.raises(ConflictError, match="t1"):
            store.put_thread(Thread("t1", metadata={"a": 2}))
        assert store.put_thread(Thread("t1", metadata={"a": 2}), if_exists="do_nothing") == t
        assert store.get_thread("t1") == t
        with pytest.raises(InputError, match="if_exists"):
            store.put_thread(Thread("t2"), if_exists="update")
        with pytest.raises(InputError, match="status"):
            store.put_thread(Thread("t2", status="sleeping"))
        assert store.get_thread("t2") is None

    def test_thread_values_may_be_any_json(self, store: Store) -> None:
        for i, values in enumerate([[1, "two", None], "text", 3.25, False, {}]):
            t = store.put_thread(Thread(f"t{i}", values=values))
            assert t.values == values
            got = store.get_thread(f"t{i}")
            assert got is not None and got.values == values

    def test_patch_thread_merges_metadata(self, store: Store) -> None:
        t = store.put_thread(Thread("t1", metadata={"a": 1, "b": {"x": 1}}, values={"v": 1}))
        time.sleep(TICK)
        p = store.patch_thread("t1", metadata={"b": {"y": 2}, "c": None})
        assert p is not None
        assert p.metadata == {"a": 1, "b": {"y": 2}, "c": None}  # shallow merge
        assert p.values == {"v": 1} and p.status == "idle"
        assert p.created_at == t.created_at and p.updated_at > t.updated_at
        assert store.get_thread("t1") == p
        time.sleep(TICK)
        q = store.patch_thread("t1")
        assert q is not None and q.metadata == p.metadata and q.updated_at > p.updated_at
        assert store.patch_thread("nope", metadata={"a": 1}) is None
        assert store.get_thread("nope") is None

    def test_delete_thread_record(self, store: Store) -> None:
        store.put_thread(Thread("t1"))
        store.put_thread(Thread("t2"))
        assert store.delete_thread_record("t1") is True
        assert store.get_thread("t1") is None
        assert store.delete_thread_record("t1") is False
        assert store.get_thread("t2") is not None

    def test_search_threads_filters(self, store: Store) -> None:
        store.put_thread(Thread("t1", metadata={"user": "u1"}, values={"n": 1, "tags": ["a"]}))
        store.put_thread(Thread("t2", metadata={"user": "u2"}, status="busy",
                                values={"n": 2}))
        store.put_thread(Thread("t3", metadata={"user": "u1", "x": 1}, status="error"))
        store.put_thread(Thread("t4", metadata={"user": "u1"}, values=[{"n": 1}]))

        def search(**kw: Any) -> list[str]:
            return ids(store.search_threads(sort_by="thread_id", sort_order="asc", **kw),
                       "thread_id")

        assert search() == ["t1", "t2", "t3", "t4"]
        assert search(metadata={"user": "u1"}) == ["t1", "t3", "t4"]
        assert search(metadata={"user": "u1", "x": 1}) == ["t3"]
        assert search(values={"n": 1}) == ["t1"]  # t4's values are not an object
        assert search(values={"tags": ["a"]}) == ["t1"]
        assert search(values={"n": 3}) == []
        assert search(values={}) == ["t1", "t2", "t3", "t4"]
        assert search(status="busy") == ["t2"]
        assert search(status="interrupted") == []
        assert search(ids=["t3", "t1", "nope"]) == ["t1", "t3"]
        assert search(ids=[]) == []
        assert search(ids=["t1", "t3"], metadata={"x": 1}) == ["t3"]
        assert search(metadata={"user": "u1"}, status="idle") == ["t1", "t4"]
        assert store.count_threads() == 4
        assert store.count_threads(metadata={"user": "u1"}) == 3
        assert store.count_threads(values={"n": 2}) == 1
        assert store.count_threads(status="error") == 1
        assert store.count_threads(metadata={"user": "u1"}, status="error") == 1
        assert store.count_threads(metadata={"user": "nobody"}) == 0

    def test_search_threads_sorting_and_paging(self, store: Store) -> None:
        store.put_thread(Thread("t2", status="idle"))
        time.sleep(TICK)
        store.put_thread(Thread("t3", status="busy"))
        time.sleep(TICK)
        store.put_thread(Thread("t1", status="interrupted"))
        time.sleep(TICK)
        store.patch_thread("t2", metadata={"touched": True})
        expected = {
            "thread_id": ["t1", "t2", "t3"],
            "status": ["t3", "t2", "t1"],
            "created_at": ["t2", "t3", "t1"],
            "updated_at": ["t3", "t1", "t2"],
        }
        assert set(expected) == set(THREAD_SORT)
        for sort_by, order in expected.items():
            asc = store.search_threads(sort_by=sort_by, sort_order="asc")
            desc = store.search_threads(sort_by=sort_by, sort_order="desc")
            assert ids(asc, "thread_id") == order, sort_by
            assert ids(desc, "thread_id") == order[::-1], sort_by
        assert ids(store.search_threads(), "thread_id") == ["t1", "t3", "t2"]
        assert ids(store.search_threads(limit=1, offset=1), "thread_id") == ["t3"]
        with pytest.raises(InputError, match="sort_by"):
            store.search_threads(sort_by="values")
        with pytest.raises(InputError, match="sort_order"):
            store.search_threads(sort_order="DESC")

    def test_set_thread_state(self, store: Store) -> None:
        t = store.put_thread(Thread("t1", values={"v": 0}, interrupts={"x": [{"value": 1}]}))
        time.sleep(TICK)
        # A run starts: busy, values kept, interrupts and error cleared.
        assert store.set_thread_state("t1", status="busy") is True
        busy = store.get_thread("t1")
        assert busy is not None
        assert (busy.status, busy.values, busy.interrupts, busy.error) == ("busy", {"v": 0}, {}, None)
        assert busy.updated_at > t.updated_at and busy.created_at == t.created_at
        # It stops at an interrupt.
        assert store.set_thread_state("t1", status="interrupted", values={"v": 1},
                                      interrupts={"task": [{"value": "ok?"}]})
        got = store.get_thread("t1")
        assert got is not None
        assert (got.status, got.values, got.interrupts) == (
            "interrupted", {"v": 1}, {"task": [{"value": "ok?"}]})
        # It fails; values can be set to None explicitly.
        assert store.set_thread_state("t1", status="error", values=None, error="Boom: bad")
        got = store.get_thread("t1")
        assert got is not None
        assert (got.status, got.values, got.interrupts, got.error) == ("error", None, {},
                                                                        "Boom: bad")
        assert store.set_thread_state("t1", status="idle", values=[1, 2])
        got = store.get_thread("t1")
        assert got is not None and got.values == [1, 2] and got.error is None
        assert got.metadata == t.metadata
        # A thread without a record is left alone.
        assert store.set_thread_state("nope", status="busy") is False
        assert store.get_thread("nope") is None
        with pytest.raises(InputError, match="status"):
            store.set_thread_state("t1", status="done")

    def test_ensure_thread(self, store: Store) -> None:
        made = store.ensure_thread("t1", metadata={"m": 1})
        assert (made.thread_id, made.status, made.metadata, made.values) == ("t1", "idle",
                                                                             {"m": 1}, None)
        assert store.get_thread("t1") == made
        store.set_thread_state("t1", status="busy")
        existing = store.ensure_thread("t1", metadata={"m": 2})
        assert existing.status == "busy" and existing.metadata == {"m": 1}
        assert store.ensure_thread("t2").metadata == {}

    # --- crons ---------------------------------------------------------------------------
    def test_put_cron_round_trip(self, store: Store) -> None:
        before = store.now()
        nxt = 1_700_000_000.123456789
        c = store.put_cron(cron("c1", "a1", "t1", payload={"input": {"x": [1]}, "config": {}},
                                metadata={"k": "v"}, end_time=0.1 + 0.2, next_run_at=nxt,
                                enabled=True, user_id="u1", created_at=1.0))
        assert (c.cron_id, c.assistant_id, c.thread_id, c.schedule) == (
            "c1", "a1", "t1", "*/5 * * * *")
        assert c.payload == {"input": {"x": [1]}, "config": {}} and c.metadata == {"k": "v"}
        assert c.end_time == 0.1 + 0.2 and c.next_run_at == nxt  # exactly as written
        assert c.enabled is True and c.user_id == "u1"
        assert before - 1 <= c.created_at <= store.now() + 1 and c.updated_at == c.created_at
        assert store.get_cron("c1") == c
        assert store.get_cron("nope") is None
        bare = store.put_cron(cron("c2", enabled=False))
        assert (bare.thread_id, bare.end_time, bare.next_run_at, bare.user_id) == (
            None, None, None, None)
        assert bare.enabled is False and bare.payload == {} and bare.metadata == {}
        with pytest.raises(ConflictError, match="c1"):
            store.put_cron(cron("c1", "other"))
        assert store.get_cron("c1") == c

    def test_patch_cron(self, store: Store) -> None:
        c = store.put_cron(cron("c1", payload={"input": 1}, metadata={"a": 1}, end_time=10.5,
                                next_run_at=5.25))
        time.sleep(TICK)
        p = store.patch_cron("c1", schedule="0 * * * *", payload={"input": 2},
                             metadata={"b": 2}, enabled=False)
        assert p is not None
        assert (p.schedule, p.payload, p.metadata, p.enabled) == (
            "0 * * * *", {"input": 2}, {"a": 1, "b": 2}, False)
        assert (p.end_time, p.next_run_at) == (10.5, 5.25)  # not given: unchanged
        assert p.created_at == c.created_at and p.updated_at > c.updated_at
        p = store.patch_cron("c1", end_time=None, next_run_at=7.75, enabled=True)
        assert p is not None
        assert (p.end_time, p.next_run_at, p.enabled) == (None, 7.75, True)
        p = store.patch_cron("c1", next_run_at=None)
        assert p is not None and p.next_run_at is None and p.schedule == "0 * * * *"
        assert store.get_cron("c1") == p
        assert store.patch_cron("nope", enabled=False) is None

    def test_delete_crons(self, store: Store) -> None:
        store.put_cron(cron("c1", thread_id="t1"))
        store.put_cron(cron("c2", thread_id="t1"))
        store.put_cron(cron("c3", thread_id="t2"))
        store.put_cron(cron("c4"))
        assert store.delete_cron("c3") is True
        assert store.delete_cron("c3") is False
        assert store.delete_crons_of_thread("t1") == 2
        assert store.delete_crons_of_thread("t1") == 0
        assert ids(store.search_crons(), "cron_id") == ["c4"]

    def test_search_crons(self, store: Store) -> None:
        store.put_cron(cron("c1", "a1", "t1", next_run_at=30.0))
        time.sleep(TICK)
        store.put_cron(cron("c2", "a1", None, next_run_at=None, enabled=False))
        time.sleep(TICK)
        store.put_cron(cron("c3", "a2", "t0", next_run_at=10.0))
        time.sleep(TICK)
        store.patch_cron("c1", metadata={"touched": 1})

        def search(**kw: Any) -> list[str]:
            return ids(store.search_crons(**kw), "cron_id")

        assert search() == ["c3", "c2", "c1"]
        assert search(assistant_id="a1") == ["c2", "c1"]
        assert search(thread_id="t1") == ["c1"]
        assert search(enabled=False) == ["c2"]
        assert search(enabled=True, sort_order="asc") == ["c1", "c3"]
        assert search(assistant_id="a2", thread_id="t1") == []
        assert store.count_crons() == 3
        assert store.count_crons(assistant_id="a1") == 2
        assert store.count_crons(thread_id="t0") == 1
        assert store.count_crons(assistant_id="a1", thread_id="t0") == 0
        # Empty values sort last in both directions.
        expected = {
            "cron_id": (["c1", "c2", "c3"], ["c3", "c2", "c1"]),
            "assistant_id": (["c1", "c2", "c3"], ["c3", "c2", "c1"]),
            "thread_id": (["c3", "c1", "c2"], ["c1", "c3", "c2"]),
            "next_run_at": (["c3", "c1", "c2"], ["c1", "c3", "c2"]),
            "created_at": (["c1", "c2", "c3"], ["c3", "c2", "c1"]),
            "updated_at": (["c2", "c3", "c1"], ["c1", "c3", "c2"]),
        }
        assert set(expected) == set(CRON_SORT)
        for sort_by, (asc, desc) in expected.items():
            assert search(sort_by=sort_by, sort_order="asc") == asc, sort_by
            assert search(sort_by=sort_by, sort_order="desc") == desc, sort_by
        assert search(sort_by="cron_id", sort_order="asc", limit=1, offset=1) == ["c2"]
        with pytest.raises(InputError, match="sort_by"):
            store.search_crons(sort_by="schedule")

    def test_due_crons(self, store: Store) -> None:
        store.put_cron(cron("late", next_run_at=90.0))
        store.put_cron(cron("early", next_run_at=50.0))
        store.put_cron(cron("exact", next_run_at=100.0))
        store.put_cron(cron("future", next_run_at=100.5))
        store.put_cron(cron("off", next_run_at=10.0, enabled=False))
        store.put_cron(cron("never", next_run_at=None))
        assert ids(store.due_crons(100.0), "cron_id") == ["early", "late", "exact"]
        assert ids(store.due_crons(100.0, limit=2), "cron_id") == ["early", "late"]
        assert store.due_crons(49.0) == []

    def test_advance_cron_is_a_compare_and_set(self, store: Store) -> None:
        first = 1_700_000_000.987654321
        store.put_cron(cron("c1", next_run_at=first))
        c = store.get_cron("c1")
        assert c is not None and c.next_run_at is not None
        second = first + 300.000001
        # Two schedulers saw the same due tick: exactly one wins it.
        assert store.advance_cron("c1", c.next_run_at, second) is True
        assert store.advance_cron("c1", c.next_run_at, second) is False
        got = store.get_cron("c1")
        assert got is not None and got.next_run_at == second and got.enabled
        assert got.updated_at >= c.updated_at
        assert store.advance_cron("c1", first - 1, second + 1) is False  # stale expectation
        # No more ticks: the cron is disabled and never due again.
        assert store.advance_cron("c1", second, None) is True
        got = store.get_cron("c1")
        assert got is not None and got.next_run_at is None and got.enabled is False
        assert store.due_crons(second + 1e6) == []
        assert store.advance_cron("nope", 1.0, 2.0) is False

    def test_a_disabled_cron_does_not_advance(self, store: Store) -> None:
        store.put_cron(cron("c1", next_run_at=5.0, enabled=False))
        assert store.advance_cron("c1", 5.0, 6.0) is False
        got = store.get_cron("c1")
        assert got is not None and got.next_run_at == 5.0

    def test_racing_advances_fire_each_tick_once(self, store: Store) -> None:
        store.put_cron(cron("c1", next_run_at=0.5))
        racers, ticks = 4, 10
        wins: list[list[float]] = [[] for _ in range(racers)]
        barrier = threading.Barrier(racers)
        errors: list[BaseException] = []

        def race(n: int) -> None:
            try:
                for tick in range(ticks):
                    expected = tick + 0.5
                    barrier.wait(10)
                    if store.advance_cron("c1", expected, expected + 1):
                        wins[n].append(expected)
                    barrier.wait(10)
            except BaseException as exc:  # reported below
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        won = sorted(w for per in wins for w in per)
        assert won == [tick + 0.5 for tick in range(ticks)]
        got = store.get_cron("c1")
        assert got is not None and got.next_run_at == ticks + 0.5

    # --- reading back ---------------------------------------------------------------------
    def test_json_too_deep_for_a_response_reads_back_cut(self, store: Store) -> None:
        """Every JSON column reads through jsonsafe on every driver: containers nested
        deeper than MAX_READ_DEPTH read as null (rows written before the HTTP API refused
        them must not break every read that meets them)."""
        from treadle.store.jsonsafe import MAX_READ_DEPTH

        def deep(n: int) -> dict[str, Any]:
            doc: dict[str, Any] = {}
            for _ in range(n):
                doc = {"d": doc}
            return doc

        def depth(doc: Any) -> int:
            n = 0
            while isinstance(doc, dict) and "d" in doc:
                doc, n = doc["d"], n + 1
            return n

        too_deep = deep(MAX_READ_DEPTH + 20)
        a = store.put_assistant(assistant("a1", config=too_deep, context=too_deep,
                                          metadata=too_deep))
        for doc in (a.config, a.context, a.metadata):
            assert MAX_READ_DEPTH - 2 <= depth(doc) <= MAX_READ_DEPTH
        store.put_thread(Thread("t1", metadata=too_deep, values=too_deep))
        got = store.get_thread("t1")
        assert got is not None
        assert MAX_READ_DEPTH - 2 <= depth(got.values) <= MAX_READ_DEPTH
        assert MAX_READ_DEPTH - 2 <= depth(got.metadata) <= MAX_READ_DEPTH
        c = store.put_cron(cron("c1", payload=too_deep))
        assert MAX_READ_DEPTH - 2 <= depth(c.payload) <= MAX_READ_DEPTH
        shallow = deep(10)
        store.put_assistant(assistant("a2", config=shallow))
        assert store.get_assistant("a2").config == shallow  # type: ignore[union-attr]
