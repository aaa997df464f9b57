"""One node that takes ``delay`` seconds (an I/O-bound step, like a model call)."""

import asyncio
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    delay: float
    done: bool


async def work(state: State) -> State:
    await asyncio.sleep(state.get("delay", 0.0))
    return {"done": True}


graph = StateGraph(State).add_node("work", work).add_edge(START, "work").add_edge("work", END)
