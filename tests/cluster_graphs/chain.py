"""A 10-step chain for cluster tests. Each step appends its name to the state and
records an external side effect in two PostgreSQL tables (when TREADLE_EFFECTS_URL
is set): ``effects`` gets a row per execution (repeats show re-executions) and
``effects_once`` one row per idempotency key (ON CONFLICT DO NOTHING).

STEP_SLEEP (seconds, default 0.02) slows every step so kills land mid-run.
"""

from __future__ import annotations

import operator
import os
import time
from typing import Annotated, Any, Protocol, TypedDict

from langgraph.graph import END, START, StateGraph

import treadle

STEPS = 10


class State(TypedDict):
    n: int
    done: Annotated[list[str], operator.add]


_conn = None


def _effect(step: str) -> None:
    url = os.environ.get("TREADLE_EFFECTS_URL")
    if not url:
        return
    global _conn
    import psycopg

    if _conn is None or _conn.closed:
        _conn = psycopg.connect(url, autocommit=True)
    key = treadle.idempotency_key()
    _conn.execute("INSERT INTO effects (key, step) VALUES (%s, %s)", (key, step))
    _conn.execute("INSERT INTO effects_once (key, step) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                  (key, step))


class Node(Protocol):
    def __call__(self, state: State) -> dict[str, Any]: ...


def _step(i: int) -> Node:
    name = f"s{i}"

    def step(state: State) -> dict[str, Any]:
        time.sleep(float(os.environ.get("STEP_SLEEP", "0.02")))
        _effect(name)
        return {"n": state["n"] + 1, "done": [name]}

    step.__name__ = name
    return step


builder = StateGraph(State)
for i in range(1, STEPS + 1):
    builder.add_node(f"s{i}", _step(i))
builder.add_edge(START, "s1")
for i in range(1, STEPS):
    builder.add_edge(f"s{i}", f"s{i + 1}")
builder.add_edge(f"s{STEPS}", END)
graph = builder.compile()
