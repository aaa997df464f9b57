"""Two executions of one thread never interleave: the older one's writes are refused."""

from __future__ import annotations

import operator
import threading
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import START, StateGraph

import treadle
from treadle.errors import FencedWriteError
from treadle.run_context import RUN_KEY
from treadle.store import open_store
from treadle.store.checkpoints import ClaimThread, PutWrites, WriteRow


class S(TypedDict):
    log: Annotated[list[str], operator.add]


def test_stale_execution_cannot_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/f.db"
    started, release = threading.Event(), threading.Event()

    def slow(state: S) -> dict[str, Any]:
        started.set()
        release.wait(10)
        return {"log": ["from-A"]}

    b = StateGraph(S)
    b.add_node("step", slow)
    b.add_edge(START, "step")
    a = treadle.compile(b, store=url)

    fast = StateGraph(S)
    fast.add_node("step", lambda s: {"log": ["from-B"]})
    fast.add_edge(START, "step")
    other = treadle.compile(fast, store=url)  # a second process would look the same

    errors: list[BaseException] = []

    def run_a() -> None:
        try:
            a.invoke({"log": []}, {"thread_id": "shared"})
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    t = threading.Thread(target=run_a)
    t.start()
    assert started.wait(10)
    assert other.invoke({"log": []}, {"thread_id": "shared"}) == {"log": ["from-B"]}
    release.set()
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], FencedWriteError), errors
    assert "another execution has claimed" in str(errors[0])
    # The thread holds B's run only: nothing of A was interleaved.
    assert other.get_state({"thread_id": "shared"}).values == {"log": ["from-B"]}
    a.close()
    other.close()


def test_fenced_op_fails_alone_in_its_batch(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/b.db", linger=0.05)
    assert store.claim_thread("t", "tok-1") == 1
    assert store.claim_thread("t", "tok-2") == 2

    def writes(token: str, task: str) -> PutWrites:
        return PutWrites("t", checkpoint_ns="", checkpoint_id="c1", upsert=False, token=token,
                         rows=[WriteRow(task_id=task, idx=0, channel="ch", type="json", blob=b"1")])

    # Both lingering writes land in one batch; only the stale one is refused.
    stale = store.submit(writes("tok-1", "a"))
    fresh = store.submit(writes("tok-2", "b"))
    with pytest.raises(FencedWriteError):
        stale.result(5)
    assert fresh.result(5) is None
    # A claim and a write queued behind it in the same batch see the new owner.
    claim = store.submit(ClaimThread("t", token="tok-3"))
    late = store.submit(writes("tok-2", "c"))
    assert claim.result(5) == 3
    with pytest.raises(FencedWriteError):
        late.result(5)
    store.delete_thread("t")  # deleting fences every writer
    with pytest.raises(FencedWriteError):
        store.submit(writes("tok-3", "d")).result(5)
    store.close()


def test_unfenced_writes_still_allowed(tmp_path: Path) -> None:
    """Direct saver use (no token) keeps LangGraph's semantics."""
    store = open_store(f"sqlite:///{tmp_path}/u.db")
    store.claim_thread("t", "tok")
    op = PutWrites("t", checkpoint_ns="", checkpoint_id="c", upsert=False,
                   rows=[WriteRow(task_id="x", idx=0, channel="ch", type="json", blob=b"1")])
    assert store.submit(op).result(5) is None
    assert RUN_KEY.startswith("__")  # excluded from checkpoint metadata by LangGraph
    store.close()


def test_failed_claim_is_reported_not_a_fencing_error(tmp_path: Path) -> None:
    """If the claim itself cannot commit, the run fails with that cause."""
    from treadle.errors import StoreError

    b = StateGraph(S)
    b.add_node("step", lambda s: {"log": ["x"]})
    b.add_edge(START, "step")
    g = treadle.compile(b, store=f"sqlite:///{tmp_path}/c.db")
    real_apply = g.backend._committer._apply

    def failing_claims(conn: Any, ops: list[Any]) -> list[Any]:
        if any(isinstance(op, ClaimThread) for op in ops):
            raise StoreError("disk full (simulated)")
        return real_apply(conn, ops)

    g.backend._committer._apply = failing_claims
    with pytest.raises(StoreError, match="disk full"):
        g.invoke({"log": []}, {"thread_id": "t"})
    g.close()
