"""LangGraph 1.2's DeltaChannel keeps working on treadle's saver next to chunked lists: the
same turns give the same state and history as LangGraph's InMemorySaver."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.channels import DeltaChannel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

import treadle


def _extend(state: list[Any], writes: list[list[Any]]) -> list[Any]:
    out = list(state or [])
    for w in writes:
        out.extend(w)
    return out


class State(TypedDict):
    log: Annotated[list[Any], DeltaChannel(_extend, snapshot_frequency=5)]
    plain: Annotated[list[Any], operator.add]


def _node(state: State) -> dict[str, Any]:
    n = len(state["log"])
    return {"log": [f"answer {n}"], "plain": [f"p{n}" * 20]}


def _builder() -> StateGraph[Any]:
    b: StateGraph[Any] = StateGraph(State)
    b.add_node("node", _node)
    b.add_edge(START, "node")
    b.add_edge("node", END)
    return b


def test_delta_channel_graph_matches_langgraph_in_memory(tmp_path: Path) -> None:
    ours = treadle.compile(_builder(), store=f"sqlite:///{tmp_path}/d.db")
    ref = _builder().compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    try:
        for turn in range(23):
            inp = {"log": [f"question {turn}"], "plain": [f"q{turn}"]}
            assert ours.invoke(inp, config) == ref.invoke(inp, config)
        assert ours.get_state(config).values == ref.get_state(config).values
        assert len(ours.get_state(config).values["plain"]) == 46
        ours_hist = [h.values for h in ours.get_state_history(config)]
        ref_hist = [h.values for h in ref.get_state_history(config)]
        assert ours_hist == ref_hist
    finally:
        ours.close()
