"""The console's browser tests' graph: draft (streams tokens and a custom event), review
(interrupts for a person's approval), publish; and a small subgraph, so the drawing has a
cluster.

With ``CONSOLE_GATE_DIR`` set, a node named in ``CONSOLE_GATED`` (comma-separated) waits
until a file of its name exists in that folder (at most 120 s), so a test can see it
running, then let it go."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    topic: str
    messages: Annotated[list[AnyMessage], add_messages]
    draft: str
    decision: str
    checked: bool


def _gate(node: str) -> None:
    folder = os.environ.get("CONSOLE_GATE_DIR")
    if not folder or node not in os.environ.get("CONSOLE_GATED", "").split(","):
        return
    deadline = time.monotonic() + 120
    while not (Path(folder) / node).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def draft(state: State) -> dict[str, Any]:
    get_stream_writer()({"progress": "drafting", "topic": state.get("topic", "")})
    _gate("draft")
    model = GenericFakeChatModel(messages=iter([AIMessage(
        content=f"Five facts about {state.get('topic', 'nothing')} you did not know")]))
    message = model.invoke(state.get("messages") or "draft")
    return {"messages": [message], "draft": str(message.content)}


def review(state: State) -> dict[str, Any]:
    answer = interrupt({"question": "Publish this draft?", "draft": state.get("draft", "")})
    return {"decision": "approved" if answer is True else "rejected" if answer is False
            else f"edited: {answer}"}


def publish(state: State) -> dict[str, Any]:
    _gate("publish")
    return {"messages": [AIMessage(content=f"published ({state.get('decision')})")]}


def _check(state: State) -> dict[str, Any]:
    return {"checked": True}


_checks = StateGraph(State)
_checks.add_node("spelling", _check)
_checks.add_edge(START, "spelling")
_checks.add_edge("spelling", END)


def _route(state: State) -> str:
    return "publish" if state.get("decision") == "approved" else END


builder = StateGraph(State)
builder.add_node("draft", draft)
builder.add_node("checks", _checks.compile())
builder.add_node("review", review)
builder.add_node("publish", publish)
builder.add_edge(START, "draft")
builder.add_edge("draft", "checks")
builder.add_edge("checks", "review")
builder.add_conditional_edges("review", _route, ["publish", END])
builder.add_edge("publish", END)
graph = builder.compile()
