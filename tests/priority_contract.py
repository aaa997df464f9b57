"""Run priority and fair queuing (``RunStore.set_thread_priority``, ``claim_run``), for every
backend. A backend's test module subclasses :class:`PriorityContract` and provides a
function-scoped ``store`` fixture yielding a fresh, migrated, empty store (as for
:mod:`queue_contract`)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from queue_contract import claim, new_run
from treadle.store.base import Store
from treadle.store.queue import ThreadPriority


def queue(store: Store, run_id: str, thread_id: str, priority: int | None = None,
          group: str | None = None) -> None:
    """Queue ``run_id`` on ``thread_id``, giving the thread settings first when asked."""
    if priority is not None or group is not None:
        store.set_thread_priority(thread_id, ThreadPriority(priority or 0, group or "default"))
    store.enqueue_run(new_run(run_id, thread_id))


def claim_order(store: Store) -> list[str]:
    """Claim (and finish) every claimable run, one at a time; their ids in claim order."""
    order = []
    while (row := claim(store)) is not None:
        order.append(row.run_id)
        assert store.finish_run(row.run_id, row.epoch, "success")
    return order


class PriorityContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("a backend's test module provides the store fixture")

    def test_without_settings_claims_stay_oldest_first(self, store: Store) -> None:
        for n in range(6):
            queue(store, f"r{n}", f"t{n % 3}")
        assert claim_order(store) == [f"r{n}" for n in range(6)]

    def test_the_lowest_priority_is_claimed_first_then_the_oldest(self, store: Store) -> None:
        queue(store, "normal", "t0")
        queue(store, "last", "t1", priority=5)
        queue(store, "urgent", "t2", priority=-5)
        queue(store, "soon", "t3", priority=-1)
        queue(store, "soon2", "t4", priority=-1)
        queue(store, "normal2", "t5", priority=0)
        assert claim_order(store) == ["urgent", "soon", "soon2", "normal", "normal2", "last"]

    def test_the_first_settings_stored_win(self, store: Store) -> None:
        assert store.thread_priority("t") is None
        first = store.set_thread_priority("t", ThreadPriority(-2, "tenant-a"))
        assert first == ThreadPriority(-2, "tenant-a")
        assert store.set_thread_priority("t", ThreadPriority(4, "tenant-b")) == first
        assert store.thread_priority("t") == first
        # A thread that already has runs (its row exists) gets settings as well.
        store.enqueue_run(new_run("r", "u"))
        assert store.thread_priority("u") is None
        assert store.set_thread_priority("u", ThreadPriority(1, "g")) == ThreadPriority(1, "g")

    def test_concurrent_first_runs_agree_on_one_setting(self, store: Store) -> None:
        n = 6
        barrier = threading.Barrier(n)
        got: list[ThreadPriority] = []

        def assign(i: int) -> None:
            barrier.wait()
            got.append(store.set_thread_priority("t", ThreadPriority(i - 3, f"g{i}")))

        threads = [threading.Thread(target=assign, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == n and len(set(got)) == 1
        assert store.thread_priority("t") == got[0]

    def test_runs_queued_before_the_settings_keep_the_defaults(self, store: Store) -> None:
        store.enqueue_run(new_run("early", "t0"))
        queue(store, "other", "t1")
        store.set_thread_priority("t0", ThreadPriority(5))
        store.enqueue_run(new_run("late", "t2"))
        store.set_thread_priority("t2", ThreadPriority(-5))
        queue(store, "after", "t0")  # queued after its thread's settings: priority 5
        assert claim_order(store) == ["early", "other", "late", "after"]

    def test_a_burst_in_one_group_does_not_starve_another(self, store: Store) -> None:
        for n in range(200):
            queue(store, f"a{n}", f"ta{n}", group="tenant-a")
        first = claim(store)
        assert first is not None and first.run_id == "a0"
        queue(store, "b0", "tb0", group="tenant-b")
        nxt = claim(store)
        assert nxt is not None and nxt.run_id == "b0"

    def test_groups_take_turns(self, store: Store) -> None:
        for g in "abc":
            for n in range(3):
                queue(store, f"{g}{n}", f"t{g}{n}", group=g)
        assert claim_order(store) == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]

    def test_a_group_never_served_goes_before_one_served(self, store: Store) -> None:
        queue(store, "a0", "ta0", group="a")
        queue(store, "a1", "ta1", group="a")
        assert claim_order(store) == ["a0", "a1"]  # "a" has been served
        queue(store, "a2", "ta2", group="a")
        queue(store, "z0", "tz0", group="z")
        assert claim_order(store) == ["z0", "a2"]

    def test_priority_comes_before_fairness(self, store: Store) -> None:
        for n in range(3):
            queue(store, f"a{n}", f"ta{n}", priority=-1, group="a")
        queue(store, "b0", "tb0", priority=0, group="b")
        assert claim_order(store) == ["a0", "a1", "a2", "b0"]

    def test_a_threads_runs_still_start_in_order_one_at_a_time(self, store: Store) -> None:
        queue(store, "t-1", "t", priority=-3, group="a")
        store.enqueue_run(new_run("t-2", "t"))
        queue(store, "other", "u", group="b")
        first = claim(store)
        assert first is not None and first.run_id == "t-1"
        second = claim(store)
        assert second is not None and second.run_id == "other"  # t is busy
        assert claim(store) is None
        assert store.finish_run(first.run_id, first.epoch, "success")
        third = claim(store)
        assert third is not None and third.run_id == "t-2"

    def test_a_group_whose_best_run_is_another_graphs_is_not_blocked(self, store: Store) -> None:
        store.set_thread_priority("th", ThreadPriority(-5, "a"))
        store.enqueue_run(new_run("h", "th", graph_id="ref:h"))
        queue(store, "a-g", "ta", group="a")
        queue(store, "b-g", "tb", group="b")
        got = claim(store, graphs=("ref:g",))
        assert got is not None and got.run_id == "a-g"

    def test_deleting_a_thread_forgets_its_settings(self, store: Store) -> None:
        store.set_thread_priority("t", ThreadPriority(3, "g"))
        store.delete_thread("t")
        assert store.thread_priority("t") is None

    def test_concurrent_claimers_take_every_run_once(self, store: Store) -> None:
        for n in range(60):
            queue(store, f"r{n}", f"t{n}", priority=n % 3 - 1, group=f"g{n % 4}")
        taken: list[str] = []
        lock = threading.Lock()

        def work(name: str) -> None:
            while (row := claim(store, worker=name)) is not None:
                with lock:
                    taken.append(row.run_id)

        workers = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert Counter(taken) == Counter(f"r{n}" for n in range(60))
