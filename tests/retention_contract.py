"""Thread TTLs and storage figures, one contract for every backend (treadle.store.retention).

Real time passes: TTLs are a fraction of a second (in minutes: 0.002 min = 0.12 s) and the
tests poll for the outcome with a generous deadline; nothing asserts how long it took.
Subclasses give ``store`` (a fresh store) and ``second`` (another store on the same
database: a second replica).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from treadle.errors import InputError
from treadle.store import Store
from treadle.store.checkpointer import TreadleSaver
from treadle.store.queue import NewRun
from treadle.store.retention import ThreadStorage, ThreadTTL
from treadle.store.thread_records import Thread

SHORT = ThreadTTL(0.002)  # 0.12 s
DEADLINE = 20.0


def poll(what: str, check: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    """``check()`` once it is truthy; fails after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def claim_all(store: Store) -> list[tuple[str, str]]:
    return store.claim_expired_threads(100)


def put_checkpoints(store: Store, thread_id: str, n: int) -> None:
    """``n`` checkpoints in a chain on ``thread_id``, each with a blob and a pending write."""
    saver = TreadleSaver(store)
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    for i in range(n):
        cp = empty_checkpoint()
        cp["channel_values"] = {"messages": ["x" * 100] * (i + 1)}
        cp["channel_versions"] = {"messages": f"{i + 1:032}.0"}
        config = saver.put(config, cp, {"step": i}, {"messages": f"{i + 1:032}.0"})
        saver.put_writes(config, [("messages", ["w"])], task_id=f"task-{i}")


