"""Sandboxed nodes through treadle.compile and a real graph: a limit hit fails its own
node, once (not retried), while a sibling branch and another run complete."""

from __future__ import annotations

import asyncio
import operator
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import cloudpickle
import pytest
from langgraph.graph import START, StateGraph

import treadle
from treadle.config import Settings
from treadle.errors import SandboxLimitError
from treadle.runtime.sandbox import Sandbox
from treadle.store.checkpointer import TreadleSaver

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class S(TypedDict):
    big: bool
    marks: str
    db: str
    out: Annotated[list[str], operator.add]


def _sibling_saved(db: str, thread_id: str) -> bool:
    """Whether the sibling's write is in the thread's checkpoint (as a pending write)."""
    store = treadle.open_store(db)
    try:
        saved = TreadleSaver(store).get_tuple({"configurable": {"thread_id": thread_id,
                                                                "checkpoint_ns": ""}})
        return saved is not None and any(
            value == ["sibling"] for _task, _channel, value in saved.pending_writes or ())
    finally:
        store.close()


def _hog(state: S) -> dict[str, Any]:
    with open(Path(state["marks"]) / f"hog-{os.getpid()}", "w"):
        pass  # one file per attempt
    if state["big"]:
        # LangGraph cancels the tasks of a step still running when one fails: wait until
        # the sibling has finished and its write is saved, so that is what is tested.
        deadline = time.monotonic() + 120
        while not _sibling_saved(state["db"], "a") and time.monotonic() < deadline:
            time.sleep(0.05)
    block = bytearray((2 * 1024**3) if state["big"] else 1024)
    return {"out": [f"hog {len(block)}"]}


def _sibling(state: S) -> dict[str, Any]:
    return {"out": ["sibling"]}


def _sleepy(state: S) -> dict[str, Any]:
    if state["big"]:
        time.sleep(3600)
    return {"out": ["sleepy"]}


def graph(tmp_path: Path) -> treadle.TreadleGraph:
    b = StateGraph(S)
    b.add_node("hog", _hog, metadata={"treadle": {"pool": "process",
                                                  "sandbox": {"memory_mb": 256}}})
    b.add_node("sibling", _sibling, metadata={"treadle": {"pool": "process"}})
    b.add_edge(START, "hog")
    b.add_edge(START, "sibling")
    settings = Settings(store=f"sqlite:///{tmp_path}/s.db", retry_initial_interval=0.01,
                        retry_jitter=False, retry_max_attempts=3, process_workers=2)
    return treadle.compile(b, settings=settings)


def test_a_node_over_its_memory_limit_fails_alone(tmp_path: Path) -> None:
    g = graph(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    db = f"sqlite:///{tmp_path}/s.db"
    a = {"configurable": {"thread_id": "a"}}
    b = {"configurable": {"thread_id": "b"}}

    async def both() -> tuple[Any, Any]:
        return await asyncio.gather(
            g.ainvoke({"big": True, "marks": str(tmp_path / "a"), "db": db, "out": []}, a),
            g.ainvoke({"big": False, "marks": str(tmp_path / "b"), "db": db, "out": []}, b),
            return_exceptions=True)

    failed, done = asyncio.run(both())
    try:
        # The other run, on the same graph and pools, completes.
        assert isinstance(done, dict) and sorted(done["out"]) == ["hog 1024", "sibling"]
        # This run fails with the hog's limit, named.
        assert isinstance(failed, SandboxLimitError) and failed.limit == "memory"
        assert str(failed) == "node 'hog' exceeded its memory limit of 256 MB"
        tasks = {t.name: t for t in g.get_state(a).tasks}
        # Its sibling in the same superstep completed, and its write was kept.
        assert tasks["sibling"].result == {"out": ["sibling"]}
        assert "exceeded its memory limit of 256 MB" in str(tasks["hog"].error)
        # A limit hit is not retried: one attempt.
        assert len(list((tmp_path / "a").iterdir())) == 1
    finally:
        g.close()


def test_a_node_over_its_wall_time_fails_through_sync_invoke(tmp_path: Path) -> None:
    b = StateGraph(S)
    b.add_node("sleepy", _sleepy, metadata={"treadle": {"sandbox": {"wall_seconds": 0.5}}})
    b.add_edge(START, "sleepy")
    g = treadle.compile(b, settings=Settings(store=f"sqlite:///{tmp_path}/w.db",
                                             process_workers=1))
    try:
        with pytest.raises(SandboxLimitError, match="wall-time limit of 0.5 s") as info:
            g.invoke({"big": True, "marks": "", "db": "", "out": []}, {"configurable": {"thread_id": "t"}})
        assert info.value.limit == "wall"
        done = g.invoke({"big": False, "marks": "", "db": "", "out": []},
                        {"configurable": {"thread_id": "u"}})
        assert done["out"] == ["sleepy"]
    finally:
        g.close()


def test_a_sandbox_travels_with_a_graph_shipped_to_workers(tmp_path: Path) -> None:
    from treadle.cluster import client
    from treadle.graphs import by_value

    b = StateGraph(S)
    b.add_node("sleepy", _sleepy)
    b.add_edge(START, "sleepy")
    box = {"wall_seconds": 0.5, "network": False}
    g = treadle.compile(b, settings=Settings(store=f"sqlite:///{tmp_path}/d.db"),
                        nodes={"sleepy": {"sandbox": box}})
    try:
        row = client.submit(g, {"big": True, "marks": "", "db": "", "out": []},
                            {"runtime": "distributed", "thread_id": "q"}, {})
        blob = g.backend.get_graph(row.graph_id)
        assert blob is not None
        builder, kwargs, nodes = by_value.load(row.graph_id, blob)
        # What a worker compiles: the same sandbox, on the process pool.
        shipped = treadle.compile(builder, settings=Settings(store=f"sqlite:///{tmp_path}/w.db"),
                                  nodes=nodes, **kwargs)
        options = shipped.nodes["sleepy"].bound.options  # type: ignore[attr-defined]
        assert (options.pool, options.sandbox) == ("process", Sandbox(wall_seconds=0.5,
                                                                       network=False))
        shipped.close()
    finally:
        g.close()
