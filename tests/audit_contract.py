"""The audit log contract (``treadle.store.audit_log.AuditLogStore``), for every driver.

A backend's test module subclasses :class:`AuditContract` and provides a function-scoped
``store`` fixture yielding a fresh, migrated, empty store. Tampering goes around treadle on
purpose: the append-only triggers are dropped through the store's own connection, then
rows are edited with plain SQL.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from typing import Any

import pytest

from treadle.errors import InputError, StoreError
from treadle.store import open_store
from treadle.store.audit_log import GENESIS, AuditEntry, AuditLogStore, chain_hash
from treadle.store.base import Store
from treadle.store.connector import Sql

#: How each dialect drops the triggers that make the table append-only.
DROP_GUARDS = {
    "sqlite": ["DROP TRIGGER treadle_audit_no_update", "DROP TRIGGER treadle_audit_no_delete"],
    "postgres": ["DROP TRIGGER treadle_audit_append_only ON treadle_audit"],
}


def entry(n: int, **kw: Any) -> AuditEntry:
    fields: dict[str, Any] = {"action": "threads.create", "actor": f"user-{n % 3}",
                              "tenant": "t1", "resource": "threads", "resource_id": f"th-{n}",
                              "request_id": f"req-{n}", "outcome": "200",
                              "detail": {"n": n, "path": "/threads", "é": [1.5, None, True]}}
    fields.update(kw)
    return AuditEntry(**fields)


def sql(store: Store, text: str) -> int:
    """Run ``text`` (no parameters) on the store's own connection, as an attacker would."""
    return store.db.execute("tampering", Sql(text))


def drop_guards(store: Store) -> None:
    for text in DROP_GUARDS[store.db.dialect]:
        sql(store, text)


def _append_many(url: str, worker: int, count: int) -> None:
    """A process (or thread) of its own appending ``count`` records, one at a time."""
    store = open_store(url, auto_migrate=False)
    try:
        for i in range(count):
            store.append_audit([entry(worker * 1000 + i, actor=f"w{worker}")])
    finally:
        store.close()


