"""A fan-out for the tracing and logging tests: ``plan`` logs, ``work`` (placed remote)
logs one line per item and fails with a permanent error when the state says so,
``total`` logs. Log lines use plain ``logging``, as user code does."""

from __future__ import annotations

import logging
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

log = logging.getLogger("tests.traced")


class State(TypedDict):
    n: int
    fail: bool
    results: Annotated[list[int], operator.add]


class Item(TypedDict):
    i: int
    fail: bool


def plan(state: State) -> dict[str, Any]:
    log.info("planning %d items", state["n"])
    return {}


def fan(state: State) -> list[Send]:
    return [Send("work", {"i": i, "fail": state.get("fail", False)}) for i in range(state["n"])]


def work(state: Item) -> dict[str, Any]:
    log.info("working on item %d", state["i"])
    if state["fail"]:
        raise ValueError(f"item {state['i']} refused on purpose")
    return {"results": [state["i"]]}


def total(state: State) -> dict[str, Any]:
    log.info("total of %d results", len(state["results"]))
    return {}


builder = StateGraph(State)
builder.add_node("plan", plan)
builder.add_node("work", work, metadata={"treadle": {"placement": "remote"}})
builder.add_node("total", total)
builder.add_edge(START, "plan")
builder.add_conditional_edges("plan", fan, ["work"])
builder.add_edge("work", "total")
builder.add_edge("total", END)
graph = builder.compile()
