"""The run queue on PostgreSQL: semantics, concurrent claimers, LISTEN/NOTIFY, run-fenced claims."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from priority_contract import PriorityContract
from queue_contract import QueueContract
from treadle.errors import ConfigError, FencedWriteError, StoreError, ThreadBusyError
from treadle.store import Store, open_store
from treadle.store.checkpoints import ClaimThread
from treadle.store.drivers.postgres_listen import PgListener
from treadle.store.queue import (
    CHANNEL_CANCEL,
    CHANNEL_EVENTS,
    CHANNEL_RUN_DONE,
    CHANNEL_RUNS,
    CHANNEL_TASK_DONE,
    CHANNEL_TASKS,
    CHANNELS,
    Event,
    NewRun,
    NewTask,
)

pytestmark = pytest.mark.postgres

G = "ref:graph"


def _run(run_id: str, thread_id: str = "t1", graph_id: str = G, **kw: object) -> NewRun:
    return NewRun(run_id, thread_id, graph_id, f"payload-{run_id}".encode(), **kw)  # type: ignore[arg-type]


def _task(key: str, run_id: str, *, node: str = "n", graph_id: str = G, payload: bytes = b"in",
          max_attempts: int = 3) -> NewTask:
    return NewTask(key, run_id, "t1", graph_id, node, payload, max_attempts=max_attempts)


def _expire(url: str, table: str = "treadle_runs") -> None:
    """Push every lease into the past (as if the worker had died long ago)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET lease_expires_at = clock_timestamp() - interval '1 s' "
                     "WHERE status = 'running'")


class TestPostgresQueue(QueueContract):
    """The backend-independent run queue contract (tests/queue_contract.py)."""

    @pytest.fixture
    def store(self, pg_url: str) -> Iterator[Store]:
        store = open_store(pg_url, auto_migrate=True)
        try:
            yield store
        finally:
            store.close()


