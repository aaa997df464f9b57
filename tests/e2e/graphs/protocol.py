"""Fixture graphs for the protocol compatibility tests (served by ``protocol.json``).

* ``agent``: a chat model streams a reply, then a node writes an AI message with a tool
  call itself (no model), LangGraph's ``ToolNode`` runs the tool, and a chat model that
  does not stream answers.
* ``review``: stops at ``interrupt()`` and records the answer it is resumed with.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import interrupt
from typing_extensions import TypedDict


@tool
def lookup(query: str) -> str:
    """Look a word up."""
    return f"found {query}"


async def model(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
    chat = GenericFakeChatModel(messages=iter([AIMessage(content="let me look")]))
    return {"messages": [await chat.ainvoke(state["messages"], config)]}


def plan(state: MessagesState) -> dict[str, Any]:
    # Written by the node, not by a chat model: state, not chat-model output.
    call = {"name": "lookup", "args": {"query": "treadle"}, "id": "call-1", "type": "tool_call"}
    return {"messages": [AIMessage(content="calling lookup", tool_calls=[call])]}


async def answer(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
    chat = FakeMessagesListChatModel(responses=[AIMessage(content="all done")])  # no _stream
    return {"messages": [await chat.ainvoke(state["messages"], config)]}


def _agent() -> Any:
    b = StateGraph(MessagesState)
    b.add_node("model", model)
    b.add_node("plan", plan)
    b.add_node("tools", ToolNode([lookup]))
    b.add_node("answer", answer)
    b.add_edge(START, "model")
    b.add_edge("model", "plan")
    b.add_edge("plan", "tools")
    b.add_edge("tools", "answer")
    b.add_edge("answer", END)
    return b.compile()


agent = _agent()


class Review(TypedDict, total=False):
    draft: str
    verdict: Any


def ask(state: Review) -> dict[str, Any]:
    return {"verdict": interrupt({"draft": state.get("draft")})}


def _review() -> Any:
    b = StateGraph(Review)
    b.add_node("ask", ask)
    b.add_edge(START, "ask")
    b.add_edge("ask", END)
    return b.compile()


review = _review()
