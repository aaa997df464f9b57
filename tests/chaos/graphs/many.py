"""Runs N short chains on distinct threads: several of these processes share one store.

    python many.py STORE_URL PREFIX N
"""

from __future__ import annotations

import json
import operator
import sys
from typing import Annotated, TypedDict

from langgraph.graph import START, StateGraph

import treadle


class State(TypedDict):
    out: Annotated[list[int], operator.add]


builder = StateGraph(State)
prev = START
for i in range(5):
    builder.add_node(f"n{i}", lambda s: {"out": [len(s["out"])]})
    builder.add_edge(prev, f"n{i}")
    prev = f"n{i}"

if __name__ == "__main__":
    store, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    graph = treadle.compile(builder, store=store)
    bad = []
    for j in range(n):
        out = graph.invoke({"out": []}, {"configurable": {"thread_id": f"{prefix}-{j}"}})
        if out["out"] != [0, 1, 2, 3, 4]:
            bad.append(j)
    graph.close()
    print(json.dumps({"bad": bad}))
