"""The graph served by ``bench.server``: a 10-node linear chain, each node ``n += 1``.

Loaded by both servers from ``langgraph.json`` (``chain``), so it imports only
LangGraph: the ``langgraph dev`` reference runs in its own virtualenv.
"""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import END, START, StateGraph

N_NODES = 10


class State(TypedDict):
    n: int


def inc(state: State) -> dict[str, int]:
    return {"n": state["n"] + 1}


def _build() -> StateGraph:
    builder = StateGraph(State)
    prev = START
    for i in range(N_NODES):
        builder.add_node(f"n{i}", inc)
        builder.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    builder.add_edge(prev, END)
    return builder


graph = _build().compile()
