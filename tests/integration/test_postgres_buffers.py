"""PostgreSQL connections that carried a big payload, or data the server refused, are
replaced (the writer after its batch, a pooled one as it goes back): libpq never shrinks a
connection's buffers, so keeping it would keep that memory."""

from __future__ import annotations

import logging

import psycopg
import pytest

from treadle.errors import StoreDataError
from treadle.store import Store, open_store
from treadle.store.checkpoints import BlobRow, CheckpointRow, PutCheckpoint, PutWrites, WriteRow
from treadle.store.drivers.postgres import PostgresConnector
from treadle.store.drivers.postgres_buffers import RETIRE_AFTER
from treadle.store.queue import NewRun
from treadle.store.thread_records import Thread


def _pg(store: Store) -> PostgresConnector:
    assert isinstance(store.db, PostgresConnector)
    return store.db


def _writes(thread_id: str, blob: bytes, channel: str = "text") -> PutWrites:
    row = WriteRow(task_id="t", idx=0, channel=channel, type="bytes", blob=blob)
    return PutWrites(thread_id, checkpoint_ns="", checkpoint_id="c1", rows=[row], upsert=True)


def test_the_writer_is_replaced_after_a_big_batch(pg_url: str) -> None:
    store = open_store(pg_url, auto_migrate=True)
    try:
        store.apply(_writes("small", b"x"))
        first = _pg(store)._writer
        assert first is not None
        store.apply(_writes("small", b"y"))
        assert _pg(store)._writer is first and not first.closed  # small batches keep it
        # base64 makes 3 bytes 4 characters: this batch is over the limit.
        store.apply(_writes("big", b"x" * (RETIRE_AFTER * 3 // 4 + 1)))
        assert first.closed and _pg(store)._writer is None
        store.apply(_writes("small", b"z"))
        second = _pg(store)._writer
        assert second is not None and second is not first
        # Refused (a NUL in a jsonb channel name): the big batch's connection goes too.
        with pytest.raises(StoreDataError):
            store.apply(_writes("big", b"x" * RETIRE_AFTER, channel="a\x00b"))
        assert second.closed
        store.apply(_writes("small", b"w"))
    finally:
        store.close()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT thread_id, length(blob) FROM treadle_writes "
                            "ORDER BY thread_id").fetchall()
    assert rows == [("big", RETIRE_AFTER * 3 // 4 + 1), ("small", 1)]


def _checkpoint(thread_id: str, blob: bytes) -> PutCheckpoint:
    row = CheckpointRow(
        thread_id=thread_id, checkpoint_ns="", checkpoint_id="c1", parent_checkpoint_id=None,
        run_id=None, type="json", checkpoint=b"{}", channel_versions='{"state": "1"}',
        metadata_type="json", metadata_blob=b"{}", metadata="{}",
    )
    return PutCheckpoint(thread_id, row=row, blobs=[BlobRow("state", "1", "bytes", blob)])


def test_a_pooled_connection_is_replaced_after_a_big_read_or_a_refusal(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    store = open_store(pg_url, auto_migrate=True)
    assert _pg(store).pool is not None
    # psycopg_pool counts the connections that came back closed, to replace them.
    def replaced() -> int:
        pool = _pg(store).pool
        assert pool is not None
        return int(pool.get_stats().get("returns_bad", 0))

    try:
        store.apply(_checkpoint("small", b"x"))
        store.apply(_checkpoint("big", b"x" * RETIRE_AFTER))
        for _ in range(3):
            assert store.get_checkpoint("small", "", None) is not None
        assert list(store.list_checkpoints("small", ""))
        assert replaced() == 0  # small reads keep their connection
        record = store.get_checkpoint("big", "", None)
        assert record is not None and record.blobs[0].blob == b"x" * RETIRE_AFTER
        assert replaced() == 1
        assert len(list(store.list_checkpoints("big", ""))) == 1
        assert replaced() == 2
        del record
        # Refused (jsonb has no NUL): whatever it sent, the connection goes.
        store.put_thread(Thread("t"))
        with pytest.raises(StoreDataError):
            store.set_thread_state("t", status="idle", values={"text": "a\x00b"})
        assert replaced() == 3
        assert store.get_checkpoint("small", "", None) is not None  # on a fresh connection
    finally:
        store.close()
    # Without psycopg_pool's warning about a closed connection: closed on purpose.
    assert not [r for r in caplog.records if "closed connection" in r.getMessage()]


def test_run_queue_statements_that_carry_a_big_payload_replace_their_connection(
        pg_url: str) -> None:
    store = open_store(pg_url, auto_migrate=True)
    pool = _pg(store).pool
    assert pool is not None

    def replaced() -> int:
        return int(pool.get_stats().get("returns_bad", 0))

    big = b"x" * RETIRE_AFTER
    try:
        small = store.enqueue_run(NewRun(run_id="small", thread_id="t1", graph_id="g",
                                         payload=b"{}"))
        assert store.get_run(small.run_id) is not None
        assert replaced() == 0
        store.enqueue_run(NewRun(run_id="big", thread_id="t2", graph_id="g", payload=big))
        assert replaced() == 1  # sent (and read back) 16 MiB
        claimed = [store.claim_run("w", ["g"], False, 30.0) for _ in range(2)]
        by_id = {r.run_id: r for r in claimed if r is not None}
        assert set(by_id) == {"small", "big"} and by_id["big"].payload == big
        assert replaced() == 2  # the big run's claim read it
        assert store.finish_run("small", by_id["small"].epoch, "success", result=big)
        assert replaced() == 3  # its result was sent
        row = store.get_run("small")
        assert row is not None and row.result == big
        assert replaced() == 4  # and read back
    finally:
        store.close()
