"""The run queue contract (``RunStore`` and ``TaskStore`` of ``treadle.store``), for every backend.

A backend's test module subclasses :class:`QueueContract` and provides a function-scoped
``store`` fixture yielding a fresh, migrated, empty store::

    from queue_contract import QueueContract

    class TestSqliteQueue(QueueContract):
        @pytest.fixture
        def store(self, tmp_path):
            ...

Leases are short (``TTL``) and tests sleep past them; the backend's clock is the
database's, which is this machine's in tests.
"""

from __future__ import annotations

import threading
import time

import pytest

from treadle.errors import ConfigError, FencedWriteError, IdempotencyKeyError, ThreadBusyError
from treadle.store.base import Store
from treadle.store.checkpoints import ClaimThread, PutWrites, WriteRow
from treadle.store.queue import (
    DEFAULT_MAX_WORKER_LOSSES,
    Event,
    NewRun,
    NewTask,
    QueueStats,
    RunRow,
    TaskRow,
    WorkerInfo,
)
from treadle.store.thread_records import Thread

TTL = 0.05  # a lease that expires during the test
LONG = 60.0  # a lease that does not
EXPIRE = 0.2  # sleep this long to see a TTL lease expire


def new_run(run_id: str, thread_id: str = "t", graph_id: str = "ref:g", **kw: object) -> NewRun:
    return NewRun(run_id=run_id, thread_id=thread_id, graph_id=graph_id,
                  payload=f"payload-{run_id}".encode(), **kw)  # type: ignore[arg-type]


def new_task(key: str, run_id: str, graph_id: str = "ref:g", **kw: object) -> NewTask:
    return NewTask(task_key=key, run_id=run_id, thread_id="t", graph_id=graph_id, node="n",
                   payload=f"task-{key}".encode(), **kw)  # type: ignore[arg-type]


def claim(store: Store, worker: str = "w1", graphs: tuple[str, ...] = ("ref:g",),
          ttl: float = LONG, pickled: bool = False) -> RunRow | None:
    return store.claim_run(worker, list(graphs), pickled, ttl)


def running(store: Store, run_id: str, thread_id: str = "t", **kw: object) -> RunRow:
    """Queue ``run_id`` and claim it (its thread must be free)."""
    store.enqueue_run(new_run(run_id, thread_id, **kw))  # type: ignore[arg-type]
    row = claim(store)
    assert row is not None and row.run_id == run_id
    return row


def worker_info(worker_id: str, graph_ids: tuple[str, ...] = ("ref:g",), *,
                pickled: bool = False, slots: int = 8, running: int = 0) -> WorkerInfo:
    return WorkerInfo(worker_id=worker_id, name=f"host:1:{worker_id}", graph_ids=list(graph_ids),
                      allow_pickled=pickled, slots=slots, running=running, started_at=0.0,
                      heartbeat_at=0.0, expires_at=0.0)


def status(store: Store, run_id: str) -> str:
    row = store.get_run(run_id)
    assert row is not None
    return row.status


def thread_record(store: Store, thread_id: str) -> Thread:
    thread = store.get_thread(thread_id)
    assert thread is not None
    return thread


