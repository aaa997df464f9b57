"""A graph that answers who ran it: the user treadle put in the run's config."""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    n: int
    who: str
    permissions: list[str]


def whoami(state: State, config: RunnableConfig) -> dict[str, Any]:
    conf = config.get("configurable") or {}
    return {"n": state.get("n", 0) + 1, "who": str(conf.get("langgraph_auth_user_id")),
            "permissions": list(conf.get("langgraph_auth_permissions") or [])}


builder = StateGraph(State)
builder.add_node("whoami", whoami)
builder.add_edge(START, "whoami")
builder.add_edge("whoami", END)
graph = builder.compile()
