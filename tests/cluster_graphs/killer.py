"""A graph whose only node kills the process that runs it (``kill -9`` of its worker),
for the budget of worker losses: every worker that takes the run dies."""

from __future__ import annotations

import os
import signal
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    n: int


def die(state: State) -> State:
    os.kill(os.getpid(), signal.SIGKILL)
    return state  # pragma: no cover


builder = StateGraph(State)
builder.add_node("die", die)
builder.add_edge(START, "die")
builder.add_edge("die", END)
