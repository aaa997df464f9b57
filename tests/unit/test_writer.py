"""GroupCommitter: a connection that ``retire`` names after a batch is closed, whether the
batch committed or failed, and the next batch runs on a fresh one."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from treadle.errors import StoreDataError
from treadle.store.checkpoints import PutWrites
from treadle.store.writer import GroupCommitter


class Conn:
    ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(self.ids)
        self.closed = False


def _op(thread_id: str) -> PutWrites:
    return PutWrites(thread_id, checkpoint_ns="", checkpoint_id="", rows=[], upsert=False)


def test_a_retired_connection_is_closed_after_its_batch_committed_or_failed() -> None:
    opened: list[Conn] = []
    used: list[int] = []

    def connect() -> Conn:
        opened.append(Conn())
        return opened[-1]

    big: list[bool] = []  # whether the last batch was a big one (to retire its connection)

    def apply(conn: Conn, ops: list[Any]) -> list[Any]:
        assert not conn.closed
        used.append(conn.id)
        big.append(any(op.thread_id in ("big", "refused") for op in ops))
        if any(op.thread_id == "refused" for op in ops):
            raise StoreDataError("cannot store this data")
        return [None for _ in ops]

    def close(conn: Conn) -> None:
        conn.closed = True

    c = GroupCommitter(connect, apply, close, linger=0, retire=lambda conn: big.pop())
    try:
        c.call(_op("small"))
        c.call(_op("small"))
        assert [x.closed for x in opened] == [False]  # kept while batches are small
        c.call(_op("big"))
        assert [x.closed for x in opened] == [True]  # closed after the big batch
        c.call(_op("small"))
        with pytest.raises(StoreDataError):
            c.call(_op("refused"))
        assert [x.closed for x in opened] == [True, True]  # closed after a failure too
        c.call(_op("small"))
        assert used == [1, 1, 1, 2, 2, 3]
        assert not opened[-1].closed
    finally:
        c.close()
    assert opened[-1].closed
