"""A graph that keeps its input secret in its state, a stream event and the store
(tests/e2e/test_encryption_tenants.py)."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.config import get_stream_writer


class State(TypedDict, total=False):
    secret: str
    echo: str


def remember(state: State) -> dict[str, Any]:
    get_stream_writer()({"leak": state["secret"]})  # a custom stream event
    return {"echo": state["secret"]}


def _build() -> Any:
    from langgraph.graph import END, START, StateGraph

    b = StateGraph(State)
    b.add_node("remember", remember)
    b.add_edge(START, "remember")
    b.add_edge("remember", END)
    return b.compile()


graph = _build()