def _sql(url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


# --- runs ----------------------------------------------------------------------------------


def test_enqueue_and_claim_round_trip(pg_store: Store) -> None:
    before = pg_store.now()
    row = pg_store.enqueue_run(_run("r1", timeout_s=12.5, stream=True, metadata='{"a": 1}',
                                    max_attempts=5))
    assert (row.run_id, row.thread_id, row.graph_id, row.payload) == ("r1", "t1", G, b"payload-r1")
    assert (row.status, row.attempt, row.max_attempts, row.epoch) == ("pending", 0, 5, 0)
    assert (row.timeout_s, row.stream, row.metadata, row.cancel) == (12.5, True, '{"a": 1}', None)
    assert row.worker is None and row.lease_expires_at is None and row.started_at is None
    assert before - 1 <= row.created_at <= pg_store.now() + 1
    assert pg_store.get_run("r1") == row

    claimed = pg_store.claim_run("w1", [G], False, 30)
    assert claimed is not None and claimed.run_id == "r1"
    assert (claimed.status, claimed.worker, claimed.epoch, claimed.attempt) == ("running", "w1", 1, 1)
    assert claimed.lease_expires_at is not None and claimed.started_at is not None
    assert 28 < claimed.lease_expires_at - pg_store.now() <= 30
    assert pg_store.claim_run("w2", [G], False, 30) is None
    assert pg_store.get_run("nope") is None


def test_duplicate_run_id_is_a_store_error(pg_store: Store) -> None:
    pg_store.enqueue_run(_run("r1"))
    with pytest.raises(StoreError, match="r1"):
        pg_store.enqueue_run(_run("r1"))


def test_a_thread_runs_one_run_at_a_time_in_queue_order(pg_store: Store) -> None:
    for i in range(3):
        pg_store.enqueue_run(_run(f"a{i}", "ta"))
    pg_store.enqueue_run(_run("b0", "tb"))
    first = pg_store.claim_run("w", [G], False, 30)
    second = pg_store.claim_run("w", [G], False, 30)
    assert first is not None and second is not None
    assert (first.run_id, second.run_id) == ("a0", "b0")
    assert pg_store.claim_run("w", [G], False, 30) is None  # ta busy, tb busy
    assert pg_store.finish_run("a0", first.epoch, "success")
    nxt = pg_store.claim_run("w", [G], False, 30)
    assert nxt is not None and nxt.run_id == "a1"


def test_graph_filter_and_pickled_graphs(pg_store: Store) -> None:
    pg_store.enqueue_run(_run("p", "t1", "pickle:abc"))
    pg_store.enqueue_run(_run("o", "t2", "ref:other"))
    pg_store.enqueue_run(_run("g", "t3", G))
    got = pg_store.claim_run("w", [G], False, 30)
    assert got is not None and got.run_id == "g"
    assert pg_store.claim_run("w", [G], False, 30) is None
    got = pg_store.claim_run("w", [], True, 30)
    assert got is not None and got.run_id == "p"
    got = pg_store.claim_run("w", ["ref:other"], False, 30)
    assert got is not None and got.run_id == "o"


def test_an_older_pending_run_of_another_graph_blocks_its_thread(pg_store: Store) -> None:
    pg_store.enqueue_run(_run("first", "t1", "ref:other"))
    pg_store.enqueue_run(_run("second", "t1", G))
    assert pg_store.claim_run("w", [G], False, 30) is None


def test_multitask_reject_writes_nothing(pg_url: str, pg_store: Store) -> None:
    pg_store.enqueue_run(_run("r1"))
    pg_store.enqueue_run(_run("r2"))
    with pytest.raises(ThreadBusyError) as info:
        pg_store.enqueue_run(_run("r3"), multitask="reject")
    assert info.value.thread_id == "t1" and info.value.active == ["r1", "r2"]
    assert pg_store.get_run("r3") is None
    # A free thread accepts: rejection is only about active runs.
    pg_store.enqueue_run(_run("x1", "free"), multitask="reject")
    with pytest.raises(ConfigError):
        pg_store.enqueue_run(_run("r4"), multitask="sometimes")


@pytest.mark.parametrize(("strategy", "final"), [("interrupt", "interrupted"),
                                                 ("rollback", "cancelled")])
def test_multitask_interrupt_and_rollback(pg_store: Store, strategy: str, final: str) -> None:
    pg_store.enqueue_run(_run("r1"))
    running = pg_store.claim_run("w", [G], False, 30)
    assert running is not None
    pg_store.enqueue_run(_run("r2"))
    new = pg_store.enqueue_run(_run("r3"), multitask=strategy)
    assert new.status == "pending"
    r1, r2 = pg_store.get_run("r1"), pg_store.get_run("r2")
    assert r1 is not None and r2 is not None
    assert (r1.status, r1.cancel) == ("running", strategy)
    assert (r2.status, r2.cancel) == (final, strategy) and r2.ended_at is not None
    beat = pg_store.heartbeat("w", [("r1", running.epoch)], [], 30)
    assert beat.runs == {"r1": strategy}
    assert pg_store.claim_run("w", [G], False, 30) is None  # r3 waits for r1
    assert pg_store.finish_run("r1", running.epoch, "interrupted")
    got = pg_store.claim_run("w", [G], False, 30)
    assert got is not None and got.run_id == "r3"


def test_heartbeat_extends_only_leases_still_held(pg_store: Store) -> None:
    pg_store.enqueue_run(_run("r1", "t1"))
    pg_store.enqueue_run(_run("r2", "t2"))
    a = pg_store.claim_run("w", [G], False, 5)
    b = pg_store.claim_run("other", [G], False, 5)
    assert a is not None and b is not None
    pg_store.enqueue_run(_run("r3", "t3"))
    c = pg_store.claim_run("w", [G], False, 5)
    assert c is not None
    pg_store.submit_task(_task("k1", "r1"))
    (task,) = pg_store.claim_tasks("w", [G], False, 5, 10)
    beat = pg_store.heartbeat(
        "w",
        [("r1", a.epoch), ("r2", b.epoch), ("r3", c.epoch + 1), ("missing", 1)],
        [("k1", task.epoch), ("k-missing", 1)],
        60,
    )
    assert beat.runs == {"r1": None} and beat.tasks == {"k1"}
    r1, r3 = pg_store.get_run("r1"), pg_store.get_run("r3")
    assert r1 is not None and r1.lease_expires_at is not None
    assert r3 is not None and r3.lease_expires_at is not None
    assert r1.lease_expires_at - pg_store.now() > 50
    assert r3.lease_expires_at - pg_store.now() < 6
    assert pg_store.heartbeat("w", [], [], 60).runs == {}


def test_finish_and_release_are_fenced_by_epoch(pg_store: Store) -> None:
    pg_store.enqueue_run(_run("r1"))
    first = pg_store.claim_run("w", [G], False, 30)
    assert first is not None
    assert pg_store.release_run("r1", first.epoch)
    assert not pg_store.release_run("r1", first.epoch)  # no longer running
    released = pg_store.get_run("r1")
    assert released is not None
    assert (released.status, released.attempt, released.worker, released.lease_expires_at) == (
        "pending", 0, None, None)
    second = pg_store.claim_run("w2", [G], False, 30)
    assert second is not None and (second.epoch, second.attempt) == (2, 1)
    assert second.started_at == first.started_at
    assert not pg_store.finish_run("r1", first.epoch, "success")
    assert pg_store.finish_run("r1", second.epoch, "error", error="boom", result=b"r")
    done = pg_store.get_run("r1")
    assert done is not None
    assert (done.status, done.error, done.result, done.worker, done.lease_expires_at) == (
        "error", "boom", b"r", None, None)
    assert done.ended_at is not None
    assert not pg_store.finish_run("r1", second.epoch, "success")
    with pytest.raises(ConfigError):
        pg_store.finish_run("r1", second.epoch, "running")


def test_cancel_run(pg_store: Store) -> None:
    assert pg_store.cancel_run("unknown") is None
    pg_store.enqueue_run(_run("r1", "t1"))
    pg_store.enqueue_run(_run("r2", "t2"))
    pg_store.claim_run("w", [G], False, 30)  # r1
    running = pg_store.cancel_run("r1", "interrupt")
    pending = pg_store.cancel_run("r2")
    assert running is not None and (running.status, running.cancel) == ("running", "interrupt")
    assert pending is not None and (pending.status, pending.cancel) == ("cancelled", "cancel")
    assert pending.ended_at is not None
    again = pg_store.cancel_run("r2", "interrupt")
    assert again is not None and (again.status, again.cancel) == ("cancelled", "cancel")
    with pytest.raises(ConfigError):
        pg_store.cancel_run("r1", "explode")


def test_sweep_recovers_expired_runs(pg_url: str, pg_store: Store) -> None:
    pg_store.enqueue_run(_run("again", "t1"))
    pg_store.enqueue_run(_run("last", "t2"))
    pg_store.enqueue_run(_run("cancelled", "t3"))
    pg_store.enqueue_run(_run("fresh", "t4"))
    for _ in range(3):
        assert pg_store.claim_run("dead", [G], False, 30) is not None
    pg_store.cancel_run("cancelled", "rollback")
    _expire(pg_url)
    live = pg_store.claim_run("alive", [G], False, 30)
    assert live is not None and live.run_id == "fresh"
    with psycopg.connect(pg_url, autocommit=True) as conn:  # "last" has lost 4 workers before
        conn.execute("UPDATE treadle_runs SET lost_count = 4 WHERE run_id = 'last'")
    assert sorted(pg_store.sweep(5)) == [("again", "pending"), ("cancelled", "cancelled"),
                                        ("last", "error")]
    again, last = pg_store.get_run("again"), pg_store.get_run("last")
    assert again is not None and last is not None
    assert (again.epoch, again.attempt, again.worker, again.ended_at) == (1, 1, None, None)
    assert again.error is not None and "lease" in again.error and "dead" in again.error
    assert last.error is not None and "lease" in last.error and last.ended_at is not None
    assert "died 5 times" in last.error and (again.lost, last.lost) == (1, 5)
    assert pg_store.sweep() == []
    retry = pg_store.claim_run("alive", [G], False, 30)
    assert retry is not None and (retry.run_id, retry.epoch, retry.attempt) == ("again", 2, 2)


def test_sweep_at_max_losses_keeps_the_previous_error(pg_url: str, pg_store: Store) -> None:
    pg_store.enqueue_run(_run("r1", max_attempts=1))  # max_attempts does not bound losses
    for _ in range(2):
        assert pg_store.claim_run("w", [G], False, 30) is not None
        _expire(pg_url)
        pg_store.sweep(2)
    row = pg_store.get_run("r1")
    assert row is not None and row.status == "error" and row.error is not None
    assert "giving up" in row.error and "queued again" in row.error


def test_list_runs_and_queue_depth(pg_store: Store) -> None:
    assert pg_store.queue_depth() == (0, None)
    for i in range(4):
        pg_store.enqueue_run(_run(f"r{i}", f"t{i % 2}"))
    time.sleep(0.05)
    claimed = pg_store.claim_run("w", [G], False, 30)
    assert claimed is not None and claimed.run_id == "r0"
    assert [r.run_id for r in pg_store.list_runs()] == ["r3", "r2", "r1", "r0"]
    assert [r.run_id for r in pg_store.list_runs(thread_id="t0")] == ["r2", "r0"]
    assert [r.run_id for r in pg_store.list_runs(status="pending", limit=2)] == ["r3", "r2"]
    assert [r.run_id for r in pg_store.list_runs(thread_id="t1", status="running")] == []
    count, age = pg_store.queue_depth()
    assert count == 3 and age is not None and 0.04 <= age < 30


def test_a_race_lost_for_a_thread_yields_another_run(pg_url: str, pg_store: Store) -> None:
    """Two pending runs of one thread that both look claimable: the partial unique index
    stops the second claim, which moves on to another thread instead of failing."""
    pg_store.enqueue_run(_run("a", "busy"))
    pg_store.enqueue_run(_run("b", "busy"))
    pg_store.enqueue_run(_run("c", "other"))
    with psycopg.connect(pg_url) as racer:  # a claimer of "b", not yet committed
        racer.execute("UPDATE treadle_runs SET status = 'running', epoch = 1 WHERE run_id = 'b'")
        with ThreadPoolExecutor(1) as pool:
            claim = pool.submit(pg_store.claim_run, "w", [G], False, 30)
            time.sleep(0.3)  # the claim of "a" now waits on the unique index entry of "b"
            assert not claim.done()
            racer.commit()
            got = claim.result(10)
    assert got is not None and got.run_id == "c"
    a = pg_store.get_run("a")
    assert a is not None and (a.status, a.epoch) == ("pending", 0)
    assert pg_store.claim_run("w", [G], False, 30) is None


def test_concurrent_claimers_never_double_claim(pg_url: str) -> None:
    threads, per_thread, workers = 20, 5, 8
    setup = open_store(pg_url, auto_migrate=True)
    stores = [open_store(pg_url, auto_migrate=False) for _ in range(workers)]
    try:
        expected: dict[str, list[str]] = {}
        for i in range(per_thread):
            for t in range(threads):
                run_id = f"r-{t}-{i}"
                setup.enqueue_run(_run(run_id, f"t{t}"))
                expected.setdefault(f"t{t}", []).append(run_id)
        lock = threading.Lock()
        running: dict[str, str] = {}
        claimed: list[str] = []
        order: dict[str, list[str]] = {}
        problems: list[str] = []
        total = threads * per_thread
        deadline = time.monotonic() + 120

        def work(index: int) -> None:
            store, me = stores[index], f"w{index}"
            rnd = random.Random(index)
            while time.monotonic() < deadline:
                with lock:
                    if len(claimed) == total:
                        return
                try:
                    run = store.claim_run(me, [G], False, 30)
                except Exception as exc:  # noqa: BLE001 - any error fails the test
                    problems.append(f"{me}: {exc!r}")
                    return
                if run is None:
                    time.sleep(0.002)
                    continue
                with lock:
                    if run.thread_id in running:
                        problems.append(f"{run.run_id} claimed while {running[run.thread_id]} runs")
                    running[run.thread_id] = run.run_id
                    claimed.append(run.run_id)
                    order.setdefault(run.thread_id, []).append(run.run_id)
                time.sleep(rnd.random() * 0.003)
                with lock:
                    del running[run.thread_id]
                if not store.finish_run(run.run_id, run.epoch, "success"):
                    problems.append(f"{run.run_id}: finish fenced")

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(workers)))
        assert problems == []
        assert sorted(claimed) == sorted(r for runs in expected.values() for r in runs)
        assert order == expected  # each thread's runs ran in queue order
        assert all(r.status == "success" and r.epoch == 1 for r in setup.list_runs(limit=1000))
    finally:
        for s in stores:
            s.close()
        setup.close()


