"""A graph whose second node fails (not a transient error: it is not retried)."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    url: str
    fetched: str


def plan(state: State) -> dict[str, Any]:
    return {"url": state.get("url") or "https://example.invalid"}


def fetch(state: State) -> dict[str, Any]:
    raise ValueError(f"upstream said no to {state.get('url')}")


builder = StateGraph(State)
builder.add_node("plan", plan)
builder.add_node("fetch", fetch)
builder.add_edge(START, "plan")
builder.add_edge("plan", "fetch")
builder.add_edge("fetch", END)
graph = builder.compile()
