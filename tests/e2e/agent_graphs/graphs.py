"""Graphs for the MCP and A2A tests: a chat that counts the messages it has seen, a typed
question -> answer workflow, and one that fails."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from typing_extensions import TypedDict


def _reply(state: MessagesState) -> dict[str, Any]:
    last = state["messages"][-1].content if state["messages"] else ""
    return {"messages": [AIMessage(content=f"echo: {last} ({len(state['messages'])} seen)")]}


_echo = StateGraph(MessagesState)
_echo.add_node("reply", _reply)
_echo.add_edge(START, "reply")
_echo.add_edge("reply", END)
echo = _echo.compile()


class Question(TypedDict):
    question: str


class Answer(TypedDict):
    answer: str


class QA(Question, Answer):
    pass


def _answer(state: Question) -> dict[str, str]:
    return {"answer": state["question"].upper()}


_qa = StateGraph(QA, input_schema=Question, output_schema=Answer)
_qa.add_node("answer", _answer)
_qa.add_edge(START, "answer")
_qa.add_edge("answer", END)
questions = _qa.compile()


def _fail(state: Question) -> dict[str, str]:
    raise ValueError(f"cannot answer {state['question']!r}")


_broken = StateGraph(QA, input_schema=Question, output_schema=Answer)
_broken.add_node("fail", _fail)
_broken.add_edge(START, "fail")
_broken.add_edge("fail", END)
broken = _broken.compile()


def _ask(state: MessagesState) -> dict[str, Any]:
    from langgraph.types import interrupt

    answer = interrupt("approve?")
    return {"messages": [AIMessage(content=f"approved: {answer}")]}


_asks = StateGraph(MessagesState)
_asks.add_node("ask", _ask)
_asks.add_edge(START, "ask")
_asks.add_edge("ask", END)
asks = _asks.compile()