# --- tasks ---------------------------------------------------------------------------------


def _running_run(store: Store, run_id: str = "r1", thread_id: str = "t1") -> int:
    store.enqueue_run(_run(run_id, thread_id))
    row = store.claim_run("orchestrator", [G], False, 60)
    assert row is not None and row.run_id == run_id
    return int(row.epoch)


def test_submit_task_is_idempotent_and_retries_failed_ones(pg_store: Store) -> None:
    _running_run(pg_store)
    row = pg_store.submit_task(_task("k1", "r1", payload=b"one"))
    assert (row.status, row.attempt, row.epoch, row.payload, row.node) == ("pending", 0, 0, b"one", "n")
    again = pg_store.submit_task(_task("k1", "r1", payload=b"two"))
    assert again == row
    (claimed,) = pg_store.claim_tasks("w", [G], False, 30, 5)
    assert pg_store.submit_task(_task("k1", "r1", payload=b"two")).status == "running"
    assert pg_store.finish_task("k1", claimed.epoch, "error", error="bad")
    retried = pg_store.submit_task(_task("k1", "r1", payload=b"two", max_attempts=7))
    assert (retried.status, retried.attempt, retried.error, retried.payload, retried.max_attempts) == (
        "pending", 0, None, b"two", 7)
    assert retried.epoch == claimed.epoch  # never lowered: fencing
    (claimed,) = pg_store.claim_tasks("w", [G], False, 30, 5)
    assert claimed.epoch == retried.epoch + 1
    assert pg_store.finish_task("k1", claimed.epoch, "success", result=b"out")
    done = pg_store.submit_task(_task("k1", "r1", payload=b"three"))
    assert (done.status, done.result, done.payload) == ("success", b"out", b"two")


