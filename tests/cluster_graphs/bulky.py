"""A one-node graph whose state can be made too big, or awkward, for a store: ``grow``
sets ``text`` to ``fill`` (default "x") repeated ``size`` times when ``size`` is set (a
str subclass, so a test can hold a weak reference to it: see REFS), and raises
ValueError(``fail``) when ``fail`` is."""

from __future__ import annotations

import weakref
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class Big(str):
    """A str that accepts weak references."""


#: A weak reference to every value ``grow`` made in this process.
REFS: list[weakref.ref[Big]] = []


class State(TypedDict, total=False):
    size: int
    fill: str
    fail: str
    text: str


def grow(state: State) -> dict[str, Any]:
    if state.get("fail"):
        raise ValueError(state["fail"])
    if not state.get("size"):
        return {}
    text = Big((state.get("fill") or "x") * state["size"])
    REFS.append(weakref.ref(text))
    return {"text": text}


builder = StateGraph(State)
builder.add_node("grow", grow)
builder.add_edge(START, "grow")
builder.add_edge("grow", END)
