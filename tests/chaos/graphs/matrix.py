"""The crash-and-resume matrix: a ``Send`` fan-out, one graph per pool.

Each branch sleeps ``sleep`` seconds, appends its index and the time it ended to ``log``
(one ``write`` of a short line, so lines of concurrent branches never mix) and returns it. ``join`` then
waits until the file ``release`` exists: a run killed after its fan-out step is parked
there, and a resumed run goes through at once. Builders: ``thread`` (sync branches),
``async`` (async branches), ``process`` (sync branches on the process pool) and
``remote`` (sync branches placed ``remote``: durable tasks any worker may run).

Run in-process (``python matrix.py STORE_URL SPEC.json start|resume``): one thread per
run of SPEC (a list of ``{"thread_id", "pool", "width", "max_workers", "mode", "log",
"sleep", "release"}``); ``resume`` continues each thread from its last checkpoint and
prints ``{thread_id: final state}`` as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import sys
import threading
import time
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


class State(TypedDict, total=False):
    width: int
    sleep: float
    log: str
    release: str
    done: Annotated[list[int], operator.add]


class Branch(TypedDict):
    i: int
    sleep: float
    log: str


def _record(item: Branch) -> dict[str, list[int]]:
    fd = os.open(item["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{item['i']} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)
    return {"done": [item["i"]]}


def branch(item: Branch) -> dict[str, list[int]]:
    time.sleep(item["sleep"])
    return _record(item)


async def abranch(item: Branch) -> dict[str, list[int]]:
    await asyncio.sleep(item["sleep"])
    return _record(item)


def fan(state: State) -> list[Send]:
    return [Send("branch", {"i": i, "sleep": state["sleep"], "log": state["log"]})
            for i in range(state["width"])]


def join(state: State) -> dict[str, Any]:
    while not os.path.exists(state["release"]):
        time.sleep(0.02)
    return {}


async def ajoin(state: State) -> dict[str, Any]:
    while not os.path.exists(state["release"]):
        await asyncio.sleep(0.02)
    return {}


def _builder(body: Any, join_node: Any, options: dict[str, Any] | None = None) -> StateGraph[State, None, State, State]:
    b = StateGraph(State)
    b.add_node("branch", body, metadata={"treadle": options} if options else None)
    b.add_node("join", join_node)
    b.add_conditional_edges(START, fan, ["branch"])
    b.add_edge("branch", "join")
    b.add_edge("join", END)
    return b


BUILDERS = {
    "thread": _builder(branch, join),
    "async": _builder(abranch, ajoin),
    "process": _builder(branch, join, {"pool": "process"}),
    "remote": _builder(branch, join, {"placement": "remote"}),
}
thread_builder = BUILDERS["thread"]
async_builder = BUILDERS["async"]
process_builder = BUILDERS["process"]
remote_builder = BUILDERS["remote"]


def initial(spec: dict[str, Any]) -> dict[str, Any]:
    return {"width": spec["width"], "sleep": spec["sleep"], "log": spec["log"],
            "release": spec["release"], "done": []}


def config(spec: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {"configurable": {"thread_id": spec["thread_id"]}}
    if spec["max_workers"]:
        cfg["max_workers"] = spec["max_workers"]
    return cfg


def _run(graph: Any, spec: dict[str, Any], resume: bool, out: dict[str, Any]) -> None:
    inp = None if resume else initial(spec)
    cfg, mode = config(spec), spec["mode"]
    if spec["pool"] == "async":
        async def go() -> Any:
            if mode == "invoke":
                return await graph.ainvoke(inp, cfg)
            async for _ in graph.astream(inp, cfg, stream_mode=mode):
                pass
            return None
        result = asyncio.run(go())
    elif mode == "invoke":
        result = graph.invoke(inp, cfg)
    else:
        for _ in graph.stream(inp, cfg, stream_mode=mode):
            pass
        result = None
    out[spec["thread_id"]] = result if result is not None else graph.get_state(cfg).values


def main(store: str, spec_path: str, phase: str) -> None:
    import treadle

    specs = json.loads(open(spec_path).read())
    graphs = {pool: treadle.compile(BUILDERS[pool], store=store)
              for pool in sorted({s["pool"] for s in specs})}
    out: dict[str, Any] = {}
    threads = [threading.Thread(target=_run, args=(graphs[s["pool"]], s, phase == "resume", out))
               for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:4])
