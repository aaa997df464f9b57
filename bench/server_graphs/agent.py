"""The graph served by ``bench.capacity``: an I/O-bound agent, three awaited "model calls".

Each node awaits ``asyncio.sleep(delay)`` (a model call's latency, ``delay`` taken from the
input: 0.5 s for the agent load, 0 for the same graph with the sleeps removed) and
appends its name to ``calls``. Loaded by every server from ``langgraph.json`` (``agent``),
so it imports only LangGraph: the ``langgraph dev`` reference runs in its own virtualenv.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

CALLS = ("plan", "act", "answer")


class State(TypedDict):
    delay: float
    tag: int
    calls: Annotated[list[str], operator.add]


def _call(name: str):  # noqa: ANN202 - a node factory
    async def model_call(state: State) -> dict[str, list[str]]:
        if state["delay"]:
            await asyncio.sleep(state["delay"])
        return {"calls": [name]}

    model_call.__name__ = name
    return model_call


def _build() -> StateGraph:
    builder = StateGraph(State)
    prev = START
    for name in CALLS:
        builder.add_node(name, _call(name))
        builder.add_edge(prev, name)
        prev = name
    builder.add_edge(prev, END)
    return builder


graph = _build().compile()
