"""The PostgreSQL writer connection is replaced after a big batch, committed or refused:
libpq never shrinks a connection's output buffer, so keeping it would keep that memory."""

from __future__ import annotations

import psycopg
import pytest

from treadle.errors import StoreDataError
from treadle.store.base import PutWrites, WriteRow
from treadle.store.postgres import PostgresStore
from treadle.store.postgres_buffers import RETIRE_AFTER


def _writes(thread_id: str, blob: bytes, channel: str = "text") -> PutWrites:
    row = WriteRow(task_id="t", idx=0, channel=channel, type="bytes", blob=blob)
    return PutWrites(thread_id, checkpoint_ns="", checkpoint_id="c1", rows=[row], upsert=True)


def test_the_writer_is_replaced_after_a_big_batch(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        store.apply(_writes("small", b"x"))
        first = store._writer
        assert first is not None
        store.apply(_writes("small", b"y"))
        assert store._writer is first and not first.closed  # small batches keep it
        # base64 makes 3 bytes 4 characters: this batch is over the limit.
        store.apply(_writes("big", b"x" * (RETIRE_AFTER * 3 // 4 + 1)))
        assert first.closed and store._writer is None
        store.apply(_writes("small", b"z"))
        second = store._writer
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
