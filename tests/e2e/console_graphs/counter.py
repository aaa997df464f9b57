"""A thread with as many checkpoints as asked: ``count`` steps of one node, each adding 1."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    goal: int
    count: int


def step(state: State) -> dict[str, Any]:
    return {"count": state.get("count", 0) + 1}


def _more(state: State) -> str:
    return "step" if state.get("count", 0) < state.get("goal", 0) else END


builder = StateGraph(State)
builder.add_node("step", step)
builder.add_edge(START, "step")
builder.add_conditional_edges("step", _more, ["step", END])
graph = builder.compile()
