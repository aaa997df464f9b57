"""Checkpoints and fencing, for every backend (SQLite, PostgreSQL).

A backend's test module subclasses :class:`CheckpointContract` and provides ``url`` (a
fresh, empty store) and ``store`` (a migrated store at ``url``). LangChain's checkpointer
conformance suite runs against both too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import BASE_CAPABILITIES, EXTENDED_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from queue_contract import new_run
from treadle.errors import ConfigError, FencedWriteError
from treadle.store import open_store
from treadle.store.base import Store
from treadle.store.checkpointer import TreadleSaver
from treadle.store.checkpoints import (
    BlobRow,
    CheckpointRow,
    ClaimThread,
    ClaimThreadNow,
    PutCheckpoint,
    PutWrites,
    WriteRow,
)
from treadle.store.connector import Sql


def checkpoint(thread_id: str, checkpoint_id: str, *, token: str | None = None,
               run_id: str | None = None, ns: str = "", metadata: dict[str, Any] | None = None,
               ) -> PutCheckpoint:
    version = f"v-{checkpoint_id}"
    row = CheckpointRow(
        thread_id=thread_id, checkpoint_ns=ns, checkpoint_id=checkpoint_id,
        parent_checkpoint_id=None, run_id=run_id, type="json", checkpoint=b"{}",
        channel_versions=json.dumps({"state": version}), metadata_type="json",
        metadata_blob=b"{}", metadata=json.dumps(metadata or {"source": "loop", "step": 1}),
    )
    return PutCheckpoint(thread_id, row=row, blobs=[BlobRow("state", version, "json", b"1")],
                         token=token)


def writes(thread_id: str, checkpoint_id: str, *rows: tuple[str, int, bytes],
           token: str | None = None, upsert: bool = False) -> PutWrites:
    return PutWrites(thread_id, checkpoint_ns="", checkpoint_id=checkpoint_id, upsert=upsert,
                     token=token, rows=[WriteRow(task_id=t, idx=i, channel="ch", type="json",
                                                 blob=b) for t, i, b in rows])


@contextmanager
def one_batch(store: Store) -> Iterator[list[int]]:
    """Hold the store's writer in a commit (of a gate write) while the block runs, so that
    everything submitted inside is committed as one batch afterwards. Yields the sizes of
    the batches applied from then on (the last one is the block's once its results are in)."""
    committer = store._committer
    real = committer._apply
    entered, release = threading.Event(), threading.Event()
    sizes: list[int] = []

    def apply(conn: Any, ops: list[Any]) -> list[Any]:
        if any(op.thread_id == "gate" for op in ops):
            entered.set()
            release.wait(30)
        sizes.append(len(ops))
        return real(conn, ops)

    committer._apply = apply  # type: ignore[method-assign]
    gate = store.submit(writes("gate", "g", ("gate", 0, b"g")))
    try:
        assert entered.wait(30), "the writer never took the gate write"
        yield sizes
    finally:
        release.set()
        assert gate.result(30) is None
        # The recording apply stays: the block's batch is committed after this returns.


def ids(records: Iterator[Any]) -> list[str]:
    return [r.row.checkpoint_id for r in records]


class CheckpointContract:
    # --- conformance ------------------------------------------------------------------
    async def test_langgraph_checkpointer_conformance(self, url: str) -> None:
        @checkpointer_test(name="treadle")
        async def saver() -> Any:
            store = open_store(url, auto_migrate=True)
            try:
                yield TreadleSaver(store)
            finally:
                store.close()

        report = await validate(saver, progress=ProgressCallbacks.quiet())
        failures = {name: r.failures for name, r in report.results.items() if r.passed is not True}
        assert report.passed_all_base(), failures
        for cap in EXTENDED_CAPABILITIES:
            result = report.results.get(cap.value)
            assert result is not None and result.detected and result.passed is True, (cap, failures)
        assert len(BASE_CAPABILITIES | EXTENDED_CAPABILITIES) == 8
        assert report.conformance_level() == "FULL", failures

    # --- fencing ------------------------------------------------------------------------
    def test_claims_raise_the_epoch_and_stale_writes_fail_alone(self, store: Store) -> None:
        assert store.thread_epoch("t") == 0
        assert store.claim_thread("t", "tok-1") == 1
        assert store.claim_thread("t", "tok-2") == 2
        assert store.thread_epoch("t") == 2
        with one_batch(store) as sizes:
            stale = store.submit(checkpoint("t", "c1", token="tok-1"))
            fresh_writes = store.submit(writes("t", "c2", ("task-a", 0, b"a"), token="tok-2"))
            fresh = store.submit(checkpoint("t", "c2", token="tok-2"))
            unfenced = store.submit(checkpoint("elsewhere", "c1"))
        with pytest.raises(FencedWriteError) as info:
            stale.result(10)
        assert info.value.thread_id == "t" and info.value.current_epoch == 2
        assert "another execution has claimed" in str(info.value)
        assert fresh_writes.result(10) is None
        assert fresh.result(10) is None
        assert unfenced.result(10) is None
        assert sizes[-1] == 4  # all four were one transaction
        # Nothing of the stale writer landed; everything of the others did.
        assert store.get_checkpoint("t", "", "c1") is None
        latest = store.get_checkpoint("t", "", None)
        assert latest is not None and latest.row.checkpoint_id == "c2"
        assert [w.task_id for w in latest.writes] == ["task-a"]
        assert [(b.channel, b.version) for b in latest.blobs] == [("state", "v-c2")]
        assert store.get_checkpoint("elsewhere", "", None) is not None

    def test_a_claim_fences_writes_queued_behind_it_in_the_same_batch(self, store: Store) -> None:
        store.claim_thread("t", "tok-1")
        with one_batch(store) as sizes:
            before = store.submit(writes("t", "c1", ("task-a", 0, b"a"), token="tok-1"))
            claim = store.submit(ClaimThread("t", token="tok-2"))
            late = store.submit(writes("t", "c1", ("task-b", 0, b"b"), token="tok-1"))
            new_owner = store.submit(writes("t", "c1", ("task-c", 0, b"c"), token="tok-2"))
        assert before.result(10) is None
        assert claim.result(10) == 2
        with pytest.raises(FencedWriteError):
            late.result(10)
        assert new_owner.result(10) is None
        assert sizes[-1] == 4, sizes
        rows = store.db.all("test", Sql(
            "SELECT task_id FROM treadle_writes WHERE thread_id = 't' ORDER BY task_id"))
        assert [r[0] for r in rows] == ["task-a", "task-c"]

    def test_writes_need_a_claim_and_unfenced_writes_are_accepted(self, store: Store) -> None:
        with pytest.raises(FencedWriteError) as info:  # never claimed: no owner
            store.submit(writes("unclaimed", "c1", ("x", 0, b"x"), token="tok")).result(10)
        assert info.value.current_epoch == 0
        store.claim_thread("t", "tok")
        assert store.submit(writes("t", "c1", ("x", 0, b"x"))).result(10) is None
        assert store.submit(checkpoint("t", "c1")).result(10) is None

    def test_delete_thread_fences_its_running_writer(self, store: Store) -> None:
        assert store.claim_thread("t", "tok") == 1
        store.submit(checkpoint("t", "c1", token="tok")).result(10)
        store.delete_thread("t")
        assert store.thread_epoch("t") == 2
        assert store.get_checkpoint("t", "", None) is None
        with pytest.raises(FencedWriteError):
            store.submit(checkpoint("t", "c2", token="tok")).result(10)
        assert store.get_checkpoint("t", "", None) is None

    def test_a_run_claims_its_thread_only_while_it_holds_the_run(self, store: Store) -> None:
        store.enqueue_run(new_run("r1", thread_id="t"))
        first = store.claim_run("w1", ["ref:g"], False, 60)
        assert first is not None
        assert store.apply(ClaimThreadNow("t", token="tok-a", run_id="r1",
                                          run_epoch=first.epoch)) == 1
        # The run is taken over (handed back and claimed again: its epoch moves on).
        assert store.release_run("r1", first.epoch)
        second = store.claim_run("w2", ["ref:g"], False, 60)
        assert second is not None and second.epoch > first.epoch
        with pytest.raises(FencedWriteError) as info:
            store.apply(ClaimThreadNow("t", token="tok-late", run_id="r1", run_epoch=first.epoch))
        assert info.value.current_epoch == 1  # the thread kept its owner
        assert store.submit(checkpoint("t", "c1", token="tok-a")).result(10) is None
        assert store.apply(ClaimThread("t", token="tok-b", run_id="r1",
                                       run_epoch=second.epoch)) == 2
        with pytest.raises(FencedWriteError):
            store.submit(checkpoint("t", "c2", token="tok-a")).result(10)

    def test_regular_writes_keep_the_first_value_special_ones_the_last(self, store: Store) -> None:
        store.submit(checkpoint("t", "c1")).result(10)
        store.submit(writes("t", "c1", ("a", 0, b"1"), ("a", 0, b"2"))).result(10)
        store.submit(writes("t", "c1", ("a", 0, b"3"), ("a", 1, b"4"))).result(10)
        store.submit(writes("t", "c1", ("b", -1, b"5"), ("b", -1, b"6"), upsert=True)).result(10)
        store.submit(writes("t", "c1", ("b", -1, b"7"), upsert=True)).result(10)
        record = store.get_checkpoint("t", "", "c1")
        assert record is not None
        assert [(w.task_id, w.idx, w.blob) for w in record.writes] == [
            ("a", 0, b"1"), ("a", 1, b"4"), ("b", -1, b"7")]

    # --- reads and maintenance -------------------------------------------------------------
    def test_get_and_list_with_filters_before_and_limit(self, store: Store) -> None:
        assert store.get_checkpoint("t", "", None) is None
        for i, meta in ((1, {"source": "input", "step": -1}), (2, {"source": "loop", "step": 0}),
                        (3, {"source": "loop", "step": 1, "note": None, "by": "é"})):
            store.submit(checkpoint("t", f"c{i}", metadata=meta)).result(10)
        store.submit(checkpoint("t", "s1", ns="sub")).result(10)
        assert store.get_checkpoint("t", "", "c2").row.checkpoint_id == "c2"  # type: ignore[union-attr]
        assert store.get_checkpoint("t", "", None).row.checkpoint_id == "c3"  # type: ignore[union-attr]
        assert store.get_checkpoint("t", "", "nope") is None
        assert store.get_checkpoint("t", "sub", None).row.checkpoint_id == "s1"  # type: ignore[union-attr]
        assert ids(store.list_checkpoints("t", "")) == ["c3", "c2", "c1"]
        assert ids(store.list_checkpoints("t", None)) == ["s1", "c3", "c2", "c1"]
        assert ids(store.list_checkpoints(None, None, limit=2)) == ["s1", "c3"]
        assert ids(store.list_checkpoints("t", "", limit=0)) == []
        assert ids(store.list_checkpoints("t", "", before="c3")) == ["c2", "c1"]
        assert ids(store.list_checkpoints("t", "", before="c3", limit=1)) == ["c2"]
        assert ids(store.list_checkpoints("other", None)) == []

        def matching(query: dict[str, Any]) -> list[str]:
            return ids(store.list_checkpoints("t", "", filter=query))

        assert matching({"source": "loop"}) == ["c3", "c2"]
        assert matching({"source": "loop", "step": 0}) == ["c2"]
        assert matching({"step": -1}) == ["c1"]
        assert matching({"by": "é"}) == ["c3"]
        assert matching({"note": None}) == ["c3", "c2", "c1"]  # null or missing
        assert matching({"source": None}) == []
        assert matching({"source": "nowhere"}) == []
        assert matching({}) == ["c3", "c2", "c1"]

    def test_metadata_with_nul_is_stored_and_found(self, store: Store) -> None:
        # The metadata column (for filters) holds no NUL (PostgreSQL's jsonb cannot), on
        # every backend: a NUL in a filter value is dropped the same way.
        meta = {"source": "loop", "note": "a\u0000b", "path": "C:\\u0000"}
        assert store.submit(checkpoint("t", "c1", metadata=meta)).result(10) is None
        assert ids(store.list_checkpoints("t", "", filter={"path": "C:\\u0000"})) == ["c1"]
        assert ids(store.list_checkpoints("t", "", filter={"note": "a\u0000b"})) == ["c1"]
        assert ids(store.list_checkpoints("t", "", filter={"note": "ab"})) == ["c1"]

    def test_list_threads_delete_copy_and_prune(self, store: Store) -> None:
        store.claim_thread("t", "tok")
        for i, run in ((1, "run-1"), (2, "run-1"), (3, "run-2")):
            store.submit(writes("t", f"c{i}", (f"task-{i}", 0, b"w"), token="tok")).result(10)
            store.submit(checkpoint("t", f"c{i}", token="tok", run_id=run)).result(10)
        (info,) = store.list_threads()
        assert (info.thread_id, info.epoch, info.checkpoints) == ("t", 1, 3)
        assert info.latest_checkpoint_id == "c3"
        assert store.list_threads(limit=0) == []

        store.copy_thread("t", "t-copy")
        copied = store.get_checkpoint("t-copy", "", "c2")
        assert copied is not None and [w.task_id for w in copied.writes] == ["task-2"]
        assert copied.blobs and copied.blobs[0].blob == b"1"
        assert store.thread_epoch("t-copy") == 0  # the copy has no owner yet

        store.delete_for_runs(["run-2"])  # the copy carries the run ids too
        assert ids(store.list_checkpoints("t", "")) == ["c2", "c1"]
        assert ids(store.list_checkpoints("t-copy", "")) == ["c2", "c1"]
        writes_left = store.db.all("test", Sql(
            "SELECT thread_id, task_id FROM treadle_writes ORDER BY 1, 2"))
        assert [tuple(w) for w in writes_left] == [
            ("t", "task-1"), ("t", "task-2"), ("t-copy", "task-1"), ("t-copy", "task-2")]

        store.prune(["t-copy"], "keep_latest")
        kept = list(store.list_checkpoints("t-copy", None))
        assert ids(iter(kept)) == ["c2"]
        assert kept[0].blobs and kept[0].writes
        blobs = store.db.all("test", Sql(
            "SELECT thread_id, version FROM treadle_blobs ORDER BY 1, 2"))
        assert [tuple(b) for b in blobs] == [
            ("t", "v-c1"), ("t", "v-c2"), ("t", "v-c3"), ("t-copy", "v-c2")]
        store.prune(["t-copy"], "delete")
        assert ids(store.list_checkpoints("t-copy", None)) == []
        store.prune([], "keep_latest")
        store.delete_for_runs([])
        with pytest.raises(ConfigError):
            store.prune(["t"], "shred")
