"""Two branches that each stop at their own interrupt (pending side by side)."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    left: Any
    right: Any


def left(state: State) -> dict[str, Any]:
    return {"left": interrupt({"side": "left"})}


def right(state: State) -> dict[str, Any]:
    return {"right": interrupt({"side": "right"})}


builder = StateGraph(State)
builder.add_node("left", left)
builder.add_node("right", right)
builder.add_edge(START, "left")
builder.add_edge(START, "right")
builder.add_edge("left", END)
builder.add_edge("right", END)
graph = builder.compile()
