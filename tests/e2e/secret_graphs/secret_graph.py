"""Graphs that carry a secret through every path treadle stores (tests/e2e/test_encryption_at_rest.py)."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.config import get_store, get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class State(TypedDict, total=False):
    secret: str
    echo: str
    approved: str


def remember(state: State) -> dict[str, Any]:
    secret = state["secret"]
    get_stream_writer()({"leak": secret})  # a custom stream event
    get_store().put(("graph-mem",), "k", {"v": secret})  # an item through the graph's store
    return {"echo": secret}  # a pending write while its sibling is interrupted


def ask(state: State) -> dict[str, Any]:
    answer = interrupt({"question": f"approve {state['secret']}?"})
    return {"approved": answer}


def boom(state: State) -> dict[str, Any]:
    raise ValueError(f"cannot handle {state['secret']}")


_b = StateGraph(State)
_b.add_node("remember", remember)
_b.add_node("ask", ask)
_b.add_edge(START, "remember")
_b.add_edge(START, "ask")
_b.add_edge("remember", END)
_b.add_edge("ask", END)
secret = _b.compile()

_f = StateGraph(State)
_f.add_node("remember", remember)
_f.add_node("boom", boom)
_f.add_edge(START, "remember")
_f.add_edge("remember", "boom")
_f.add_edge("boom", END)
failing = _f.compile()