class RetentionContract:
    """The backend-independent retention contract."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        raise NotImplementedError

    @pytest.fixture
    def second(self) -> Iterator[Store]:
        raise NotImplementedError

    def test_a_new_thread_gets_its_ttl_or_the_default_and_an_existing_one_keeps_its_own(
            self, store: Store) -> None:
        store.put_thread(Thread("own"), ttl=ThreadTTL(60, "keep_latest"))
        store.put_thread(Thread("none"))
        found = store.thread_ttl("own")
        assert found is not None and found[0] == ThreadTTL(60, "keep_latest")
        assert found[1] == pytest.approx(store.now() + 3600, abs=60)
        assert store.thread_ttl("none") is None and store.thread_ttl("missing") is None
        store.default_thread_ttl = ThreadTTL(5)
        try:
            store.put_thread(Thread("defaulted"))
            store.put_thread(Thread("own"), if_exists="do_nothing")  # exists: unchanged
            store.ensure_thread("by-run")  # as a run's thread is made
        finally:
            store.default_thread_ttl = None
        assert store.thread_ttl("defaulted") is not None
        assert store.thread_ttl("defaulted")[0] == ThreadTTL(5)  # type: ignore[index]
        assert store.thread_ttl("by-run")[0] == ThreadTTL(5)  # type: ignore[index]
        assert store.thread_ttl("own")[0] == ThreadTTL(60, "keep_latest")  # type: ignore[index]
        assert store.set_thread_ttl("own", None) and store.thread_ttl("own") is None
        assert not store.set_thread_ttl("missing", SHORT)

    def test_a_ttl_must_be_positive_with_a_known_strategy(self) -> None:
        with pytest.raises(InputError, match="above 0"):
            ThreadTTL(0)
        with pytest.raises(InputError, match="keep_latest"):
            ThreadTTL(1, "archive")

    def test_an_expired_thread_is_claimed_once_then_its_record_deleted(
            self, store: Store) -> None:
        store.put_thread(Thread("short"), ttl=SHORT)
        store.put_thread(Thread("long"), ttl=ThreadTTL(60))
        store.put_thread(Thread("forever"))
        claimed = poll("the short thread to expire", lambda: claim_all(store))
        assert claimed == [("short", "delete")]
        assert claim_all(store) == []  # claimed: not again
        assert store.expired_thread_unchanged("short")
        assert store.delete_expired_thread_record("short")
        assert store.get_thread("short") is None
        assert not store.delete_expired_thread_record("short")
        assert {t.thread_id for t in store.search_threads(limit=10)} == {"long", "forever"}

    def test_a_delete_claim_abandoned_by_its_sweeper_is_taken_again(
            self, store: Store) -> None:
        store.put_thread(Thread("orphan"), ttl=SHORT)
        assert poll("orphan to expire", lambda: claim_all(store)) == [("orphan", "delete")]
        # its sweeper died here; later sweeps release claims older than their retry
        assert store.release_abandoned_claims(600.0) == 0 and claim_all(store) == []
        time.sleep(0.1)
        assert store.release_abandoned_claims(0.05) == 1
        assert claim_all(store) == [("orphan", "delete")]

    def test_an_update_restarts_the_clock_and_voids_a_claim(self, store: Store) -> None:
        store.put_thread(Thread("t"), ttl=SHORT)
        poll("t to expire", lambda: claim_all(store))
        store.patch_thread("t", metadata={"touched": True})  # after the claim
        assert not store.expired_thread_unchanged("t")
        assert not store.delete_expired_thread_record("t")
        assert store.get_thread("t") is not None
        # ... and it expires again SHORT after that update
        assert poll("t to expire again", lambda: claim_all(store)) == [("t", "delete")]

    def test_a_thread_with_a_pending_or_running_run_is_never_claimed(
            self, store: Store) -> None:
        store.put_thread(Thread("busy"), ttl=SHORT)
        store.put_thread(Thread("idle"), ttl=SHORT)
        store.enqueue_run(NewRun(run_id="r1", thread_id="busy", graph_id="ref:g", payload=b""))
        assert poll("idle to expire", lambda: claim_all(store)) == [("idle", "delete")]
        time.sleep(0.3)  # well past busy's TTL too
        assert claim_all(store) == []
        assert store.get_thread("busy") is not None

    def test_a_run_queued_after_the_claim_keeps_the_thread(self, store: Store) -> None:
        store.put_thread(Thread("t"), ttl=SHORT)
        poll("t to expire", lambda: claim_all(store))
        store.enqueue_run(NewRun(run_id="r2", thread_id="t", graph_id="ref:g", payload=b""))
        assert not store.expired_thread_unchanged("t")
        assert not store.delete_expired_thread_record("t")
        assert store.get_thread("t") is not None

    def test_keep_latest_is_claimed_once_until_the_thread_is_updated(
            self, store: Store) -> None:
        store.put_thread(Thread("k"), ttl=ThreadTTL(SHORT.minutes, "keep_latest"))
        assert poll("k to expire", lambda: claim_all(store)) == [("k", "keep_latest")]
        time.sleep(0.3)
        assert claim_all(store) == []  # pruned once; nothing new since
        store.set_thread_state("k", status="idle")  # a run ended: the clock restarts
        assert poll("k to expire again", lambda: claim_all(store)) == [("k", "keep_latest")]

    def test_two_replicas_never_claim_the_same_thread(self, store: Store,
                                                      second: Store) -> None:
        ids = [f"t{i:03}" for i in range(60)]
        for thread_id in ids:
            store.put_thread(Thread(thread_id), ttl=SHORT)
        time.sleep(0.3)
        got: list[str] = []
        while batch := store.claim_expired_threads(7) + second.claim_expired_threads(5):
            got += [t for t, _ in batch]
        assert sorted(got) == ids  # each once, by one replica or the other

    def test_the_storage_figure_counts_every_row_of_the_thread(self, store: Store) -> None:
        store.put_thread(Thread("s", metadata={"owner": "me"}))
        put_checkpoints(store, "s", 3)
        store.enqueue_run(NewRun(run_id="rs", thread_id="s", graph_id="ref:g",
                                 payload=b"p" * 50))
        store.put_thread(Thread("other"))
        put_checkpoints(store, "other", 2)
        figure = store.thread_storage("s")
        rows = {part: n for part, (n, _) in figure.parts.items()}
        assert rows == {"thread": 1, "fence": 1, "checkpoints": 3, "blobs": 3, "writes": 3,
                        "runs": 1, "tasks": 0, "events": 0}
        assert figure.checkpoints == 3
        sizes = {part: size for part, (_, size) in figure.parts.items()}
        assert sizes["runs"] >= 50 + len("rs") + len("s") and sizes["tasks"] == 0
        # blobs: each holds i+1 strings of 100 characters, so the figure grows with them
        assert sizes["blobs"] > 100 * (1 + 2 + 3)
        assert figure.bytes == sum(sizes.values())
        assert figure.as_json()["tables"]["checkpoints"] == {  # type: ignore[index]
            "rows": 3, "bytes": sizes["checkpoints"]}
        store.prune(["s"], "keep_latest")
        pruned = store.thread_storage("s")
        assert pruned.checkpoints == 1 and pruned.bytes < figure.bytes
        empty = store.thread_storage("missing")
        assert isinstance(empty, ThreadStorage) and empty.bytes == 0 and not empty.exists


class SweepContract:
    """The API's sweep (treadle.server.ttl_sweep) on a store at ``url``: real time passes,
    sweeps every 0.2 s."""

    @pytest.fixture
    def url(self) -> Iterator[str]:
        raise NotImplementedError

    @pytest.fixture
    def client(self, url: str) -> Iterator[Any]:
        from fastapi.testclient import TestClient

        from treadle.config import Settings
        from treadle.langgraph_json import Loaded, thread_ttl
        from treadle.server.app import create_app

        config = thread_ttl({"default_ttl": SHORT.minutes}, "test")
        app = create_app(Settings(store=url, ttl_sweep_interval=0.2), {},
                         langgraph=Loaded({}, thread_ttl=config))
        with TestClient(app) as c:
            yield c

    def test_the_sweep_deletes_prunes_and_leaves_busy_threads(self, client: Any, url: str
                                                                ) -> None:
        from treadle import metrics
        from treadle.store import open_store

        deleted_before = metrics.THREADS_SWEPT.labels("delete")._value.get()
        store = open_store(url)
        try:
            # Each thread gets its rows before its short TTL starts: no race with a sweep.
            default = f"default-{uuid.uuid4()}"
            put_checkpoints(store, default, 2)
            made = {name: client.post("/threads", json=body).json()["thread_id"]
                    for name, body in {"kept": {"ttl": {"ttl": 60}}, "latest": {"ttl": 60},
                                       "busy": {"ttl": 60}}.items()}
            put_checkpoints(store, made["latest"], 4)
            store.enqueue_run(NewRun(run_id=f"run-{made['busy']}", thread_id=made["busy"],
                                     graph_id="ref:g", payload=b""))
            for name, strategy in (("latest", "keep_latest"), ("busy", "delete")):
                assert client.patch(f"/threads/{made[name]}", json={
                    "metadata": {}, "ttl": {"ttl": SHORT.minutes, "strategy": strategy}}
                    ).status_code == 200
            assert client.post("/threads", json={"thread_id": default}).status_code == 200
            poll("the default thread to go", lambda: client.get(
                f"/threads/{default}").status_code == 404)
            poll("its checkpoints to go", lambda: store.thread_storage(default).checkpoints == 0)
            poll("the keep_latest thread to be pruned", lambda: client.get(
                f"/threads/{made['latest']}/storage").json()["checkpoints"] == 1)
            time.sleep(0.6)  # several more sweeps
            assert client.get(f"/threads/{made['latest']}").status_code == 200
            assert client.get(f"/threads/{made['kept']}").status_code == 200
            assert client.get(f"/threads/{made['busy']}").status_code == 200  # a pending run
            assert store.get_run(f"run-{made['busy']}") is not None
        finally:
            store.close()
        assert metrics.THREADS_SWEPT.labels("delete")._value.get() >= deleted_before + 1

    def test_thread_ttl_through_the_api(self, client: Any) -> None:
        thread_id = client.post("/threads", json={"ttl": {"ttl": 30, "strategy": "keep_latest"}}
                                ).json()["thread_id"]
        got = client.get(f"/threads/{thread_id}", params={"include": "ttl"}).json()
        assert got["ttl"]["strategy"] == "keep_latest" and got["ttl"]["ttl_minutes"] == 30
        assert "ttl" not in client.get(f"/threads/{thread_id}").json()
        patched = client.patch(f"/threads/{thread_id}", json={"metadata": {}, "ttl": {"ttl": 90}})
        assert patched.status_code == 200
        storage = client.get(f"/threads/{thread_id}/storage").json()
        assert storage["ttl"]["strategy"] == "delete" and storage["ttl"]["ttl_minutes"] == 90
        assert storage["tables"]["thread"]["rows"] == 1 and storage["bytes"] > 0
        for bad in ({"ttl": 0}, {"ttl": "soon"}, {"ttl": 5, "strategy": "archive"},
                    {"minutes": 5}, True):
            answer = client.post("/threads", json={"ttl": bad})
            assert answer.status_code == 422, (bad, answer.text)
        assert client.patch(f"/threads/{thread_id}", json={"metadata": {}, "ttl": -1}
                            ).status_code == 422
        assert client.get("/threads/missing/storage").status_code == 404
