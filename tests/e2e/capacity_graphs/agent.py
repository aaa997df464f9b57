"""An I/O-bound agent for the capacity tests: three nodes, each awaiting
``asyncio.sleep(state["delay"])`` (a model call's latency) and appending its name to
``calls``. The same graph as bench/server_graphs/agent.py."""

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
