"""An I/O-bound agent for the capacity tests: three nodes, each awaiting
``asyncio.sleep(state["delay"])`` (a model call's latency) and appending its name to
``calls``. The same graph as bench/server_graphs/agent.py."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    delay: float
    tag: int
    calls: Annotated[list[str], operator.add]


async def plan(state: State) -> dict[str, list[str]]:
    await asyncio.sleep(state["delay"])
    return {"calls": ["plan"]}


async def act(state: State) -> dict[str, list[str]]:
    await asyncio.sleep(state["delay"])
    return {"calls": ["act"]}


async def answer(state: State) -> dict[str, list[str]]:
    await asyncio.sleep(state["delay"])
    return {"calls": ["answer"]}


builder = StateGraph(State)
builder.add_node("plan", plan)
builder.add_node("act", act)
builder.add_node("answer", answer)
builder.add_edge(START, "plan")
builder.add_edge("plan", "act")
builder.add_edge("act", "answer")
builder.add_edge("answer", END)
graph = builder.compile()