class AuditContract:
    """Backend-independent tests; subclasses provide the ``store`` fixture."""

    def test_the_store_is_an_audit_log(self, store: Store) -> None:
        assert isinstance(store, AuditLogStore)
        assert store.audit_head() == (0, GENESIS)
        assert store.list_audit() == []
        verdict = store.verify_audit()
        assert verdict.ok and verdict.records == 0 and verdict.head_seq == 0

    def test_appends_are_numbered_timed_and_chained(self, store: Store) -> None:
        before = store.now()
        first = store.append_audit([entry(1), entry(2, tenant=None, resource=None,
                                                    resource_id=None, request_id=None)])
        (third,) = store.append_audit([entry(3, detail={})])
        records = store.list_audit()
        assert records == [*first, third]
        assert [r.seq for r in records] == [1, 2, 3]
        assert records[0].prev_hash == GENESIS
        assert records[1].prev_hash == records[0].hash and records[2].prev_hash == records[1].hash
        for r in records:
            assert before - 1 <= r.at <= store.now() + 1
            assert r.hash == chain_hash(r.seq, r.at, r.actor, r.tenant, r.action, r.resource,
                                        r.resource_id, r.request_id, r.outcome, r.detail,
                                        r.prev_hash)
        doc = records[0].to_json()
        assert doc["detail"] == {"n": 1, "path": "/threads", "é": [1.5, None, True]}
        assert (doc["actor"], doc["tenant"], doc["action"], doc["resource_id"], doc["outcome"]) \
            == ("user-1", "t1", "threads.create", "th-1", "200")
        assert records[1].tenant is None and records[1].request_id is None
        assert store.audit_head() == (3, third.hash)
        verdict = store.verify_audit()
        assert (verdict.ok, verdict.records, verdict.head_seq, verdict.head_hash) == (
            True, 3, 3, third.hash)

    def test_list_filters_and_pages(self, store: Store) -> None:
        store.append_audit([entry(i, action="threads.delete" if i % 2 else "threads.create")
                            for i in range(1, 11)])
        assert [r.seq for r in store.list_audit(after_seq=7, tenant="t1")] == [8, 9, 10]
        assert [r.seq for r in store.list_audit(limit=2, after_seq=2)] == [3, 4]
        assert [r.seq for r in store.list_audit(actor="user-0")] == [3, 6, 9]
        assert [r.seq for r in store.list_audit(action="threads.delete")] == [1, 3, 5, 7, 9]
        assert [r.seq for r in store.list_audit(resource_id="th-4")] == [4]
        assert [r.seq for r in store.list_audit(actor="user-0", action="threads.delete")] == [3, 9]
        store.append_audit([entry(11, tenant="t2"), entry(12, tenant=None)])
        assert [r.seq for r in store.list_audit(tenant="t2")] == [11]
        assert len(store.list_audit(tenant="t1")) == 10
        assert [r.seq for r in store.list_audit(newest=True, limit=3)] == [12, 11, 10]
        assert [r.seq for r in store.list_audit(newest=True, limit=2, after_seq=5,
                                                actor="user-1")] == [4, 1]
        with pytest.raises(InputError, match="limit"):
            store.list_audit(limit=0)
        with pytest.raises(InputError, match="after_seq"):
            store.list_audit(after_seq=-1)

    def test_bad_entries_are_refused_whole(self, store: Store) -> None:
        with pytest.raises(InputError, match="plain JSON"):
            store.append_audit([entry(1), entry(2, detail={"x": float("nan")})])
        with pytest.raises(InputError, match="action"):
            store.append_audit([entry(1, action="")])
        with pytest.raises(InputError, match="actor must be text"):
            store.append_audit([entry(1, actor=7)])
        assert store.list_audit() == []

    def test_the_table_refuses_update_and_delete(self, store: Store) -> None:
        store.append_audit([entry(1), entry(2)])
        with pytest.raises(StoreError, match="append-only"):
            sql(store, "UPDATE treadle_audit SET actor = 'mallory' WHERE seq = 1")
        with pytest.raises(StoreError, match="append-only"):
            sql(store, "DELETE FROM treadle_audit WHERE seq = 2")
        assert [r.actor for r in store.list_audit()] == ["user-1", "user-2"]
        assert store.verify_audit().ok

    def test_a_changed_record_is_found(self, store: Store) -> None:
        store.append_audit([entry(i) for i in range(1, 6)])
        drop_guards(store)
        sql(store, "UPDATE treadle_audit SET actor = 'mallory' WHERE seq = 3")
        verdict = store.verify_audit()
        assert not verdict.ok
        assert (verdict.broken_seq, verdict.records, verdict.head_seq) == (3, 2, 2)
        assert verdict.reason is not None and "changed" in verdict.reason

    def test_a_removed_record_is_found(self, store: Store) -> None:
        store.append_audit([entry(i) for i in range(1, 6)])
        drop_guards(store)
        sql(store, "DELETE FROM treadle_audit WHERE seq = 2")
        verdict = store.verify_audit()
        assert (verdict.ok, verdict.broken_seq) == (False, 2)
        assert verdict.reason is not None and "removed" in verdict.reason

    def test_a_rehashed_record_breaks_the_next_link(self, store: Store) -> None:
        """An attacker who recomputes the changed record's own hash is caught by the next
        record's prev_hash."""
        records = store.append_audit([entry(i) for i in range(1, 5)])
        r = records[1]
        forged = chain_hash(r.seq, r.at, "mallory", r.tenant, r.action, r.resource,
                            r.resource_id, r.request_id, r.outcome, r.detail, r.prev_hash)
        drop_guards(store)
        sql(store, f"UPDATE treadle_audit SET actor = 'mallory', hash = '{forged}' WHERE seq = 2")
        verdict = store.verify_audit()
        assert (verdict.ok, verdict.broken_seq) == (False, 3)
        assert verdict.reason is not None and "prev_hash" in verdict.reason

    def test_a_long_chain_verifies_across_pages(self, store: Store) -> None:
        for start in range(0, 2500, 500):
            store.append_audit([entry(i) for i in range(start, start + 500)])
        verdict = store.verify_audit()
        assert (verdict.ok, verdict.records, verdict.head_seq) == (True, 2500, 2500)

    def test_threads_on_separate_stores_keep_one_chain(self, store: Store) -> None:
        workers, each = 4, 15
        errors: list[BaseException] = []
        barrier = threading.Barrier(workers)

        def run(n: int) -> None:
            try:
                barrier.wait(30)
                _append_many(store.url, n, each)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        records = store.list_audit(limit=1000)
        assert [r.seq for r in records] == list(range(1, workers * each + 1))
        assert sorted(r.actor for r in records) == sorted(
            f"w{n}" for n in range(workers) for _ in range(each))
        assert store.verify_audit().ok

    def test_processes_keep_one_chain(self, store: Store) -> None:
        workers, each = 3, 10
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_append_many, args=(store.url, n, each))
                 for n in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * workers
        verdict = store.verify_audit()
        assert (verdict.ok, verdict.records) == (True, workers * each)

    def test_queued_records_are_stored_and_logged(self, store: Store,
                                                  caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="treadle.audit")
        for i in range(1, 21):
            store.record_audit(entry(i))
        assert store.flush_audit(30)
        records = store.list_audit()
        assert [r.resource_id for r in records] == [f"th-{i}" for i in range(1, 21)]
        lines = [r for r in caplog.records if r.name == "treadle.audit"]
        assert [r.__dict__["audit"]["seq"] for r in lines] == list(range(1, 21))
        assert lines[0].__dict__["audit"] == records[0].to_json()
        assert lines[0].getMessage() == "threads.create threads/th-1 200"

    def test_close_stores_what_is_queued(self, store: Store) -> None:
        other = open_store(store.url, auto_migrate=False)
        for i in range(1, 51):
            other.record_audit(entry(i))
        other.close()
        verdict = store.verify_audit()
        assert (verdict.ok, verdict.records) == (True, 50)

    def test_an_exported_head_catches_a_rewritten_or_shortened_chain(self, store: Store) -> None:
        store.append_audit([entry(i) for i in range(1, 5)])
        head = store.audit_head()
        assert head[0] == 4 and store.verify_audit(head).ok
        assert store.verify_audit((2, store.list_audit()[1].hash)).ok
        # Rewritten whole from seq 2 on: every hash recomputed, the chain holds by itself.
        drop_guards(store)
        prev = store.list_audit()[0].hash
        for r in store.list_audit(after_seq=1):
            forged = chain_hash(r.seq, r.at, "mallory", r.tenant, r.action, r.resource,
                                r.resource_id, r.request_id, r.outcome, r.detail, prev)
            sql(store, f"UPDATE treadle_audit SET actor = 'mallory', prev_hash = '{prev}', "
                       f"hash = '{forged}' WHERE seq = {r.seq}")
            prev = forged
        assert store.verify_audit().ok
        verdict = store.verify_audit(head)
        assert (verdict.ok, verdict.broken_seq) == (False, 4)
        assert verdict.reason is not None and "rewritten" in verdict.reason
        sql(store, "DELETE FROM treadle_audit WHERE seq = 4")
        verdict = store.verify_audit(head)
        assert (verdict.ok, verdict.broken_seq) == (False, 4)
        assert verdict.reason is not None and "ends before seq 4" in verdict.reason
