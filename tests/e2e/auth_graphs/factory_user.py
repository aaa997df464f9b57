"""A graph factory that builds its graph for the authenticated user (``runtime.user``).
treadle also calls it once at start, with no request and so no user, to check it loads."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph_sdk.runtime import ServerRuntime


class State(TypedDict, total=False):
    n: int
    built_for: str
    access_context: str


def make_graph(runtime: ServerRuntime[Any]) -> Any:
    user = runtime.user
    built_for = user.identity if user is not None else "nobody"
    access_context = runtime.access_context
    print(f"factory-user: built for {built_for} in {access_context}", flush=True)

    def node(state: State) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1, "built_for": built_for,
                "access_context": access_context}

    builder = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder.compile()
