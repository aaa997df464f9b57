"""A run given no thread_id gets a new thread; when it stops before its end (interrupt(),
interrupt_before) treadle tells the caller that thread, so it can be resumed."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

import treadle


class State(TypedDict, total=False):
    question: str
    answer: str


def _ask(state: State) -> dict[str, Any]:
    return {"answer": interrupt({"question": state.get("question")})}


def _builder() -> StateGraph[Any]:
    builder: StateGraph[Any] = StateGraph(State)
    builder.add_node("ask", _ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder


def _told(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "treadle.runtime" and r.levelno == logging.WARNING]


def test_an_interrupted_run_on_a_new_thread_names_it(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with treadle.compile(_builder(), store_url=f"sqlite:///{tmp_path / 't.db'}") as graph:
        out = graph.invoke({"question": "name?"})
        assert out["__interrupt__"][0].value == {"question": "name?"}
        (message,) = _told(caplog)
        found = re.search(r"on thread '([0-9a-f-]{36})', which treadle created", message)
        assert found, message
        thread = {"configurable": {"thread_id": found.group(1)}}
        assert f"graph.invoke(Command(resume=...), {thread!r})" in message
        assert graph.invoke(Command(resume="bob"), thread) == {"question": "name?",
                                                               "answer": "bob"}
        assert len(_told(caplog)) == 1  # a given thread_id: nothing to tell


async def test_async_and_interrupt_before(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    store = f"sqlite:///{tmp_path / 't.db'}"
    with treadle.compile(_builder(), store_url=store, interrupt_before=["ask"]) as graph:
        await graph.ainvoke({"question": "q"})
        (message,) = _told(caplog)
        assert "run stopped before ask on thread '" in message
        assert "graph.invoke(None, {'configurable': {'thread_id': '" in message


def test_a_run_that_finishes_says_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    builder: StateGraph[Any] = StateGraph(State)
    builder.add_node("answer", lambda s: {"answer": "42"})
    builder.add_edge(START, "answer")
    with treadle.compile(builder, store_url=f"sqlite:///{tmp_path / 't.db'}") as graph:
        assert graph.invoke({"question": "q"}) == {"question": "q", "answer": "42"}
    assert _told(caplog) == []
