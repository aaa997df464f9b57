"""Two executions of one thread never interleave: the older one's writes are refused.

Graph-level cases; the store's fencing rules (claims, stale tokens, batches, run-scoped
claims) are in tests/checkpoint_contract.py, run on both drivers."""

from __future__ import annotations

import operator
import threading
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import START, StateGraph

import treadle
from treadle.errors import FencedWriteError
from treadle.store.checkpoints import ClaimThread


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
