"""A graph factory that builds its graph for the authenticated user (``runtime.user``), as
LangGraph's docs show: ``ensure_user`` raises when the server passes no user."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph_sdk.runtime import ServerRuntime


class State(TypedDict, total=False):
    n: int
    built_for: str
    access_context: str


def make_graph(runtime: ServerRuntime) -> Any:
    user = runtime.ensure_user()
    built_for, access_context = user.identity, runtime.access_context

    def node(state: State) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1, "built_for": built_for,
                "access_context": access_context}

    builder = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder.compile()
