"""A small document pipeline for the CLI: split -> summarise each part in parallel -> report.

    treadle run examples/pipeline.py:builder --input '{"text": "a b c. d e. f"}' --thread demo
    treadle run examples/pipeline.py:builder --thread demo --resume   # after a crash

Nothing here knows about treadle: it is a plain LangGraph StateGraph.
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


class State(TypedDict, total=False):
    text: str
    parts: list[str]
    summaries: Annotated[list[str], operator.add]
    report: str


def split(state: State) -> dict:
    return {"parts": [p.strip() for p in state["text"].split(".") if p.strip()]}


def fan_out(state: State) -> list[Send]:
    return [Send("summarise", {"part": p}) for p in state["parts"]]


def summarise(state: dict) -> dict:
    time.sleep(0.2)  # stands in for a model call
    words = state["part"].split()
    return {"summaries": [f"{words[0]}… ({len(words)} words)"]}


def report(state: State) -> dict:
    return {"report": "; ".join(sorted(state["summaries"]))}


builder = StateGraph(State)
builder.add_node("split", split)
builder.add_node("summarise", summarise)
builder.add_node("report", report)
builder.add_edge(START, "split")
builder.add_conditional_edges("split", fan_out, ["summarise"])
builder.add_edge("summarise", "report")
builder.add_edge("report", END)