def test_claim_tasks(pg_store: Store) -> None:
    _running_run(pg_store, "r1", "t1")
    pg_store.enqueue_run(_run("idle", "t2"))  # pending: its tasks wait
    for i in range(4):
        pg_store.submit_task(_task(f"k{i}", "r1"))
    pg_store.submit_task(_task("kp", "r1", graph_id="pickle:x"))
    pg_store.submit_task(_task("k-idle", "idle"))
    got = pg_store.claim_tasks("w", [G], False, 30, 3)
    assert [t.task_key for t in got] == ["k0", "k1", "k2"]
    assert all((t.status, t.worker, t.epoch, t.attempt) == ("running", "w", 1, 1) for t in got)
    assert all(t.lease_expires_at is not None for t in got)
    assert [t.task_key for t in pg_store.claim_tasks("w", [G], False, 30, 10)] == ["k3"]
    assert pg_store.claim_tasks("w", [G], False, 30, 10) == []
    assert pg_store.claim_tasks("w", [G], False, 30, 0) == []
    assert [t.task_key for t in pg_store.claim_tasks("w", [], True, 30, 10)] == ["kp"]
    assert [t.task_key for t in pg_store.list_tasks("r1")] == ["k0", "k1", "k2", "k3", "kp"]
    assert [t.task_key for t in pg_store.get_tasks(["k3", "nope", "k1"])] == ["k1", "k3"]
    assert pg_store.get_tasks([]) == []


