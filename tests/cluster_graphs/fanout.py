"""Send fan-out whose branches run as remote node tasks on any worker.

``work`` burns CPU (WORK_SECONDS of CPU time, default 0.05) or sleeps
(WORK_SLEEP) and reports which worker process ran it, and when.
"""

from __future__ import annotations

import operator
import os
import time
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


class State(TypedDict):
    n: int
    results: Annotated[list[dict[str, Any]], operator.add]


class Item(TypedDict):
    i: int


def plan(state: State) -> dict[str, Any]:
    return {}


def fan(state: State) -> list[Send]:
    return [Send("work", {"i": i}) for i in range(state["n"])]


def work(state: Item) -> dict[str, Any]:
    began = time.time()
    sleep = float(os.environ.get("WORK_SLEEP", "0"))
    if sleep:
        time.sleep(sleep)
    else:
        # This thread's CPU time: other branches burn CPU in other threads meanwhile.
        end = time.thread_time() + float(os.environ.get("WORK_SECONDS", "0.05"))
        x = 0
        while time.thread_time() < end:
            x += 1
    return {"results": [{"i": state["i"], "pid": os.getpid(), "began": began, "ended": time.time()}]}


def total(state: State) -> dict[str, Any]:
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
