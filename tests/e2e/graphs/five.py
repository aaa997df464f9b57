"""Fixture: five nodes in a row. Each appends its name to the file ``state["log"]``.

Node ``n3`` raises ValueError (not transient: no retry) unless the file
``state["marker"]`` exists, so a run fails at n3 until the test creates the marker.
"""

import operator
import os
from typing import Annotated, Any, Protocol, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    log: str
    marker: str
    done: Annotated[list[str], operator.add]


class Node(Protocol):
    def __call__(self, state: State) -> dict[str, Any]: ...


def _node(name: str) -> Node:
    def node(state: State) -> dict[str, Any]:
        with open(state["log"], "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
        if name == "n3" and not os.path.exists(state["marker"]):
            raise ValueError("marker file missing")
        return {"done": [name]}

    node.__name__ = name
    return node


builder = StateGraph(State)
names = [f"n{i}" for i in range(1, 6)]
for name in names:
    builder.add_node(name, _node(name))
builder.add_edge(START, names[0])
for a, b in zip(names, names[1:], strict=False):
    builder.add_edge(a, b)
builder.add_edge(names[-1], END)
