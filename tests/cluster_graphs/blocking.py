"""A one-node graph for the wedge tests: its sync node sleeps ``state["sleep"]`` seconds
(``time.sleep`` cannot be interrupted) after appending a line to $BLOCK_LOG, so a test
knows the body is running."""

from __future__ import annotations

import os
import time
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    sleep: float
    n: int


def work(state: State) -> dict[str, Any]:
    marker = os.environ.get("BLOCK_LOG")
    if marker and state["sleep"]:
        with open(marker, "a") as f:
            f.write("started\n")
    time.sleep(state["sleep"])
    return {"n": state["n"] + 1}


builder = StateGraph(State)
builder.add_node("work", work)
builder.add_edge(START, "work")
builder.add_edge("work", END)
