"""Worker pools, failure policies and idempotency keys, through treadle.compile."""

from __future__ import annotations

import asyncio
import operator
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.types import Send

import treadle
from treadle.config import Settings
from treadle.errors import CircuitOpenError, ConfigError, NodeTimeoutError, TaskCrashedError
from treadle.runtime.pools import NodeProxy


class S(TypedDict):
    out: Annotated[list[Any], operator.add]


def settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = dict(store=f"sqlite:///{tmp_path}/p.db", retry_initial_interval=0.01,
                                retry_jitter=False, retry_max_attempts=3)
    base.update(kw)
    return Settings(**base)


class Peak:
    """Counts how many node bodies run at the same moment."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *a: object) -> None:
        with self.lock:
            self.now -= 1


def fanout(node: Callable[..., Any], n: int) -> StateGraph[S, None, S, S]:
    b = StateGraph(S)
    b.add_node("work", node)
    b.add_conditional_edges(START, lambda s: [Send("work", {"i": i}) for i in range(n)], ["work"])
    return b


@pytest.mark.parametrize("max_workers", [1, 3])
def test_max_workers_bounds_sync_concurrency(tmp_path: Path, max_workers: int) -> None:
    peak = Peak()
    barrier_hits: list[int] = []

    def work(state: dict[str, Any]) -> dict[str, Any]:
        with peak:
            # Hold the slot until as many bodies as allowed are running (or 5 s pass), so
            # overlap is certain when the bound allows it even on a loaded machine; a
            # broken bound shows as a higher peak.
            deadline = time.monotonic() + 5
            while peak.now < max_workers and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05)
        barrier_hits.append(state["i"])
        return {"out": [state["i"]]}

    g = treadle.compile(fanout(work, 6), settings=settings(tmp_path))
    res = g.invoke({"out": []}, {"max_workers": max_workers})
    assert sorted(res["out"]) == list(range(6))
    # Never more than the bound; and with room for 3, branches really overlap.
    assert peak.peak == max_workers
    g.close()


async def test_max_workers_bounds_async_concurrency(tmp_path: Path) -> None:
    peak = Peak()

    async def work(state: dict[str, Any]) -> dict[str, Any]:
        with peak:
            await asyncio.sleep(0.05)
        return {"out": [state["i"]]}

    g = treadle.compile(fanout(work, 20), settings=settings(tmp_path))
    res = await g.ainvoke({"out": []}, {"max_workers": 4})
    assert sorted(res["out"]) == list(range(20))
    assert peak.peak == 4
    g.close()


@pytest.mark.parametrize("width", [1, 40])
def test_max_concurrency_means_max_workers_and_bodies_see_the_callers_value(tmp_path: Path, width: int) -> None:
    peak, seen = Peak(), list[Any]()

    def work(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        with peak:
            seen.append(config.get("max_concurrency"))
            time.sleep(0.01)
        return {"out": [state["i"]]}

    with treadle.compile(fanout(work, width), settings=settings(tmp_path)) as g:
        res = g.invoke({"out": []}, {"max_concurrency": 2})
        assert sorted(res["out"]) == list(range(width))
        assert peak.peak <= 2
        assert set(seen) == {2}  # a body's own batch() calls keep the caller's bound
        seen.clear()
        g.invoke({"out": []})
        assert set(seen) == {None}  # not treadle's unbounded executor size
        with pytest.raises(ConfigError, match="max_concurrency"):
            g.invoke({"out": []}, {"max_concurrency": 0})


def test_transient_error_retried_from_checkpoint(tmp_path: Path) -> None:
    calls: dict[str, int] = {"first": 0, "flaky": 0}

    def first(state: S) -> dict[str, Any]:
        calls["first"] += 1
        return {"out": ["first"]}

    def flaky(state: S) -> dict[str, Any]:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise RuntimeError("Transient failure")
        return {"out": ["flaky"]}

    b = StateGraph(S)
    b.add_node("first", first)
    b.add_node("flaky", flaky)
    b.add_edge(START, "first")
    b.add_edge("first", "flaky")
    g = treadle.compile(b, settings=settings(tmp_path))
    assert g.invoke({"out": []})["out"] == ["first", "flaky"]
    assert calls == {"first": 1, "flaky": 3}
    g.close()


def test_permanent_error_not_retried(tmp_path: Path) -> None:
    calls = {"n": 0}

    def bad(state: S) -> dict[str, Any]:
        calls["n"] += 1
        raise ValueError("bad input")

    b = StateGraph(S)
    b.add_node("bad", bad)
    b.add_edge(START, "bad")
    g = treadle.compile(b, settings=settings(tmp_path))
    with pytest.raises(ValueError, match="bad input"):
        g.invoke({"out": []})
    assert calls["n"] == 1
    g.close()


def test_sync_timeout_abandons_thread_and_retries(tmp_path: Path) -> None:
    calls = {"n": 0}

    def slow_then_fast(state: S) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(1.0)
        return {"out": [calls["n"]]}

    b = StateGraph(S)
    b.add_node("slow", slow_then_fast, metadata={"treadle": {"timeout": 0.2}})
    b.add_edge(START, "slow")
    g = treadle.compile(b, settings=settings(tmp_path))
    assert g.invoke({"out": []})["out"] == [2]
    g.close()


def test_timeout_exhausts_attempts(tmp_path: Path) -> None:
    async def hang(state: S) -> dict[str, Any]:
        await asyncio.sleep(10)
        return {"out": []}

    b = StateGraph(S)
    b.add_node("hang", hang)
    b.add_edge(START, "hang")
    g = treadle.compile(b, nodes={"hang": {"timeout": 0.05}}, settings=settings(tmp_path, retry_max_attempts=2))
    with pytest.raises(NodeTimeoutError, match="exceeded its timeout"):
        asyncio.run(g.ainvoke({"out": []}))
    g.close()


def test_circuit_breaker_opens_and_fails_fast(tmp_path: Path) -> None:
    calls = {"n": 0}

    def down(state: S) -> dict[str, Any]:
        calls["n"] += 1
        raise ConnectionError("service down")

    b = StateGraph(S)
    b.add_node("down", down)
    b.add_edge(START, "down")
    g = treadle.compile(b, settings=settings(tmp_path, breaker_threshold=2, breaker_cooldown=60,
                                             retry_max_attempts=5))
    with pytest.raises(CircuitOpenError, match="circuit breaker is open"):
        g.invoke({"out": []})
    assert calls["n"] == 2  # the third attempt failed fast without calling the node
    with pytest.raises(CircuitOpenError):
        g.invoke({"out": []})
    assert calls["n"] == 2
    g.close()


def _crash_once(state: PS) -> dict[str, Any]:
    marker = Path(state["marker"])
    if not marker.exists():
        marker.write_text("crashed")
        os._exit(7)
    return {"out": [os.getpid()]}


class PS(TypedDict):
    marker: str
    out: Annotated[list[Any], operator.add]


def test_process_node_crash_fails_only_that_attempt(tmp_path: Path) -> None:
    b = StateGraph(PS)
    b.add_node("crashy", _crash_once, metadata={"treadle": {"pool": "process"}})
    b.add_edge(START, "crashy")
    g = treadle.compile(b, settings=settings(tmp_path, process_workers=1))
    res = g.invoke({"marker": str(tmp_path / "m"), "out": []})
    assert res["out"][0] != os.getpid()  # ran in another process, after one crash
    g.close()


def _cpu(state: S) -> dict[str, Any]:
    return {"out": [os.getpid()]}


def test_process_node_runs_out_of_process_and_fanout(tmp_path: Path) -> None:
    b = StateGraph(S)
    b.add_node("cpu", _cpu, metadata={"treadle": {"pool": "process"}})
    b.add_conditional_edges(START, lambda s: [Send("cpu", {}) for _ in range(4)], ["cpu"])
    g = treadle.compile(b, settings=settings(tmp_path, process_workers=2))
    res = g.invoke({"out": []})
    assert len(res["out"]) == 4 and os.getpid() not in res["out"]
    g.close()


def test_crash_error_is_transient() -> None:
    assert treadle.is_transient(TaskCrashedError("x"))
    assert treadle.is_transient(RuntimeError("x"))
    assert not treadle.is_transient(ValueError("x"))
    assert not treadle.is_transient(CircuitOpenError("x"))
    assert not treadle.is_transient(NotImplementedError("x"))


def test_bad_node_options_are_clear(tmp_path: Path) -> None:
    b = StateGraph(S)
    b.add_node("n", lambda s: {"out": []})
    b.add_edge(START, "n")
    with pytest.raises(ConfigError, match="pool must be one of"):
        treadle.compile(b, nodes={"n": {"pool": "gpu"}}, settings=settings(tmp_path))
    with pytest.raises(ConfigError, match="not nodes of this graph"):
        treadle.compile(b, nodes={"missing": {}}, settings=settings(tmp_path))


def test_idempotency_key_stable_across_retries(tmp_path: Path) -> None:
    keys: list[str] = []

    def pay(state: S) -> dict[str, Any]:
        keys.append(treadle.idempotency_key())
        if len(keys) < 3:
            raise RuntimeError("gateway hiccup")
        return {"out": ["paid"]}

    b = StateGraph(S)
    b.add_node("pay", pay)
    b.add_edge(START, "pay")
    g = treadle.compile(b, settings=settings(tmp_path))
    tid = str(uuid.uuid4())
    g.invoke({"out": []}, {"thread_id": tid})
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0].startswith(tid + ":")
    g.invoke({"out": []}, {"thread_id": tid})  # a new run plans a new task: a new key
    assert len(set(keys)) == 2
    g.close()


def test_distributed_runtime_queues_the_run(tmp_path: Path) -> None:
    """runtime="distributed" queues a run for workers (executed in tests/e2e/test_worker.py);
    an unknown runtime is a clear error."""
    from treadle.cluster import client

    b = StateGraph(S)
    b.add_node("n", lambda s: {"out": []})
    b.add_edge(START, "n")
    g = treadle.compile(b, settings=settings(tmp_path))
    row = client.submit(g, {"out": []}, {"runtime": "distributed", "thread_id": "q"}, {})
    assert (row.status, row.thread_id) == ("pending", "q")
    assert row.graph_id.startswith("pickle:")  # no graph_id: shipped by value
    assert g.backend.get_graph(row.graph_id) is not None
    with pytest.raises(ConfigError, match="runtime must be one of"):
        g.invoke({"out": []}, {"runtime": "cloud"})
    with pytest.raises(ConfigError, match="checkpoint_store"):
        client.submit(g, {}, {"runtime": "distributed", "checkpoint_store": "sqlite:///x.db"}, {})
    g.close()


def test_max_attempts_is_not_silently_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from treadle.cluster import client

    monkeypatch.setattr(client, "_warned_max_attempts", False)
    b = StateGraph(S)
    b.add_node("n", lambda s: {"out": []})
    b.add_edge(START, "n")
    with treadle.compile(b, settings=settings(tmp_path)) as g, caplog.at_level("WARNING", "treadle.client"):
        client.submit(g, {"out": []}, {"runtime": "distributed", "max_attempts": 5}, {})
        client.submit(g, {"out": []}, {"runtime": "distributed", "max_attempts": 5}, {})
    said = [r.getMessage() for r in caplog.records if "max_attempts" in r.getMessage()]
    assert len(said) == 1 and "TREADLE_MAX_WORKER_LOSSES" in said[0]


def test_placement_option(tmp_path: Path) -> None:
    b = StateGraph(S)
    b.add_node("n", lambda s: {"out": []}, metadata={"treadle": {"placement": "remote"}})
    b.add_edge(START, "n")
    g = treadle.compile(b, settings=settings(tmp_path))
    node = g.graph.nodes["n"].bound
    assert isinstance(node, NodeProxy) and node.options.placement == "remote"
    # In a local run a remote node simply runs here.
    assert g.invoke({"out": []}) == {"out": []}
    g.close()
    with pytest.raises(ConfigError, match="placement must be one of"):
        treadle.compile(b, settings=settings(tmp_path), nodes={"n": {"placement": "moon"}})


def test_checkpoint_store_per_run(tmp_path: Path) -> None:
    b = StateGraph(S)
    b.add_node("n", lambda s: {"out": ["x"]})
    b.add_edge(START, "n")
    g = treadle.compile(b, settings=settings(tmp_path))
    other = f"sqlite:///{tmp_path}/other.db"
    g.invoke({"out": []}, {"thread_id": "t1", "checkpoint_store": other})
    assert g.get_state({"thread_id": "t1"}).values == {}  # not in the default store
    assert g.get_state({"thread_id": "t1", "checkpoint_store": other}).values == {"out": ["x"]}
    g.close()


def _hang_once(state: PS) -> dict[str, Any]:
    marker = Path(state["marker"])
    if not marker.exists():
        marker.write_text("hung")
        time.sleep(60)
    return {"out": [os.getpid()]}


def test_process_node_timeout_kills_and_retries(tmp_path: Path) -> None:
    b = StateGraph(PS)
    b.add_node("hang", _hang_once, metadata={"treadle": {"pool": "process", "timeout": 1.0}})
    b.add_edge(START, "hang")
    g = treadle.compile(b, settings=settings(tmp_path, process_workers=1))
    res = g.invoke({"marker": str(tmp_path / "m"), "out": []})
    assert len(res["out"]) == 1  # the hung attempt was killed; the retry finished
    g.close()


def test_update_state_on_a_per_call_store(tmp_path: Path) -> None:
    """update_state claims the thread on the store it writes to, not the default one."""
    b = StateGraph(S)
    b.add_node("n", lambda s: {"out": ["x"]})
    b.add_edge(START, "n")
    g = treadle.compile(b, settings=settings(tmp_path))
    other = {"thread_id": "t", "checkpoint_store": f"sqlite:///{tmp_path}/other.db"}
    g.invoke({"out": []}, other)
    g.update_state(other, {"out": ["edited"]})
    assert g.get_state(other).values == {"out": ["x", "edited"]}
    g.close()


def test_breaker_trial_ending_in_interrupt_does_not_stick(tmp_path: Path) -> None:
    """After the cool-down one trial call is let through; if that call asks for human
    input (interrupt), the breaker must not stay open for ever."""
    from langgraph.types import Command, interrupt

    calls = {"n": 0}

    def node(state: S) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("down")
        return {"out": [interrupt("approve?")]}

    b = StateGraph(S)
    b.add_node("n", node)
    b.add_edge(START, "n")
    g = treadle.compile(b, settings=settings(tmp_path, breaker_threshold=1, breaker_cooldown=0.05,
                                             retry_max_attempts=1))
    with pytest.raises(ConnectionError):
        g.invoke({"out": []}, {"thread_id": "a"})
    time.sleep(0.1)  # past the cool-down: the next call is the half-open trial
    assert "__interrupt__" in g.invoke({"out": []}, {"thread_id": "b"})
    assert g.invoke(Command(resume="yes"), {"thread_id": "b"})["out"] == ["yes"]
    g.close()
