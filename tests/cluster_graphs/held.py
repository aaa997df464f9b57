"""A one-node graph for the backpressure tests: its async node awaits until the file named
by ``state["release"]`` exists, so a test holds runs in flight as long as it likes."""

from __future__ import annotations

import asyncio
import os
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    release: str
    n: int


async def hold(state: State) -> dict[str, Any]:
    while not os.path.exists(state["release"]):
        await asyncio.sleep(0.01)
    return {"n": state["n"] + 1}


builder = StateGraph(State)
builder.add_node("hold", hold)
builder.add_edge(START, "hold")
builder.add_edge("hold", END)
