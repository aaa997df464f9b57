"""A graph whose node searches the store by meaning: ``{"query": ...}`` ->
``{"found": [[key, score], ...]}`` (namespace ``("docs",)``)."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore


class State(TypedDict, total=False):
    query: str
    found: list[Any]


async def recall(state: State, *, store: BaseStore) -> State:
    items = await store.asearch(("docs",), query=state["query"], limit=5)
    return {"found": [[i.key, i.score] for i in items]}


def remember(state: State, *, store: BaseStore) -> State:
    store.put(("docs",), "from-node", {"text": state["query"] + " from a node"})
    hits = store.search(("docs",), query=state["query"], limit=1)
    return {"found": [[i.key, i.score] for i in hits]}


builder = StateGraph(State)
builder.add_node("recall", recall)
builder.add_edge(START, "recall")
builder.add_edge("recall", END)
graph = builder.compile()

writer = StateGraph(State)
writer.add_node("remember", remember)
writer.add_edge(START, "remember")
writer.add_edge("remember", END)
write_graph = writer.compile()