def test_concurrent_task_claimers_split_the_work(pg_store: Store) -> None:
    _running_run(pg_store)
    for i in range(60):
        pg_store.submit_task(_task(f"k{i:02}", "r1"))
    keys: list[str] = []

    def drain(i: int) -> None:
        while got := pg_store.claim_tasks(f"w{i}", [G], False, 30, 4):
            keys.extend(t.task_key for t in got)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(drain, range(6)))
    assert sorted(keys) == [f"k{i:02}" for i in range(60)]  # each exactly once
    assert all((t.status, t.epoch) == ("running", 1) for t in pg_store.list_tasks("r1"))


def test_finish_task_is_fenced(pg_store: Store) -> None:
    _running_run(pg_store)
    pg_store.submit_task(_task("k1", "r1"))
    (t,) = pg_store.claim_tasks("w", [G], False, 30, 1)
    assert not pg_store.finish_task("k1", t.epoch + 1, "success")
    assert pg_store.finish_task("k1", t.epoch, "success", result=b"x")
    assert not pg_store.finish_task("k1", t.epoch, "error")
    (row,) = pg_store.get_tasks(["k1"])
    assert (row.status, row.result, row.worker, row.lease_expires_at) == ("success", b"x", None, None)
    assert row.ended_at is not None
    with pytest.raises(ConfigError):
        pg_store.finish_task("k1", t.epoch, "cancelled")


def test_sweep_recovers_expired_tasks(pg_url: str, pg_store: Store) -> None:
    _running_run(pg_store)
    pg_store.submit_task(_task("again", "r1"))
    pg_store.submit_task(_task("last", "r1", max_attempts=1))
    assert len(pg_store.claim_tasks("dead", [G], False, 30, 5)) == 2
    _expire(pg_url, "treadle_tasks")
    assert sorted(pg_store.sweep()) == [("again", "pending"), ("last", "error")]
    again, last = pg_store.get_tasks(["again", "last"])
    assert (again.status, again.worker, again.epoch) == ("pending", None, 1)
    assert last.error is not None and "lease" in last.error and last.ended_at is not None


# --- events and graphs ---------------------------------------------------------------------


def test_events_are_fenced_and_kept_as_first_written(pg_store: Store) -> None:
    epoch = _running_run(pg_store)
    assert pg_store.put_events("r1", epoch, [Event(1, "values", b"a"), Event(2, "updates", b"b")])
    assert pg_store.put_events("r1", epoch, [Event(2, "values", b"dup"), Event(3, "end", b"")])
    assert pg_store.put_events("r1", epoch, [])
    assert not pg_store.put_events("r1", epoch + 1, [Event(4, "values", b"late")])
    assert not pg_store.put_events("r1", epoch + 1, [])
    assert not pg_store.put_events("nope", 0, [Event(1, "values", b"x")])
    assert pg_store.read_events("r1", 0) == [
        Event(1, "values", b"a"), Event(2, "updates", b"b"), Event(3, "end", b"")]
    assert pg_store.read_events("r1", 1, limit=1) == [Event(2, "updates", b"b")]
    assert pg_store.read_events("r1", 3) == []


def test_graphs_by_value(pg_store: Store) -> None:
    assert pg_store.get_graph("pickle:abc") is None
    pg_store.put_graph("pickle:abc", b"\x00blob")
    pg_store.put_graph("pickle:abc", b"other")  # idempotent: the hash names the content
    assert pg_store.get_graph("pickle:abc") == b"\x00blob"


# --- LISTEN / NOTIFY -----------------------------------------------------------------------


def _listen(store: Store, channels: Sequence[str]) -> PgListener:
    lst = store.listener(channels)
    assert isinstance(lst, PgListener)
    return lst


@pytest.fixture
def listener(pg_store: Store) -> Iterator[PgListener]:
    lst = _listen(pg_store, CHANNELS)
    try:
        yield lst
    finally:
        lst.close()


