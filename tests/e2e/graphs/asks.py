"""Fixture: a node that stops at interrupt() for a human answer."""

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class State(TypedDict, total=False):
    question: str
    answer: str


def ask(state: State) -> dict[str, Any]:
    answer = interrupt({"question": state.get("question", "why?")})
    return {"answer": answer}


builder = StateGraph(State)
builder.add_node("ask", ask)
builder.add_edge(START, "ask")
builder.add_edge("ask", END)
