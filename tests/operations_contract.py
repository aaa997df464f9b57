"""What ``GET /operations`` reads from the store, one contract for every backend: runs counted
by status (``run_status_counts``) and the runs the sweeper took back from lost workers
(``failovers``), produced by real sweeps of expired leases as in tests/queue_contract.py.

A backend's test module subclasses :class:`OperationsContract` and provides a
function-scoped ``store`` fixture yielding a fresh, migrated, empty store.
"""

from __future__ import annotations

import time

from queue_contract import EXPIRE, LONG, TTL, claim, new_run
from treadle.store.base import Store
from treadle.store.queue import RUN_STATUSES


def lose(store: Store, run_id: str, worker: str) -> None:
    """Claim ``run_id`` (the claimable run that comes first) on a short lease and let the
    sweeper take it back once the lease has expired."""
    row = store.claim_run(worker, ["ref:g"], False, TTL)
    assert row is not None and row.run_id == run_id
    time.sleep(EXPIRE)
    assert store.sweep() == [(run_id, "pending")]


class OperationsContract:
    """Backend-independent tests; subclasses provide the ``store`` fixture."""

    def test_an_empty_store_counts_zero_of_every_status(self, store: Store) -> None:
        assert store.run_status_counts() == dict.fromkeys(RUN_STATUSES, 0)
        assert list(store.run_status_counts()) == list(RUN_STATUSES)

    def test_runs_are_counted_by_status(self, store: Store) -> None:
        for i, (thread, outcome) in enumerate([
                ("t1", "success"), ("t2", "error"), ("t3", "timeout"), ("t4", "success")]):
            store.enqueue_run(new_run(f"done{i}", thread))
            row = claim(store)
            assert row is not None and store.finish_run(row.run_id, row.epoch, outcome)
        store.enqueue_run(new_run("stopped", "t5"))
        store.cancel_run("stopped", "interrupt")  # pending: interrupted at once
        store.enqueue_run(new_run("dropped", "t6"))
        store.cancel_run("dropped", "cancel")
        store.enqueue_run(new_run("busy", "t7"))
        assert claim(store) is not None
        store.enqueue_run(new_run("behind", "t7"))  # waits behind busy on its thread
        store.enqueue_run(new_run("waiting", "t8"))
        counts = store.run_status_counts()
        assert counts == {"pending": 2, "running": 1, "success": 2, "error": 1,
                          "interrupted": 1, "cancelled": 1, "timeout": 1}
        assert sum(counts.values()) == len(store.list_runs(limit=1000))
        stats = store.queue_stats()  # the /metrics gauges agree with the counts
        assert (stats.pending, stats.running) == (counts["pending"], counts["running"])

    def test_no_failovers_without_lost_workers(self, store: Store) -> None:
        store.enqueue_run(new_run("r1", "t1"))
        row = claim(store)
        assert row is not None and store.finish_run("r1", row.epoch, "error", error="boom")
        store.enqueue_run(new_run("r2", "t2"))
        assert claim(store, ttl=LONG) is not None
        assert store.sweep() == []
        assert store.failovers() == ([], 0)

    def test_failovers_are_the_swept_runs_newest_first(self, store: Store) -> None:
        store.enqueue_run(new_run("old", "t1"))
        store.enqueue_run(new_run("fine", "t2"))
        store.enqueue_run(new_run("new", "t3"))
        lose(store, "old", "w1")
        lose(store, "old", "w2")  # lost twice: still first in line
        again = claim(store, worker="w3")  # old, taken up by a live worker
        assert again is not None and again.run_id == "old"
        fine = claim(store, worker="w3")
        assert fine is not None and fine.run_id == "fine"
        assert store.finish_run("fine", fine.epoch, "success")
        lose(store, "new", "w4")
        found, total = store.failovers()
        assert total == 2
        assert [(f.run_id, f.thread_id, f.graph_id, f.status, f.lost, f.worker)
                for f in found] == [("new", "t3", "ref:g", "pending", 1, None),
                                    ("old", "t1", "ref:g", "running", 2, "w3")]
        assert found[0].error is not None and "lease of worker w4 expired" in found[0].error
        assert found[1].error is not None and "w2" in found[1].error
        new = store.get_run("new")
        assert new is not None and found[0].created_at == new.created_at
        assert found[0].started_at == new.started_at and found[0].ended_at is None
        newest, total = store.failovers(limit=1)
        assert [f.run_id for f in newest] == ["new"] and total == 2

    def test_a_run_given_up_after_its_losses_stays_listed_as_ended(self, store: Store) -> None:
        store.enqueue_run(new_run("r1", "t1"))
        assert store.claim_run("w1", ["ref:g"], False, TTL) is not None
        time.sleep(EXPIRE)
        assert store.sweep(1) == [("r1", "error")]
        (failover,), total = store.failovers()
        assert total == 1
        assert (failover.run_id, failover.status, failover.lost) == ("r1", "error", 1)
        assert failover.ended_at is not None and failover.error is not None
        assert store.run_status_counts()["error"] == 1