def _expect(listener: PgListener, wanted: tuple[str, str], timeout: float = 5.0) -> list[tuple[str, str]]:
    """Everything received until ``wanted`` arrives (fails after ``timeout``)."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{wanted} not received; got {seen}"
        seen += listener.wait(left)
    return seen


def test_notifications(pg_store: Store, listener: PgListener) -> None:
    assert listener.wait(0.05) == []
    pg_store.enqueue_run(_run("r1"))
    # Woke by the notification, not at the timeout: a wait that ran to 3600 s would be failed by
    # pytest's timeout (300 s) first.
    assert listener.wait(3600) == [(CHANNEL_RUNS, "r1")]
    run = pg_store.claim_run("w", [G], False, 30)
    assert run is not None
    pg_store.enqueue_run(_run("r2"))
    _expect(listener, (CHANNEL_RUNS, "r2"))
    pg_store.cancel_run("r1", "interrupt")
    _expect(listener, (CHANNEL_CANCEL, "r1"))
    pg_store.submit_task(_task("k1", "r1"))
    _expect(listener, (CHANNEL_TASKS, "k1"))
    (task,) = pg_store.claim_tasks("w", [G], False, 30, 1)
    pg_store.finish_task("k1", task.epoch, "success")
    _expect(listener, (CHANNEL_TASK_DONE, "k1"))
    pg_store.put_events("r1", run.epoch, [Event(1, "values", b"x")])
    _expect(listener, (CHANNEL_EVENTS, "r1"))
    pg_store.finish_run("r1", run.epoch, "interrupted")
    seen = _expect(listener, (CHANNEL_RUN_DONE, "r1"))
    seen += listener.wait(0.2)
    assert (CHANNEL_RUNS, "r2") in seen  # the thread's next run is claimable now
    pg_store.cancel_run("r2")
    _expect(listener, (CHANNEL_RUN_DONE, "r2"))


def test_a_refused_enqueue_notifies_nothing(pg_store: Store, listener: PgListener) -> None:
    pg_store.enqueue_run(_run("r1"))
    _expect(listener, (CHANNEL_RUNS, "r1"))
    with pytest.raises(ThreadBusyError):
        pg_store.enqueue_run(_run("r2"), multitask="reject")
    assert listener.wait(0.3) == []  # notifications go out with the commit, or not at all


def test_listener_drains_a_burst_in_one_wait(pg_store: Store, listener: PgListener) -> None:
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        with conn.transaction():
            for i in range(5):
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_RUNS, f"r{i}"))
    time.sleep(0.2)
    assert listener.wait(5) == [(CHANNEL_RUNS, f"r{i}") for i in range(5)]


def test_listener_only_hears_its_channels(pg_store: Store) -> None:
    with _listen(pg_store, [CHANNEL_RUN_DONE]) as lst:
        pg_store.enqueue_run(_run("r1"))
        assert lst.wait(0.3) == []
        pg_store.cancel_run("r1")
        assert _expect(lst, (CHANNEL_RUN_DONE, "r1")) == [(CHANNEL_RUN_DONE, "r1")]


def test_listener_survives_losing_its_connection(pg_url: str, pg_store: Store,
                                                 listener: PgListener) -> None:
    pid = _listener_pid(listener)
    _sql(pg_url, "SELECT pg_terminate_backend(%s)", (pid,))
    # The lost connection, reported as nothing (no raise) when it is lost, not at the timeout
    # (a wait that ran to 3600 s would be failed by pytest's timeout, 300 s, first).
    assert listener.wait(3600) == []
    assert listener.wait(0.05) == []  # reconnects and LISTENs again
    assert _listener_pid(listener) != pid
    pg_store.enqueue_run(_run("r1"))
    _expect(listener, (CHANNEL_RUNS, "r1"))


def test_a_listener_that_cannot_connect_at_creation_raises() -> None:
    def connect() -> psycopg.Connection[object]:
        raise StoreError("server down")

    with pytest.raises(StoreError, match="server down"):
        PgListener(connect, [CHANNEL_RUNS])


def test_listener_reconnect_failure_sleeps_and_returns_nothing(pg_url: str, pg_store: Store,
                                                              listener: PgListener,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = listener._connect  # noqa: SLF001
    attempts: list[str] = []
    sleeps: list[float] = []
    real_sleep = time.sleep
    waiter = threading.current_thread()

    def down() -> psycopg.Connection[object]:
        attempts.append("connect")
        raise StoreError("server down")

    def sleep(seconds: float) -> None:
        if threading.current_thread() is waiter:
            sleeps.append(seconds)
        real_sleep(seconds)

    _sql(pg_url, "SELECT pg_terminate_backend(%s)", (_listener_pid(listener),))
    assert listener.wait(2) == []
    listener._connect = down  # type: ignore[method-assign]  # noqa: SLF001
    monkeypatch.setattr(time, "sleep", sleep)
    assert listener.wait(0.3) == []
    monkeypatch.undo()
    # No busy loop while the server is away: one attempt, then it sleeps out the rest of its timeout.
    assert attempts == ["connect"]
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.3, sleeps
    listener._connect = real  # type: ignore[method-assign]  # noqa: SLF001
    assert listener.wait(0.05) == []
    pg_store.enqueue_run(_run("r1"))
    _expect(listener, (CHANNEL_RUNS, "r1"))


def test_closed_listener_returns_nothing(pg_store: Store) -> None:
    lst = _listen(pg_store, [CHANNEL_RUNS])
    lst.close()
    lst.close()
    pg_store.enqueue_run(_run("r1"))
    assert lst.wait(0.1) == []


def test_close_from_another_thread_ends_the_wait(pg_store: Store) -> None:
    lst = _listen(pg_store, [CHANNEL_RUNS])
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(lst.wait, 1.0)
        time.sleep(0.1)
        lst.close()
        assert waiting.result(5) == []
    assert lst._conn is None  # noqa: SLF001


def _listener_pid(listener: PgListener) -> int:
    conn = listener._conn  # noqa: SLF001
    assert conn is not None
    return int(conn.info.backend_pid)


def test_now_is_the_database_clock(pg_store: Store) -> None:
    (db_now,) = _sql(pg_store.url, "SELECT extract(epoch FROM clock_timestamp())::float8")[0]
    assert abs(pg_store.now() - float(db_now)) < 5  # type: ignore[arg-type]


# --- run-fenced thread claims (ClaimThread with run_id / run_epoch) ------------------------


def _owner(url: str, thread_id: str) -> tuple[object, ...] | None:
    rows = _sql(url, "SELECT epoch, owner FROM treadle_threads WHERE thread_id = %s", (thread_id,))
    return rows[0] if rows else None


def test_run_fenced_claim_thread(pg_url: str, pg_store: Store) -> None:
    pg_store.enqueue_run(_run("r1"))
    first = pg_store.claim_run("w1", [G], False, 30)
    assert first is not None
    e1 = pg_store.apply(ClaimThread("t1", token="tok-1", run_id="r1", run_epoch=first.epoch))
    assert e1 == pg_store.thread_epoch("t1") and _owner(pg_url, "t1") == (e1, "tok-1")

    # The lease is taken over: w1's next claim of the thread is refused.
    _expire(pg_url)
    pg_store.sweep()
    second = pg_store.claim_run("w2", [G], False, 30)
    assert second is not None and second.epoch == first.epoch + 1
    with pytest.raises(FencedWriteError) as info:
        pg_store.apply(ClaimThread("t1", token="stale", run_id="r1", run_epoch=first.epoch))
    assert info.value.current_epoch == e1
    assert _owner(pg_url, "t1") == (e1, "tok-1")  # unchanged

    e2 = pg_store.apply(ClaimThread("t1", token="tok-2", run_id="r1", run_epoch=second.epoch))
    assert e2 == e1 + 1 and _owner(pg_url, "t1") == (e2, "tok-2")

    # A finished run cannot claim its thread either.
    assert pg_store.finish_run("r1", second.epoch, "success")
    with pytest.raises(FencedWriteError):
        pg_store.apply(ClaimThread("t1", token="tok-3", run_id="r1", run_epoch=second.epoch))
    assert _owner(pg_url, "t1") == (e2, "tok-2")
    # Claims without a run are not fenced.
    assert pg_store.apply(ClaimThread("t1", token="tok-4")) == e2 + 1


def test_run_fenced_claim_of_an_unknown_run(pg_url: str, pg_store: Store) -> None:
    with pytest.raises(FencedWriteError) as info:
        pg_store.apply(ClaimThread("fresh", token="x", run_id="nope", run_epoch=1))
    assert info.value.current_epoch == 0
    assert pg_store.thread_epoch("fresh") == 0


def test_fenced_claim_fails_alone_in_its_batch(pg_url: str) -> None:
    """A refused run claim fails only its own future; the batch's other writes commit."""
    store = open_store(pg_url, linger=0.05, auto_migrate=True)
    try:
        store.enqueue_run(_run("r1"))
        run = store.claim_run("w", [G], False, 30)
        assert run is not None
        stale = store.submit(ClaimThread("t1", token="a", run_id="r1", run_epoch=run.epoch - 1))
        good = store.submit(ClaimThread("t1", token="b", run_id="r1", run_epoch=run.epoch))
        plain = store.submit(ClaimThread("t2", token="c"))
        with pytest.raises(FencedWriteError):
            stale.result(10)
        assert good.result(10) == 1 and plain.result(10) == 1
        assert _owner(pg_url, "t1") == (1, "b")
    finally:
        store.close()