class QueueContract:
    """Backend-independent tests; subclasses provide the ``store`` fixture."""

    # --- runs: queueing and claiming ---------------------------------------------------
    def test_enqueue_returns_the_pending_row(self, store: Store) -> None:
        before = store.now()
        row = store.enqueue_run(new_run("r1", stream=True, metadata='{"a": 1}', timeout_s=5.0,
                                        max_attempts=4))
        assert (row.run_id, row.thread_id, row.graph_id, row.payload) == (
            "r1", "t", "ref:g", b"payload-r1")
        assert (row.status, row.attempt, row.max_attempts, row.epoch) == ("pending", 0, 4, 0)
        assert row.worker is None and row.lease_expires_at is None and row.cancel is None
        assert row.stream is True and row.timeout_s == 5.0
        assert row.result is None and row.error is None
        assert row.started_at is None and row.ended_at is None
        assert before - 1 <= row.created_at <= store.now() + 1
        assert store.get_run("r1") == row
        assert store.get_run("nope") is None

    def test_now_is_unix_seconds(self, store: Store) -> None:
        assert abs(store.now() - time.time()) < 60

    def test_claims_oldest_first(self, store: Store) -> None:
        for i in range(4):
            store.enqueue_run(new_run(f"r{i}", thread_id=f"t{i}"))
        assert [claim(store).run_id for _ in range(4)] == ["r0", "r1", "r2", "r3"]  # type: ignore[union-attr]
        assert claim(store) is None

    def test_claim_sets_lease_worker_epoch_attempt(self, store: Store) -> None:
        store.enqueue_run(new_run("r1"))
        row = store.claim_run("w1", ["ref:g"], False, 30.0)
        assert row is not None
        assert (row.status, row.worker, row.epoch, row.attempt) == ("running", "w1", 1, 1)
        now = store.now()
        assert row.lease_expires_at is not None and abs(row.lease_expires_at - (now + 30)) < 5
        assert row.started_at is not None and abs(row.started_at - now) < 5
        assert store.get_run("r1") == row

    def test_one_running_run_per_thread_in_queue_order(self, store: Store) -> None:
        store.enqueue_run(new_run("a1", "ta"))
        store.enqueue_run(new_run("a2", "ta"))
        store.enqueue_run(new_run("b1", "tb"))
        first = claim(store)
        assert first is not None and first.run_id == "a1"
        # a2 waits for a1: the next claim skips to another thread.
        second = claim(store)
        assert second is not None and second.run_id == "b1"
        assert claim(store) is None
        assert status(store, "a2") == "pending"
        assert store.finish_run("a1", first.epoch, "success")
        third = claim(store)
        assert third is not None and third.run_id == "a2"

    def test_older_pending_run_blocks_its_thread_for_other_graphs(self, store: Store) -> None:
        # The thread's oldest pending run is for a graph this worker lacks: the newer one
        # (a graph it has) must still wait its turn.
        store.enqueue_run(new_run("r1", graph_id="ref:other"))
        store.enqueue_run(new_run("r2", graph_id="ref:g"))
        assert claim(store, graphs=("ref:g",)) is None
        row = claim(store, graphs=("ref:other",))
        assert row is not None and row.run_id == "r1"

    def test_claim_graph_filter_and_pickled(self, store: Store) -> None:
        store.enqueue_run(new_run("ra", "t1", graph_id="ref:a"))
        store.enqueue_run(new_run("rp", "t2", graph_id="pickle:abc"))
        store.enqueue_run(new_run("rb", "t3", graph_id="ref:b"))
        assert store.claim_run("w", [], False, LONG) is None
        row = store.claim_run("w", ["ref:b"], False, LONG)
        assert row is not None and row.run_id == "rb"
        assert store.claim_run("w", ["ref:b", "ref:c"], False, LONG) is None
        row = store.claim_run("w", [], True, LONG)
        assert row is not None and row.run_id == "rp"
        row = store.claim_run("w", ["ref:a"], True, LONG)
        assert row is not None and row.run_id == "ra"

    def test_ref_graph_named_like_pickle_needs_allow_pickled(self, store: Store) -> None:
        store.enqueue_run(new_run("rp", graph_id="pickle:abc"))
        # Listing the pickled id explicitly is a plain graph match.
        row = store.claim_run("w", ["pickle:abc"], False, LONG)
        assert row is not None and row.run_id == "rp"

    def test_epoch_rises_with_every_claim(self, store: Store) -> None:
        first = running(store, "r1")
        assert first.epoch == 1
        assert store.release_run("r1", first.epoch)
        released = store.get_run("r1")
        assert released is not None
        assert (released.status, released.attempt, released.epoch) == ("pending", 0, 1)
        assert released.worker is None and released.lease_expires_at is None
        second = claim(store, worker="w2")
        assert second is not None
        assert (second.epoch, second.attempt, second.worker) == (2, 1, "w2")
        assert second.started_at == first.started_at  # the first start counts

    # --- multitask strategies ----------------------------------------------------------
    def test_multitask_reject_writes_nothing(self, store: Store) -> None:
        store.enqueue_run(new_run("r1"), multitask="reject")  # a free thread accepts
        with pytest.raises(ThreadBusyError) as info:
            store.enqueue_run(new_run("r2"), multitask="reject")
        assert info.value.thread_id == "t" and info.value.active == ["r1"]
        assert store.get_run("r2") is None
        assert [r.run_id for r in store.list_runs(thread_id="t")] == ["r1"]
        # Running counts as active too; another thread is unaffected.
        claim(store)
        with pytest.raises(ThreadBusyError):
            store.enqueue_run(new_run("r3"), multitask="reject")
        store.enqueue_run(new_run("r4", "other"), multitask="reject")
        assert store.get_run("r3") is None and status(store, "r4") == "pending"

    def test_multitask_enqueue_queues_behind(self, store: Store) -> None:
        r1 = running(store, "r1")
        store.enqueue_run(new_run("r2"), multitask="enqueue")
        store.enqueue_run(new_run("r3"))  # the default
        assert [status(store, r) for r in ("r1", "r2", "r3")] == ["running", "pending", "pending"]
        assert store.get_run("r1").cancel is None  # type: ignore[union-attr]
        assert store.finish_run("r1", r1.epoch, "success")
        assert claim(store).run_id == "r2"  # type: ignore[union-attr]

    @pytest.mark.parametrize(("strategy", "stopped"), [("interrupt", "interrupted"),
                                                       ("rollback", "cancelled")])
    def test_multitask_interrupt_and_rollback(self, store: Store, strategy: str,
                                              stopped: str) -> None:
        r1 = running(store, "r1")
        store.enqueue_run(new_run("r2"))
        new = store.enqueue_run(new_run("r3"), multitask=strategy)
        assert new.status == "pending"
        r2 = store.get_run("r2")
        assert r2 is not None and r2.status == stopped and r2.ended_at is not None
        row = store.get_run("r1")
        assert row is not None and row.status == "running" and row.cancel == strategy
        assert store.heartbeat("w1", [("r1", r1.epoch)], [], LONG).runs == {"r1": strategy}
        assert claim(store) is None  # r1 still holds the thread
        assert store.finish_run("r1", r1.epoch, stopped)
        nxt = claim(store)
        assert nxt is not None and nxt.run_id == "r3"

    def test_multitask_on_a_free_thread_just_queues(self, store: Store) -> None:
        for i, strategy in enumerate(("interrupt", "rollback")):
            row = store.enqueue_run(new_run(f"r{i}", f"t{i}"), multitask=strategy)
            assert row.status == "pending" and row.cancel is None

    # --- idempotency keys ----------------------------------------------------------------
    def test_idempotency_key_returns_the_first_run(self, store: Store) -> None:
        first = store.enqueue_run(new_run("r1", idempotency_key="k", request_hash="h"))
        again = store.enqueue_run(new_run("r2", idempotency_key="k", request_hash="h"))
        assert again.run_id == "r1" and again.payload == first.payload
        assert store.get_run("r2") is None
        assert [r.run_id for r in store.list_runs(thread_id="t")] == ["r1"]
        found = store.get_run_by_key("k", "h")
        assert found is not None and found.run_id == "r1"
        assert store.get_run_by_key("other", "h") is None
        # Once the run ended, a retry still gets it, as it ended.
        r1 = claim(store)
        assert r1 is not None and store.finish_run("r1", r1.epoch, "success", result=b"out")
        done = store.enqueue_run(new_run("r3", idempotency_key="k", request_hash="h"))
        assert (done.run_id, done.status, done.result) == ("r1", "success", b"out")
        # Runs without a key, and with other keys, queue as before.
        store.enqueue_run(new_run("r4"))
        store.enqueue_run(new_run("r5"))
        store.enqueue_run(new_run("r6", idempotency_key="k2", request_hash="h"))
        assert {r.run_id for r in store.list_runs(thread_id="t")} == {"r1", "r4", "r5", "r6"}

    def test_idempotency_key_of_another_request_is_refused(self, store: Store) -> None:
        store.enqueue_run(new_run("r1", idempotency_key="k", request_hash="h1"))
        with pytest.raises(IdempotencyKeyError) as info:
            store.enqueue_run(new_run("r2", "t2", idempotency_key="k", request_hash="h2"))
        assert (info.value.key, info.value.run_id) == ("k", "r1")
        with pytest.raises(IdempotencyKeyError):
            store.get_run_by_key("k", "h2")
        assert store.get_run("r2") is None and store.list_runs(thread_id="t2") == []

    def test_idempotent_retry_makes_no_multitask_decision(self, store: Store) -> None:
        running(store, "r1", idempotency_key="k", request_hash="h")
        for strategy in ("reject", "interrupt", "rollback"):
            row = store.enqueue_run(new_run("r2", idempotency_key="k", request_hash="h"),
                                    multitask=strategy)
            assert row.run_id == "r1" and row.status == "running" and row.cancel is None

    def test_deleting_the_run_frees_its_key(self, store: Store) -> None:
        r1 = running(store, "r1", idempotency_key="k", request_hash="h")
        assert store.finish_run("r1", r1.epoch, "success")
        assert store.delete_runs(["r1"]) == 1
        assert store.get_run_by_key("k", "h") is None
        assert store.enqueue_run(new_run("r2", idempotency_key="k", request_hash="h")).run_id == "r2"

    def test_concurrent_enqueues_with_one_key_make_one_run(self, store: Store) -> None:
        """Creates racing with one key (each its own run and thread id, as stateless runs
        have): one run is queued, and every caller gets it."""
        n = 6
        barrier = threading.Barrier(n)
        got: list[str] = []
        errors: list[BaseException] = []

        def create(i: int) -> None:
            try:
                barrier.wait()
                got.append(store.enqueue_run(new_run(f"r{i}", f"t{i}", idempotency_key="k",
                                                     request_hash="h")).run_id)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        workers = [threading.Thread(target=create, args=(i,)) for i in range(n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        assert len(got) == n and len(set(got)) == 1
        assert [r.run_id for r in store.list_runs(limit=100)] == got[:1]

    def test_unknown_multitask_strategy(self, store: Store) -> None:
        with pytest.raises(ConfigError):
            store.enqueue_run(new_run("r1"), multitask="replace")
        assert store.get_run("r1") is None

    # --- heartbeat, finish, release ----------------------------------------------------
    def test_heartbeat_extends_matching_leases_only(self, store: Store) -> None:
        row = store.enqueue_run(new_run("r1"))
        row = store.claim_run("w1", ["ref:g"], False, 1.0)  # type: ignore[assignment]
        assert row is not None and row.lease_expires_at is not None
        assert store.heartbeat("w2", [("r1", row.epoch)], [], LONG).runs == {}  # other worker
        assert store.heartbeat("w1", [("r1", row.epoch + 1)], [], LONG).runs == {}  # other epoch
        assert store.heartbeat("w1", [("nope", 1)], [], LONG).runs == {}
        assert store.get_run("r1").lease_expires_at == row.lease_expires_at  # type: ignore[union-attr]
        beat = store.heartbeat("w1", [("r1", row.epoch)], [], LONG)
        assert beat.runs == {"r1": None} and beat.tasks == set()
        after = store.get_run("r1")
        assert after is not None and after.lease_expires_at is not None
        assert after.lease_expires_at > row.lease_expires_at + 30
        store.cancel_run("r1")
        assert store.heartbeat("w1", [("r1", row.epoch)], [], LONG).runs == {"r1": "cancel"}

    def test_heartbeat_keeps_a_lease_from_the_sweep(self, store: Store) -> None:
        row = store.enqueue_run(new_run("r1"))
        row = store.claim_run("w1", ["ref:g"], False, 0.5)  # type: ignore[assignment]
        assert row is not None
        for _ in range(4):
            time.sleep(0.2)
            assert store.heartbeat("w1", [("r1", row.epoch)], [], 0.5).runs == {"r1": None}
        assert store.sweep() == []
        assert status(store, "r1") == "running"

    def test_finish_run(self, store: Store) -> None:
        row = running(store, "r1")
        assert store.finish_run("r1", row.epoch, "success", result=b"out")
        done = store.get_run("r1")
        assert done is not None
        assert (done.status, done.result, done.error) == ("success", b"out", None)
        assert done.worker is None and done.lease_expires_at is None and done.ended_at is not None
        # Only once: it is no longer running.
        assert not store.finish_run("r1", row.epoch, "error", error="late")
        assert store.get_run("r1") == done

    def test_finish_run_records_error(self, store: Store) -> None:
        row = running(store, "r1")
        assert store.finish_run("r1", row.epoch, "error", error="boom")
        done = store.get_run("r1")
        assert done is not None and (done.status, done.error) == ("error", "boom")

    def test_finish_run_needs_a_terminal_status(self, store: Store) -> None:
        row = running(store, "r1")
        for bad in ("pending", "running", "done"):
            with pytest.raises((ConfigError, ValueError)):
                store.finish_run("r1", row.epoch, bad)
        assert status(store, "r1") == "running"

    def test_stale_epoch_is_fenced(self, store: Store) -> None:
        store.enqueue_run(new_run("r1"))
        old = store.claim_run("w1", ["ref:g"], False, TTL)
        assert old is not None
        time.sleep(EXPIRE)
        assert store.sweep() == [("r1", "pending")]
        # Swept back to pending under the same epoch: the old worker still cannot finish.
        assert not store.finish_run("r1", old.epoch, "success")
        assert not store.release_run("r1", old.epoch)
        new = claim(store, worker="w2")
        assert new is not None and new.epoch == old.epoch + 1
        assert not store.finish_run("r1", old.epoch, "success", result=b"stale")
        assert not store.release_run("r1", old.epoch)
        assert store.heartbeat("w1", [("r1", old.epoch)], [], LONG).runs == {}
        row = store.get_run("r1")
        assert row is not None and (row.status, row.worker) == ("running", "w2")
        assert store.finish_run("r1", new.epoch, "success", result=b"fresh")
        assert store.get_run("r1").result == b"fresh"  # type: ignore[union-attr]

    def test_release_gives_the_attempt_back(self, store: Store) -> None:
        row = running(store, "r1", max_attempts=1)
        assert store.release_run("r1", row.epoch)
        assert not store.release_run("r1", row.epoch)  # not running any more
        again = claim(store)
        assert again is not None and again.attempt == 1 and again.epoch == 2

    # --- cancel ------------------------------------------------------------------------
    def test_cancel_pending_run_ends_it_at_once(self, store: Store) -> None:
        store.enqueue_run(new_run("r1", "t1"))
        store.enqueue_run(new_run("r2", "t2"))
        store.enqueue_run(new_run("r3", "t3"))
        row = store.cancel_run("r1")
        assert row is not None and row.status == "cancelled" and row.ended_at is not None
        assert store.cancel_run("r2", "interrupt").status == "interrupted"  # type: ignore[union-attr]
        assert store.cancel_run("r3", "rollback").status == "cancelled"  # type: ignore[union-attr]
        assert claim(store) is None

    def test_cancel_running_run_asks_its_worker(self, store: Store) -> None:
        r = running(store, "r1")
        row = store.cancel_run("r1", "interrupt")
        assert row is not None and row.status == "running" and row.cancel == "interrupt"
        assert row.epoch == r.epoch
        assert store.heartbeat("w1", [("r1", r.epoch)], [], LONG).runs == {"r1": "interrupt"}
        assert store.finish_run("r1", r.epoch, "interrupted")

    def test_cancel_terminal_or_unknown_run(self, store: Store) -> None:
        r = running(store, "r1")
        store.finish_run("r1", r.epoch, "success")
        before = store.get_run("r1")
        assert store.cancel_run("r1") == before
        assert store.cancel_run("nope") is None
        with pytest.raises(ConfigError):
            store.cancel_run("r1", "explode")

    # --- sweep -------------------------------------------------------------------------
    def test_sweep_requeues_an_expired_lease(self, store: Store) -> None:
        store.enqueue_run(new_run("r1", "t1"))
        store.enqueue_run(new_run("r2", "t2"))
        expiring = store.claim_run("w1", ["ref:g"], False, TTL)
        assert expiring is not None and expiring.run_id == "r1"
        assert claim(store, worker="w2") is not None  # r2, long lease
        time.sleep(EXPIRE)
        assert store.sweep() == [("r1", "pending")]
        row = store.get_run("r1")
        assert row is not None
        assert (row.status, row.epoch, row.attempt, row.lost) == ("pending", expiring.epoch, 1, 1)
        assert row.worker is None and row.lease_expires_at is None and row.ended_at is None
        assert row.error is not None and "lease" in row.error.lower()
        assert status(store, "r2") == "running"
        assert store.sweep() == []

    def test_sweep_errors_at_max_worker_losses_keeping_the_previous_error(self, store: Store
                                                                           ) -> None:
        # Worker losses have their own budget (TREADLE_MAX_WORKER_LOSSES): max_attempts
        # (here 1) does not end a run whose workers keep dying.
        store.enqueue_run(new_run("r1", max_attempts=1))
        for n in (1, 2):
            row = store.claim_run(f"w{n}", ["ref:g"], False, TTL)
            assert row is not None and row.attempt == n
            time.sleep(EXPIRE)
            assert store.sweep(3) == [("r1", "pending")]
            assert store.get_run("r1").lost == n  # type: ignore[union-attr]
        first_error = store.get_run("r1").error  # type: ignore[union-attr]
        assert first_error and "queued again" in first_error
        assert store.claim_run("w3", ["ref:g"], False, TTL) is not None
        time.sleep(EXPIRE)
        assert store.sweep(3) == [("r1", "error")]
        row = store.get_run("r1")
        assert row is not None and row.status == "error" and row.ended_at is not None
        assert row.lost == 3 and row.error is not None
        assert row.error.startswith("the run's worker died 3 times (killed, OOM or lost); "
                                    "giving up; last: lease of worker w3 expired")
        assert first_error in row.error
        assert claim(store) is None

    def test_the_default_budget_of_worker_losses_is_larger_than_attempts(self, store: Store
                                                                          ) -> None:
        store.enqueue_run(new_run("r1"))  # max_attempts 3
        for _ in range(DEFAULT_MAX_WORKER_LOSSES - 1):
            assert store.claim_run("w", ["ref:g"], False, TTL) is not None
            time.sleep(EXPIRE)
            assert store.sweep() == [("r1", "pending")]
        assert store.claim_run("w", ["ref:g"], False, TTL) is not None
        time.sleep(EXPIRE)
        assert store.sweep() == [("r1", "error")]

    def test_claims_of_an_ended_worker_session_are_swept_before_their_lease(self, store: Store
                                                                            ) -> None:
        session = store.worker_session(4321)
        assert session is not None and session.held()
        store.enqueue_run(new_run("r1", "t1"))
        store.enqueue_run(new_run("r2", "t2"))
        mine = store.claim_run("w1", ["ref:g"], False, LONG, session.key)
        assert mine is not None and mine.run_id == "r1"
        assert claim(store, worker="w2") is not None  # r2: claimed without a session
        store.submit_task(new_task("k1", "r1"))
        assert len(store.claim_tasks("w1", ["ref:g"], False, LONG, 1, session.key)) == 1
        assert store.sweep(check_sessions=True) == []  # alive (or stopped: still alive)
        session.close()  # what the kernel does when the worker's process dies
        assert store.sweep() == []  # its leases are still valid
        assert sorted(store.sweep(check_sessions=True)) == [("k1", "pending"), ("r1", "pending")]
        row = store.get_run("r1")
        assert row is not None and (row.status, row.lost, row.worker) == ("pending", 1, None)
        assert row.error is not None and "worker w1 died" in row.error
        assert status(store, "r2") == "running"
        again = claim(store, worker="w3")
        assert again is not None and (again.run_id, again.epoch) == ("r1", mine.epoch + 1)
        assert store.sweep(check_sessions=True) == []

    @pytest.mark.parametrize(("action", "final"), [("cancel", "cancelled"),
                                                   ("interrupt", "interrupted"),
                                                   ("rollback", "cancelled")])
    def test_sweep_ends_a_cancelled_run(self, store: Store, action: str, final: str) -> None:
        store.enqueue_run(new_run("r1", max_attempts=5))
        assert store.claim_run("w1", ["ref:g"], False, TTL) is not None
        store.cancel_run("r1", action)
        time.sleep(EXPIRE)
        assert store.sweep() == [("r1", final)]
        row = store.get_run("r1")
        assert row is not None and row.status == final and row.ended_at is not None

    # --- listing -----------------------------------------------------------------------
    def test_list_runs_newest_first(self, store: Store) -> None:
        for i in range(5):
            store.enqueue_run(new_run(f"r{i}", thread_id="t" if i % 2 else "u"))
        claim(store)  # r0 on u
        assert [r.run_id for r in store.list_runs()] == ["r4", "r3", "r2", "r1", "r0"]
        assert [r.run_id for r in store.list_runs(limit=2)] == ["r4", "r3"]
        assert [r.run_id for r in store.list_runs(thread_id="t")] == ["r3", "r1"]
        assert [r.run_id for r in store.list_runs(status="running")] == ["r0"]
        assert [r.run_id for r in store.list_runs(thread_id="u", status="pending")] == ["r4", "r2"]
        assert store.list_runs(thread_id="none") == []

    def test_a_negative_limit_or_offset_counts_as_zero(self, store: Store) -> None:
        for i in range(3):
            store.enqueue_run(new_run(f"r{i}", thread_id=f"t{i}"))
        assert store.list_runs(limit=-1) == []
        assert [r.run_id for r in store.list_runs(limit=2, offset=-5)] == ["r2", "r1"]
        r = claim(store)
        assert r is not None and store.put_events(r.run_id, r.epoch, [Event(1, "values", b"a")])
        assert store.read_events(r.run_id, 0, limit=-1) == []

    def test_queue_depth(self, store: Store) -> None:
        assert store.queue_depth() == (0, None)
        store.enqueue_run(new_run("r1", "t1"))
        time.sleep(0.1)
        store.enqueue_run(new_run("r2", "t2"))
        count, age = store.queue_depth()
        assert count == 2 and age is not None and 0.05 <= age < 30
        claim(store)
        claim(store)
        assert store.queue_depth() == (0, None)

    def test_queue_stats_count_what_an_autoscaler_counts(self, store: Store) -> None:
        assert store.queue_stats() == QueueStats(0, 0, None)
        store.enqueue_run(new_run("r1", "t1"))
        time.sleep(0.1)
        store.enqueue_run(new_run("r2", "t1"))  # behind r1 on its thread: still pending
        store.enqueue_run(new_run("r3", "t2"))
        store.enqueue_run(new_run("r4", "t3", graph_id="ref:other"))  # no worker serves it
        stats = store.queue_stats()
        assert (stats.pending, stats.running) == (4, 0)
        assert stats.oldest_pending_age is not None and 0.05 <= stats.oldest_pending_age < 30
        assert [getattr(claim(store), "run_id", None) for _ in range(2)] == ["r1", "r3"]
        stats = store.queue_stats()
        assert (stats.pending, stats.running) == (2, 2)
        assert stats.pending == len(store.list_runs(status="pending"))
        assert stats.oldest_pending_age is not None and stats.oldest_pending_age < 30
        store.cancel_run("r2")
        store.cancel_run("r4")
        r1 = store.get_run("r1")
        assert r1 is not None and store.finish_run("r1", r1.epoch, "success")
        assert store.queue_stats() == QueueStats(0, 1, None)

    # --- tasks -------------------------------------------------------------------------
    def test_submit_task_inserts_once(self, store: Store) -> None:
        running(store, "r1")
        row = store.submit_task(new_task("k1", "r1", max_attempts=2))
        assert isinstance(row, TaskRow)
        assert (row.task_key, row.run_id, row.node, row.payload) == ("k1", "r1", "n", b"task-k1")
        assert (row.status, row.attempt, row.max_attempts, row.epoch) == ("pending", 0, 2, 0)
        assert row.worker is None and row.result is None and row.ended_at is None
        again = store.submit_task(NewTask("k1", "r1", "t", "ref:g", "n", b"other"))
        assert again == row
        assert store.list_tasks("r1") == [row]

    def test_submit_reuses_finished_and_running_tasks(self, store: Store) -> None:
        running(store, "r1")
        store.submit_task(new_task("k1", "r1"))
        store.submit_task(new_task("k2", "r1"))
        claimed = store.claim_tasks("w", ["ref:g"], False, LONG, 2)
        assert [t.task_key for t in claimed] == ["k1", "k2"]
        assert store.finish_task("k1", claimed[0].epoch, "success", result=b"done")
        done = store.submit_task(new_task("k1", "r1"))
        assert (done.status, done.result) == ("success", b"done")
        busy = store.submit_task(new_task("k2", "r1"))
        assert (busy.status, busy.worker, busy.epoch) == ("running", "w", claimed[1].epoch)

    def test_submit_resets_a_failed_task(self, store: Store) -> None:
        running(store, "r1")
        store.submit_task(new_task("k1", "r1"))
        (t,) = store.claim_tasks("w", ["ref:g"], False, LONG, 5)
        assert store.finish_task("k1", t.epoch, "error", error="boom")
        failed = store.get_tasks(["k1"])[0]
        assert (failed.status, failed.error) == ("error", "boom") and failed.ended_at is not None
        again = store.submit_task(new_task("k1", "r1"))
        assert again.status == "pending" and again.worker is None and again.result is None
        assert again.epoch >= t.epoch  # epochs never go back
        (t2,) = store.claim_tasks("w2", ["ref:g"], False, LONG, 5)
        assert t2.task_key == "k1" and t2.epoch > t.epoch and t2.status == "running"
        assert not store.finish_task("k1", t.epoch, "success")

    def test_claim_tasks_oldest_first_up_to_limit(self, store: Store) -> None:
        running(store, "r1")
        keys = [f"k{i}" for i in range(5)]
        for k in keys:
            store.submit_task(new_task(k, "r1"))
        first = store.claim_tasks("w", ["ref:g"], False, 30.0, 3)
        assert [t.task_key for t in first] == keys[:3]
        now = store.now()
        for t in first:
            assert (t.status, t.worker, t.epoch, t.attempt) == ("running", "w", 1, 1)
            assert t.lease_expires_at is not None and abs(t.lease_expires_at - (now + 30)) < 5
        rest = store.claim_tasks("w2", ["ref:g"], False, 30.0, 3)
        assert [t.task_key for t in rest] == keys[3:]
        assert store.claim_tasks("w", ["ref:g"], False, 30.0, 3) == []
        assert store.get_tasks(keys) == first + rest

    def test_claim_tasks_graph_filter(self, store: Store) -> None:
        running(store, "r1")
        store.submit_task(new_task("ka", "r1", graph_id="ref:a"))
        store.submit_task(new_task("kp", "r1", graph_id="pickle:x"))
        assert store.claim_tasks("w", ["ref:b"], False, LONG, 10) == []
        assert [t.task_key for t in store.claim_tasks("w", [], True, LONG, 10)] == ["kp"]
        assert [t.task_key for t in store.claim_tasks("w", ["ref:a"], False, LONG, 10)] == ["ka"]

    def test_tasks_of_a_run_not_running_are_not_claimed(self, store: Store) -> None:
        store.enqueue_run(new_run("r1"))
        store.submit_task(new_task("k1", "r1"))  # run still pending
        assert store.claim_tasks("w", ["ref:g"], False, LONG, 10) == []
        r = claim(store)
        assert r is not None
        assert store.finish_run("r1", r.epoch, "cancelled")
        assert store.claim_tasks("w", ["ref:g"], False, LONG, 10) == []
        running(store, "r2")
        store.submit_task(new_task("k2", "r2"))
        assert [t.task_key for t in store.claim_tasks("w", ["ref:g"], False, LONG, 10)] == ["k2"]

    def test_a_pending_task_of_an_ended_run_is_adopted(self, store: Store) -> None:
        store.enqueue_run(new_run("r1", "t1"))
        r = claim(store)
        assert r is not None
        store.submit_task(new_task("k1", "r1"))
        assert store.finish_run("r1", r.epoch, "error", error="gave up")
        store.enqueue_run(new_run("r2", "t1"))  # resumes the thread: plans the same task key
        r2 = claim(store)
        assert r2 is not None and r2.run_id == "r2"
        adopted = store.submit_task(new_task("k1", "r2"))
        assert (adopted.status, adopted.run_id) == ("pending", "r2")
        assert [t.task_key for t in store.claim_tasks("w", ["ref:g"], False, LONG, 10)] == ["k1"]

    def test_finish_task_is_fenced(self, store: Store) -> None:
        running(store, "r1")
        store.submit_task(new_task("k1", "r1"))
        (old,) = store.claim_tasks("w1", ["ref:g"], False, TTL, 1)
        time.sleep(EXPIRE)
        assert store.sweep() == [("k1", "pending")]
        assert not store.finish_task("k1", old.epoch, "success")  # pending, same epoch
        (new,) = store.claim_tasks("w2", ["ref:g"], False, LONG, 1)
        assert new.epoch == old.epoch + 1 and new.attempt == 2
        assert not store.finish_task("k1", old.epoch, "success", result=b"stale")
        assert store.finish_task("k1", new.epoch, "success", result=b"fresh")
        row = store.get_tasks(["k1"])[0]
        assert (row.status, row.result, row.worker) == ("success", b"fresh", None)
        assert row.ended_at is not None and row.lease_expires_at is None
        assert not store.finish_task("k1", new.epoch, "error")  # only once

    def test_finish_task_needs_success_or_error(self, store: Store) -> None:
        running(store, "r1")
        store.submit_task(new_task("k1", "r1"))
        (t,) = store.claim_tasks("w", ["ref:g"], False, LONG, 1)
        with pytest.raises((ConfigError, ValueError)):
            store.finish_task("k1", t.epoch, "cancelled")

    def test_task_heartbeat(self, store: Store) -> None:
        running(store, "r1")
        store.submit_task(new_task("k1", "r1"))
        (t,) = store.claim_tasks("w1", ["ref:g"], False, 1.0, 1)
        assert store.heartbeat("w2", [], [("k1", t.epoch)], LONG).tasks == set()
        assert store.heartbeat("w1", [], [("k1", t.epoch + 1)], LONG).tasks == set()
        beat = store.heartbeat("w1", [], [("k1", t.epoch), ("nope", 1)], LONG)
        assert beat.tasks == {"k1"} and beat.runs == {}
        row = store.get_tasks(["k1"])[0]
        assert row.lease_expires_at is not None and t.lease_expires_at is not None
        assert row.lease_expires_at > t.lease_expires_at + 30

    def test_task_lease_expiry(self, store: Store) -> None:
        running(store, "r1")
        store.submit_task(new_task("k1", "r1", max_attempts=2))
        store.submit_task(new_task("k2", "r1"))
        store.claim_tasks("w1", ["ref:g"], False, TTL, 1)  # k1
        store.claim_tasks("w1", ["ref:g"], False, LONG, 1)  # k2, long lease
        time.sleep(EXPIRE)
        assert store.sweep() == [("k1", "pending")]
        row = store.get_tasks(["k1"])[0]
        assert (row.status, row.worker, row.lease_expires_at) == ("pending", None, None)
        store.claim_tasks("w2", ["ref:g"], False, TTL, 1)
        time.sleep(EXPIRE)
        assert store.sweep() == [("k1", "error")]
        row = store.get_tasks(["k1"])[0]
        assert row.status == "error" and row.error and "lease" in row.error.lower()
        assert store.get_tasks(["k2"])[0].status == "running"

    def test_get_and_list_tasks(self, store: Store) -> None:
        running(store, "r1")
        running(store, "r2", thread_id="t2")
        a = store.submit_task(new_task("a", "r1"))
        b = store.submit_task(new_task("b", "r2"))
        c = store.submit_task(new_task("c", "r1"))
        assert store.get_tasks([]) == []
        assert store.get_tasks(["c", "missing", "a"]) == [a, c]
        assert store.list_tasks("r1") == [a, c]
        assert store.list_tasks("r2") == [b]
        assert store.list_tasks("none") == []

    # --- stream events -----------------------------------------------------------------
    def test_events_are_fenced_by_the_run_epoch(self, store: Store) -> None:
        store.enqueue_run(new_run("r1"))
        old = store.claim_run("w1", ["ref:g"], False, LONG)
        assert old is not None
        assert not store.put_events("r1", old.epoch + 1, [Event(1, "values", b"x")])
        assert not store.put_events("nope", 1, [Event(1, "values", b"x")])
        assert store.read_events("r1", 0) == []
        assert store.put_events("r1", old.epoch, [Event(1, "values", b"a"), Event(2, "updates", b"b")])
        store.release_run("r1", old.epoch)
        new = claim(store, worker="w2")
        assert new is not None
        assert not store.put_events("r1", old.epoch, [Event(3, "values", b"stale")])
        assert store.put_events("r1", new.epoch, [Event(3, "values", b"c")])
        assert store.read_events("r1", 0) == [Event(1, "values", b"a"), Event(2, "updates", b"b"),
                                             Event(3, "values", b"c")]

    def test_events_read_after_seq_and_duplicates_ignored(self, store: Store) -> None:
        r = running(store, "r1")
        assert store.put_events("r1", r.epoch, [Event(i, "custom", b"%d" % i) for i in range(1, 6)])
        assert store.put_events("r1", r.epoch, [Event(3, "custom", b"dup"), Event(6, "end", b"")])
        assert store.put_events("r1", r.epoch, [])
        events = store.read_events("r1", 2)
        assert [e.seq for e in events] == [3, 4, 5, 6]
        assert events[0].data == b"3" and events[-1] == Event(6, "end", b"")
        assert [e.seq for e in store.read_events("r1", 0, limit=2)] == [1, 2]
        assert store.read_events("r1", 6) == []
        assert store.read_events("other", 0) == []

    def test_a_big_batch_of_events_is_stored_whole(self, store: Store) -> None:
        r = running(store, "r1")
        batch = [Event(i, "custom", b"%d" % i) for i in range(1, 1202)]  # several statements
        assert store.put_events("r1", r.epoch, batch)
        assert store.put_events("r1", r.epoch, [Event(1, "custom", b"dup"), Event(1202, "end", b"")])
        assert store.read_events("r1", 0, limit=5000) == [*batch, Event(1202, "end", b"")]

    def test_claim_and_finish_keep_the_thread_record_in_step(self, store: Store) -> None:
        from treadle.store.thread_records import ThreadUpdate

        store.ensure_thread("t")
        r = running(store, "r1", "t")
        assert thread_record(store, "t").status == "busy"
        stale = ThreadUpdate("t", "error", error="from a stale epoch")
        assert not store.finish_run("r1", r.epoch + 1, "error", thread=stale)
        assert thread_record(store, "t").status == "busy"  # a refused finish writes nothing
        done = ThreadUpdate("t", "interrupted", values={"n": 1}, interrupts={"task": [{"v": 1}]})
        assert store.finish_run("r1", r.epoch, "interrupted", thread=done)
        t = thread_record(store, "t")
        assert (t.status, t.values, t.interrupts) == ("interrupted", {"n": 1}, {"task": [{"v": 1}]})
        running(store, "r2", "no-record")  # a thread without a record: nothing to update
        assert store.get_thread("no-record") is None

    def test_a_run_given_up_by_the_sweeper_frees_its_thread_record(self, store: Store) -> None:
        store.ensure_thread("t")
        store.enqueue_run(new_run("r1", "t", max_attempts=1))
        assert claim(store, ttl=TTL) is not None
        assert thread_record(store, "t").status == "busy"
        time.sleep(EXPIRE)
        assert store.sweep(1) == [("r1", "error")]
        assert thread_record(store, "t").status == "error"

    def test_purge_events_keeps_recent_and_active_runs(self, store: Store) -> None:
        done = running(store, "r1")
        assert store.put_events("r1", done.epoch, [Event(1, "values", b"a")])
        assert store.finish_run("r1", done.epoch, "success")
        active = running(store, "r2", "t2")
        assert store.put_events("r2", active.epoch, [Event(1, "values", b"b")])
        assert store.purge_events(3600) == 0  # ended just now: kept
        assert len(store.read_events("r1", 0)) == 1
        time.sleep(0.05)
        assert store.purge_events(0.01) == 1  # ended longer ago than the retention
        assert store.read_events("r1", 0) == []
        assert len(store.read_events("r2", 0)) == 1  # still running: never purged

    def test_delete_runs_only_finished_ones(self, store: Store) -> None:
        done = running(store, "r1")
        assert store.put_events("r1", done.epoch, [Event(1, "values", b"a")])
        assert store.finish_run("r1", done.epoch, "success")
        running(store, "r2", "t2")
        assert store.delete_runs(["r1", "r2", "nope"]) == 1
        assert store.get_run("r1") is None and store.read_events("r1", 0) == []
        assert store.get_run("r2") is not None
        assert [r.run_id for r in store.list_runs(limit=1, offset=0)] == ["r2"]
        assert store.list_runs(limit=10, offset=1) == []

    def test_events_only_while_running(self, store: Store) -> None:
        r = running(store, "r1")
        assert store.put_events("r1", r.epoch, [Event(1, "end", b"")])
        assert store.finish_run("r1", r.epoch, "success")
        assert not store.put_events("r1", r.epoch, [Event(2, "late", b"")])
        store.enqueue_run(new_run("r2", "t2"))
        s = claim(store, ttl=TTL)
        assert s is not None
        time.sleep(EXPIRE)
        assert store.sweep() == [("r2", "pending")]
        # Back in the queue with the same epoch: the lost worker's events are refused.
        assert not store.put_events("r2", s.epoch, [Event(1, "stale", b"")])
        assert store.read_events("r1", 0) == [Event(1, "end", b"")]
        assert store.read_events("r2", 0) == []

    # --- graphs ------------------------------------------------------------------------
    def test_graphs(self, store: Store) -> None:
        assert store.get_graph("pickle:abc") is None
        store.put_graph("pickle:abc", b"\x80\x04blob")
        store.put_graph("pickle:abc", b"\x80\x04blob")  # idempotent
        assert store.get_graph("pickle:abc") == b"\x80\x04blob"
        store.put_graph("pickle:def", b"other")
        assert store.get_graph("pickle:def") == b"other"

    # --- the thread claim of a cluster run ---------------------------------------------
    def test_thread_claim_is_fenced_by_the_run_epoch(self, store: Store) -> None:
        r = running(store, "r1")
        assert store.apply(ClaimThread("t", token="a", run_id="r1", run_epoch=r.epoch)) == 1
        assert store.release_run("r1", r.epoch)
        new = claim(store, worker="w2")
        assert new is not None and new.epoch == r.epoch + 1
        # The old execution cannot take the thread back.
        with pytest.raises(FencedWriteError) as info:
            store.apply(ClaimThread("t", token="b", run_id="r1", run_epoch=r.epoch))
        assert info.value.current_epoch == 1
        assert store.thread_epoch("t") == 1
        # The owner is unchanged: "a" still writes, "b" does not.
        assert store.apply(self._writes("a", "x")) is None
        with pytest.raises(FencedWriteError):
            store.apply(self._writes("b", "y"))
        # The current execution claims.
        assert store.apply(ClaimThread("t", token="c", run_id="r1", run_epoch=new.epoch)) == 2
        with pytest.raises(FencedWriteError):
            store.apply(self._writes("a", "z"))
        assert store.apply(self._writes("c", "z")) is None
        # A finished run claims nothing; an unknown run neither (thread without a row: 0).
        assert store.finish_run("r1", new.epoch, "success")
        with pytest.raises(FencedWriteError):
            store.apply(ClaimThread("t", token="d", run_id="r1", run_epoch=new.epoch))
        with pytest.raises(FencedWriteError) as info:
            store.apply(ClaimThread("fresh", token="e", run_id="nope", run_epoch=1))
        assert info.value.current_epoch == 0 and store.thread_epoch("fresh") == 0
        # A claim without a run is not fenced.
        assert store.apply(ClaimThread("t", token="f")) == 3

    @staticmethod
    def _writes(token: str, task: str) -> PutWrites:
        return PutWrites("t", checkpoint_ns="", checkpoint_id="c1", upsert=False, token=token,
                         rows=[WriteRow(task_id=task, idx=0, channel="ch", type="json", blob=b"1")])

    # --- workers: who is alive, serving which graphs ----------------------------------
    def test_registered_workers_are_listed_with_what_they_serve(self, store: Store) -> None:
        assert store.list_workers() == []
        before = store.now()
        store.register_worker(worker_info("a", ("ref:g", "ref:h"), slots=4, running=1), LONG)
        store.register_worker(worker_info("b", (), pickled=True), LONG)
        [a, b] = store.list_workers()
        assert (a.worker_id, a.name, a.graph_ids, a.allow_pickled, a.slots, a.running) == (
            "a", "host:1:a", ["ref:g", "ref:h"], False, 4, 1)
        assert (b.worker_id, b.graph_ids, b.allow_pickled) == ("b", [], True)
        assert before - 1 <= a.started_at <= a.heartbeat_at <= store.now() + 1
        assert a.expires_at >= a.heartbeat_at + LONG - 1
        # Who serves a graph: by name, or any worker taking pickled graphs.
        assert [w.worker_id for w in store.list_workers("ref:h")] == ["a"]
        assert [w.worker_id for w in store.list_workers("pickle:abc")] == ["b"]
        assert store.list_workers("ref:nobody") == []

    def test_a_heartbeat_refreshes_a_worker_and_keeps_its_start(self, store: Store) -> None:
        store.register_worker(worker_info("a"), LONG)
        [first] = store.list_workers()
        time.sleep(0.02)
        store.register_worker(worker_info("a", ("ref:g", "ref:new"), running=3), LONG)
        [again] = store.list_workers()
        assert again.started_at == first.started_at
        assert again.heartbeat_at > first.heartbeat_at
        assert (again.graph_ids, again.running) == (["ref:g", "ref:new"], 3)

    def test_a_worker_without_heartbeat_expires_and_a_stopped_one_is_gone(
            self, store: Store) -> None:
        store.register_worker(worker_info("dying"), TTL)
        store.register_worker(worker_info("stopping"), LONG)
        store.register_worker(worker_info("staying"), LONG)
        store.remove_worker("stopping")
        store.remove_worker("unknown")  # no error
        time.sleep(EXPIRE)
        assert [w.worker_id for w in store.list_workers()] == ["staying"]
        assert store.list_workers("ref:g")[0].worker_id == "staying"
        # A dead worker that beats again is live again (a long pause is not a death).
        store.register_worker(worker_info("dying"), LONG)
        assert {w.worker_id for w in store.list_workers()} == {"dying", "staying"}

    def test_expiring_a_pending_run_ends_it_for_good(self, store: Store) -> None:
        store.enqueue_run(new_run("r1"))
        store.enqueue_run(new_run("r2"))  # same thread, behind r1
        row = store.expire_pending_run("r1", "not claimed within 5s")
        assert row is not None and row.status == "cancelled"
        assert row.error == "not claimed within 5s" and row.ended_at is not None
        # No worker claims it later; the thread's next run is claimable at once.
        got = claim(store)
        assert got is not None and got.run_id == "r2"
        # A run claimed meanwhile is left alone.
        after = store.expire_pending_run("r2", "late")
        assert after is not None and after.status == "running" and after.error is None
        assert store.expire_pending_run("nope", "x") is None

    def test_run_progress_reads_every_waited_run_at_once(self, store: Store) -> None:
        assert store.run_progress([]) == {}
        store.enqueue_run(new_run("r1", thread_id="t1"))
        store.enqueue_run(new_run("r2", thread_id="t2"))
        assert store.run_progress(["r1", "r2", "gone"]) == {"r1": ("pending", 0),
                                                            "r2": ("pending", 0)}
        r1 = claim(store)
        assert r1 is not None and r1.run_id == "r1"
        assert store.put_events("r1", r1.epoch, [Event(seq=1, kind="chunk", data=b"a"),
                                                 Event(seq=2, kind="chunk", data=b"b")])
        assert store.finish_run("r1", r1.epoch, "success")
        assert store.run_progress(["r1", "r2"]) == {"r1": ("success", 2), "r2": ("pending", 0)}
        many = [f"x{i}" for i in range(2000)] + ["r2"]  # one read, whatever the number
        assert store.run_progress(many) == {"r2": ("pending", 0)}
