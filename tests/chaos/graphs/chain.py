"""A 6-node chain whose nodes log their start to a file: the subject of kill -9 tests.

    python chain.py STORE_URL THREAD_ID LOG_PATH start|resume
"""

from __future__ import annotations

import json
import operator
import sys
import time
from typing import Annotated, Any, Protocol, TypedDict

from langgraph.graph import START, StateGraph

import treadle

NODES = [f"n{i}" for i in range(1, 7)]


class State(TypedDict):
    log_path: str
    done: Annotated[list[str], operator.add]


class Node(Protocol):
    def __call__(self, state: State) -> dict[str, Any]: ...


def make(name: str) -> Node:
    def node(state: State) -> dict[str, Any]:
        with open(state["log_path"], "a") as fh:
            fh.write(f"{name} {treadle.idempotency_key()}\n")
            fh.flush()
        time.sleep(0.4)
        return {"done": [name]}

    return node


builder = StateGraph(State)
for name in NODES:
    builder.add_node(name, make(name))
builder.add_edge(START, NODES[0])
for a, b in zip(NODES, NODES[1:], strict=False):
    builder.add_edge(a, b)

if __name__ == "__main__":
    store, thread, log_path, mode = sys.argv[1:5]
    graph = treadle.compile(builder, store=store)
    inp = None if mode == "resume" else {"log_path": log_path, "done": []}
    result = graph.invoke(inp, {"configurable": {"thread_id": thread}})
    print(json.dumps(result))
    graph.close()