# --- worker sessions: failover without waiting for the lease -----------------------------
def test_claims_of_an_ended_session_are_swept_before_their_lease(pg_store: Store) -> None:
    session = pg_store.worker_session(1234)
    assert session.held() and session.key == 1234
    pg_store.enqueue_run(_run("r1", "t1"))
    pg_store.enqueue_run(_run("old", "t2"))
    mine = pg_store.claim_run("w", [G], False, 60, session.key)
    assert mine is not None and mine.run_id == "r1"
    assert pg_store.claim_run("old-code", [G], False, 60) is not None  # claims without a lock
    pg_store.submit_task(_task("k1", "r1"))
    assert len(pg_store.claim_tasks("w", [G], False, 60, 1, session.key)) == 1
    # Alive (also stopped: SIGSTOP keeps the session): nothing is taken away.
    assert pg_store.sweep(check_sessions=True) == []
    session.close()  # what the server does when the worker's process dies
    assert pg_store.sweep() == []  # the lease alone: still valid for a minute
    assert sorted(pg_store.sweep(check_sessions=True)) == [("k1", "pending"), ("r1", "pending")]
    row = pg_store.get_run("r1")
    assert row is not None and (row.status, row.lost, row.worker) == ("pending", 1, None)
    assert row.error is not None and "worker w died (its database session ended)" in row.error
    assert row.lease_expires_at is None
    assert pg_store.get_run("old") is not None and pg_store.get_run("old").status == "running"  # type: ignore[union-attr]
    again = pg_store.claim_run("w2", [G], False, 60)
    assert again is not None and (again.run_id, again.epoch) == ("r1", mine.epoch + 1)
    assert pg_store.sweep(check_sessions=True) == []  # claimed without a lock: lease only


