"""treadle_apply (PostgreSQL): fencing is decided per operation, in batch order, even though a
thread's ownership is looked up once per batch for a token (migration 0012): a claim in the
middle of a batch refuses the operations of the old token that follow it."""

from __future__ import annotations

from treadle.errors import FencedWriteError
from treadle.store import Store
from treadle.store.checkpoints import (
    BlobRow,
    CheckpointRow,
    ClaimThread,
    PutCheckpoint,
    PutWrites,
    WriteOp,
    WriteRow,
)
from treadle.store.drivers.postgres import PostgresConnector


def _writes(token: str, task: str) -> PutWrites:
    return PutWrites("t", checkpoint_ns="", checkpoint_id="c1", upsert=False, token=token,
                     rows=[WriteRow(task_id=task, idx=0, channel="x", type="json", blob=b"1")])


def _checkpoint(token: str, checkpoint_id: str) -> PutCheckpoint:
    row = CheckpointRow(thread_id="t", checkpoint_ns="", checkpoint_id=checkpoint_id,
                        parent_checkpoint_id=None, run_id=None, type="json", checkpoint=b"{}",
                        channel_versions='{"x": "1"}', metadata_type="json", metadata_blob=b"{}",
                        metadata="{}")
    return PutCheckpoint("t", row=row, blobs=[BlobRow("x", "1", "json", b"1")], token=token)


def test_a_claim_inside_a_batch_fences_the_old_token_after_it(pg_store: Store) -> None:
    db = pg_store.db
    assert isinstance(db, PostgresConnector)
    conn = db.connect()
    try:
        ops: list[WriteOp] = [
            ClaimThread("t", token="A"),
            _writes("A", "a1"),
            _checkpoint("A", "c1"),
            ClaimThread("t", token="B"),
            _writes("A", "a2"),  # A no longer owns the thread
            _checkpoint("A", "c2"),
            _writes("B", "b1"),
            _writes("Z", "z1"),  # never owned it
            _checkpoint("B", "c3"),
        ]
        results = db.apply_batch(conn, ops)
        again = db.apply_batch(conn, [_writes("B", "b2"), _writes("A", "a3")])
        tasks = sorted(r[0] for r in conn.execute("SELECT task_id FROM treadle_writes").fetchall())
        ids = sorted(r[0] for r in conn.execute("SELECT checkpoint_id FROM treadle_checkpoints").fetchall())
    finally:
        conn.close()
    assert results[:4] == [1, None, None, 2]
    assert all(isinstance(r, FencedWriteError) for r in (results[4], results[5], results[7]))
    assert results[6] is None and results[8] is None
    assert again[0] is None and isinstance(again[1], FencedWriteError)
    assert tasks == ["a1", "b1", "b2"]
    assert ids == ["c1", "c3"]
