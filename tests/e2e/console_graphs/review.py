"""An interrupt shaped as LangChain's human-in-the-loop middleware asks: action requests
with their allowed decisions; the decisions come back as the resume value."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    to: str
    decisions: Any


def ask(state: State) -> dict[str, Any]:
    answer = interrupt({
        "action_requests": [
            {"name": "send_email", "args": {"to": state.get("to", "")}, "description": "Send?"},
            {"name": "log", "args": {"line": "sent"}, "description": "Log it?"}],
        "review_configs": [
            {"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject"]},
            {"action_name": "log", "allowed_decisions": ["approve", "reject"]}],
    })
    return {"decisions": answer["decisions"]}


builder = StateGraph(State)
builder.add_node("ask", ask)
builder.add_edge(START, "ask")
builder.add_edge("ask", END)
graph = builder.compile()