def test_a_session_retakes_its_key_after_a_disconnect(pg_url: str, pg_store: Store) -> None:
    session = pg_store.worker_session(99)
    assert session.held()
    first = session.held_since
    pg_store.enqueue_run(_run("r1"))
    assert pg_store.claim_run("w", [G], False, 60, session.key) is not None
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the server drops the session
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_locks "
                     "WHERE locktype = 'advisory' AND objid = 99 AND objsubid = 1")
    assert not session.reconnected
    assert session.held() and session.key == 99  # reconnected, the same key taken again
    assert session.reconnected  # its sweeps wait SESSION_GRACE before judging others
    assert session.held_since is not None and first is not None and session.held_since > first
    assert pg_store.sweep(check_sessions=True) == []  # so its claims stay its own
    other = pg_store.worker_session(99)  # a key still held elsewhere: a new one is drawn
    assert other.held() and other.key != 99
    other.close()
    session.close()
    assert not session.held()


class TestPostgresPriority(PriorityContract):
    """Run priority and fair queuing (tests/priority_contract.py)."""

    @pytest.fixture
    def store(self, pg_store: Store) -> Store:
        return pg_store


def test_a_claim_never_waits_for_another_claims_fairness_mark(pg_url: str) -> None:
    """run_served skips a group row another transaction holds (SKIP LOCKED): claims of one
    group never queue behind each other's commits on that row."""
    from concurrent.futures import ThreadPoolExecutor

    from queue_contract import new_run

    store = open_store(pg_url, auto_migrate=True)
    try:
        store.enqueue_run(new_run("r1", "t1"))
        with psycopg.connect(pg_url) as holder:  # a transaction holding the 'default' row
            holder.execute("SELECT 1 FROM treadle_fair_groups WHERE fair_group = 'default' "
                           "FOR UPDATE")
            pool = ThreadPoolExecutor(1)
            claimed = pool.submit(store.claim_run, "w", ["ref:g"], False, 60.0)
            try:
                row = claimed.result(timeout=30)  # blocked on the row lock: TimeoutError
            finally:
                holder.rollback()  # lets a blocked claim finish, so the pool can stop
                pool.shutdown()
        assert row is not None and row.run_id == "r1"
    finally:
        store.close()


def test_code_older_than_priority_queues_and_claims_on_the_new_schema(pg_url: str) -> None:
    """A rolling upgrade: a pod still running code from before migration 0014 calls the
    functions it knows (the 9-argument enqueue of 0003, the 4-argument claim of 0007); its
    run takes the defaults (priority 0, group 'default') and is claimed."""
    store = open_store(pg_url, auto_migrate=True)
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SELECT * FROM treadle_enqueue_run('old-1', 'old-thread', 'ref:g', "
                     "'\\x00'::bytea, 3, NULL, false, '{}', 'enqueue')")
        row = conn.execute("SELECT priority, fair_group FROM treadle_runs "
                           "WHERE run_id = 'old-1'").fetchone()
        assert row == (0, "default")
        claimed = conn.execute("SELECT run_id, status FROM treadle_claim_run("
                               "'old-worker', ARRAY['ref:g'], false, 60.0)").fetchall()
        assert claimed == [("old-1", "running")]
