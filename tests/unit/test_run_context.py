"""treadle's per-run state travels as one RunContext under one configurable key: every
node (and subgraph) of a run sees it, checkpoint metadata never holds it, and it stays
in the process (what a node running elsewhere receives is plain scalars)."""

from __future__ import annotations

import dataclasses
import operator
import pickle
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph

import treadle
from treadle import _langgraph as lg
from treadle.run_context import (
    RUN_KEY,
    RunContext,
    execution_of,
    fencing_token,
    limits_of,
    run_context,
)
from treadle.runtime.pools import RunLimits, plain_config


class S(TypedDict):
    out: Annotated[list[Any], operator.add]


def _graph(tmp_path: Path, seen: list[RunnableConfig]) -> Any:
    def node(state: S, config: RunnableConfig) -> dict[str, Any]:
        seen.append(config)
        return {"out": [1]}

    inner = StateGraph(S)
    inner.add_node("leaf", node)
    inner.add_edge(START, "leaf")
    b = StateGraph(S)
    b.add_node("a", node)
    b.add_node("sub", inner.compile())
    b.add_edge(START, "a")
    b.add_edge("a", "sub")
    return treadle.compile(b, store_url=f"sqlite:///{tmp_path}/rc.db", max_workers=2)


def test_every_node_of_a_run_sees_one_run_context(tmp_path: Path) -> None:
    seen: list[RunnableConfig] = []
    with _graph(tmp_path, seen) as graph:
        graph.invoke({"out": []}, {"thread_id": "t"})
        assert len(seen) == 2  # the node, and the subgraph's
        contexts = [run_context(c) for c in seen]
        assert contexts[0] is contexts[1]  # handed down to the subgraph as it is
        ctx = contexts[0]
        assert ctx.prepared and not ctx.new_thread and ctx.execution is None
        assert isinstance(ctx.limits, RunLimits) and ctx.limits.max_workers == 2
        assert ctx.token and fencing_token(seen[0]) == ctx.token
        assert limits_of(seen[0]) is ctx.limits and execution_of(seen[0]) is None
        treadle_keys = [k for c in seen for k in c["configurable"] if k.startswith("__treadle")]
        assert set(treadle_keys) == {RUN_KEY}
        # Never in checkpoint metadata (LangGraph leaves "__" keys out).
        for snapshot in graph.get_state_history({"configurable": {"thread_id": "t"}}):
            assert not any(k.startswith("__") for k in snapshot.metadata or {})


def test_a_run_without_thread_id_is_marked_new_thread(tmp_path: Path) -> None:
    seen: list[RunnableConfig] = []
    with _graph(tmp_path, seen) as graph:
        graph.invoke({"out": []})
        assert run_context(seen[0]).new_thread


def test_plain_config_leaves_the_run_context_behind(tmp_path: Path) -> None:
    seen: list[RunnableConfig] = []
    with _graph(tmp_path, seen) as graph:
        graph.invoke({"out": []}, {"thread_id": "t"})
    plain = plain_config(seen[0])
    assert RUN_KEY not in plain["configurable"]
    assert not any(k.startswith("__treadle") for k in plain["configurable"])
    assert lg.task_id(plain) == lg.task_id(seen[0])  # the idempotency key survives
    assert pickle.loads(pickle.dumps(plain)) == plain  # crosses a process boundary


def test_run_context_is_frozen_and_absent_means_empty() -> None:
    ctx = RunContext(token="tok")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.token = "other"  # type: ignore[misc]
    assert ctx.replace(new_thread=True) == RunContext(token="tok", new_thread=True)
    empty = run_context({"configurable": {"thread_id": "t"}})
    assert empty == RunContext() and run_context(None) == RunContext()
    assert fencing_token({"configurable": {RUN_KEY: "not a context"}}) is None


def test_a_runs_max_workers_is_its_limit(tmp_path: Path) -> None:
    seen: list[RunnableConfig] = []
    with _graph(tmp_path, seen) as graph:
        graph.invoke({"out": []}, {"thread_id": "t", "max_workers": 5})
    limits = limits_of(seen[0])
    assert limits is not None and limits.max_workers == 5
