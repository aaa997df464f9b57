"""The graph tests/image/test_image_podman.py runs in treadle's image: a chain of nodes, each
of which records that it started (and where: the worker pod, from $IMAGE_E2E_POD) in a table of
the test's PostgreSQL database ($IMAGE_E2E_DB), sleeps, and appends its name to ``steps``."""

from __future__ import annotations

import operator
import os
import time
from typing import Annotated, Any, TypedDict

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

NODES = ("one", "two", "three", "four", "five", "six")


class State(TypedDict, total=False):
    sleep: float
    steps: Annotated[list[str], operator.add]


def _record(node: str, config: RunnableConfig) -> None:
    thread = config["configurable"]["thread_id"]
    with psycopg.connect(os.environ["IMAGE_E2E_DB"], autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS image_e2e_starts "
                     "(thread_id text, node text, pod text, at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO image_e2e_starts (thread_id, node, pod) VALUES (%s, %s, %s)",
                     (thread, node, os.environ.get("IMAGE_E2E_POD", "?")))


def _node(name: str) -> Any:
    def run(state: State, config: RunnableConfig) -> State:
        _record(name, config)
        time.sleep(state.get("sleep", 0.0))
        return {"steps": [name]}

    run.__name__ = name
    return run


builder = StateGraph(State)
previous = START
for _name in NODES:
    builder.add_node(_name, _node(_name))
    builder.add_edge(previous, _name)
    previous = _name
builder.add_edge(previous, END)
graph = builder.compile()
