"""Graphs for ``bench.cluster``, served by ``treadle worker`` processes by module ref
(``name=bench.cluster_graphs:attr``; the repository root must be on PYTHONPATH).

Every knob travels in the run's input, so one set of worker processes serves every
case of the benchmark:

``fanout``
    START -> plan -> Send("work", ...) x ``n`` -> total. ``work`` is placed remote
    and burns ``cpu`` seconds of *thread* CPU time in a pure-Python loop
    (``time.thread_time``: ``time.process_time`` would also count the other
    branches burning in the same process), then returns its pid.
``rt_remote`` / ``rt_local``
    A chain of ``RT_NODES`` trivial nodes (remote / local placement); each appends
    ``[index, wall start, wall end, pid]`` (``time.time()``, one clock for every
    process on the machine) to ``ts``, so the gaps between consecutive bodies can be
    read off the final state.
``chain``
    ``CHAIN_STEPS`` local steps, x += 1, each sleeping ``sleep`` seconds.
"""

from __future__ import annotations

import operator
import os
import time
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

RT_NODES = 20
CHAIN_STEPS = 10
REMOTE = {"treadle": {"placement": "remote"}}


# ------------------------------------------------------------------ CPU fan-out


class FanState(TypedDict, total=False):
    n: int
    cpu: float
    results: Annotated[list[dict[str, Any]], operator.add]


class FanItem(TypedDict):
    i: int
    cpu: float


def _plan(state: FanState) -> dict[str, Any]:
    return {}


def _fan(state: FanState) -> list[Send]:
    return [Send("work", {"i": i, "cpu": state["cpu"]}) for i in range(state["n"])]


def burn(seconds: float) -> int:
    """Spin in pure Python until this thread has used ``seconds`` of CPU time."""
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        for _ in range(1000):
            x += 1
    return x


def _work(item: FanItem) -> dict[str, Any]:
    burn(item["cpu"])
    return {"results": [{"i": item["i"], "pid": os.getpid()}]}


def _total(state: FanState) -> dict[str, Any]:
    return {}


def build_fanout() -> StateGraph:
    b = StateGraph(FanState)
    b.add_node("plan", _plan)
    b.add_node("work", _work, metadata=REMOTE)
    b.add_node("total", _total)
    b.add_edge(START, "plan")
    b.add_conditional_edges("plan", _fan, ["work"])
    b.add_edge("work", "total")
    b.add_edge("total", END)
    return b


# ------------------------------------------------------- round-trip chains


class RtState(TypedDict, total=False):
    ts: Annotated[list[list[float]], operator.add]


def _rt_node(i: int):
    def node(state: RtState) -> dict[str, Any]:
        t0 = time.time()
        return {"ts": [[i, t0, time.time(), os.getpid()]]}

    node.__name__ = f"r{i}"
    return node


def build_rt_chain(remote: bool, n_nodes: int = RT_NODES) -> StateGraph:
    b = StateGraph(RtState)
    prev = START
    for i in range(n_nodes):
        b.add_node(f"r{i}", _rt_node(i), metadata=REMOTE if remote else None)
        b.add_edge(prev, f"r{i}")
        prev = f"r{i}"
    b.add_edge(prev, END)
    return b


# ---------------------------------------------------------------------- chain


class ChainState(TypedDict, total=False):
    x: int
    sleep: float


def _step(state: ChainState) -> dict[str, Any]:
    if state.get("sleep"):
        time.sleep(state["sleep"])
    return {"x": state["x"] + 1}


def build_sleep_chain(n_steps: int = CHAIN_STEPS) -> StateGraph:
    b = StateGraph(ChainState)
    prev = START
    for i in range(n_steps):
        b.add_node(f"s{i}", _step)
        b.add_edge(prev, f"s{i}")
        prev = f"s{i}"
    b.add_edge(prev, END)
    return b


fanout = build_fanout()
rt_remote = build_rt_chain(remote=True)
rt_local = build_rt_chain(remote=False)
chain = build_sleep_chain()

# name -> attribute, as served by the benchmark's workers
GRAPHS = {"fanout": "fanout", "rt_remote": "rt_remote", "rt_local": "rt_local", "chain": "chain"}
