"""``treadle.compile`` returns a real LangGraph graph: usable wherever LangGraph takes a
compiled graph (a node of another graph, a Runnable in a chain, ``with_config``,
``batch``), with ``builder.compile()``'s keywords meaning what they mean there.

Each placement runs a matrix of graph shapes and compares with plain LangGraph."""

from __future__ import annotations

import asyncio
import operator
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig, RunnableLambda, RunnableParallel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.func import entrypoint, task
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, Send, interrupt

import treadle
from treadle.errors import ConfigError
from treadle.runtime.pools import RunLimits


class S(TypedDict):
    log: Annotated[list[str], operator.add]
    n: int


def _chain() -> StateGraph[Any, Any, Any, Any]:
    b = StateGraph(S)
    b.add_node("a", lambda s: {"log": ["a"]})
    b.add_node("b", lambda s: {"log": ["b"]})
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    return b


def _fanout(width: int) -> Callable[[], StateGraph[Any, Any, Any, Any]]:
    def make() -> StateGraph[Any, Any, Any, Any]:
        b = StateGraph(S)
        b.add_node("split", lambda s: {})
        b.add_node("leaf", lambda s: {"log": [f"leaf{s['n']}"]})
        b.add_edge(START, "split")
        b.add_conditional_edges("split", lambda s: [Send("leaf", {"log": [], "n": i})
                                                    for i in range(width)])
        return b
    return make


def _nested() -> StateGraph[Any, Any, Any, Any]:
    # A compiled subgraph as a node, and one called from inside a function node.
    inner = _chain().compile()
    b = StateGraph(S)
    b.add_node("sub", inner)
    b.add_node("call", lambda s: {"log": inner.invoke({"log": [], "n": 0})["log"]})
    b.add_edge(START, "sub")
    b.add_edge("sub", "call")
    return b


SHAPES: dict[str, Callable[[], StateGraph[Any, Any, Any, Any]]] = {
    "chain": _chain, "fanout1": _fanout(1), "fanout9": _fanout(9), "nested": _nested,
}


def _run(graph: Any, thread: str | None = None) -> dict[str, Any]:
    config = {"configurable": {"thread_id": thread or str(uuid.uuid4())}}
    out = graph.invoke({"log": ["in"], "n": 0}, config)
    return {"log": sorted(out["log"])}


def _parent(child: Any) -> StateGraph[Any, Any, Any, Any]:
    p = StateGraph(S)
    p.add_node("before", lambda s: {"log": ["before"]})
    p.add_node("child", child)
    p.add_edge(START, "before")
    p.add_edge("before", "child")
    return p


@pytest.fixture
def url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/compat.db"


# --- it is a LangGraph graph ------------------------------------------------------------------


def test_isinstance_compiled_state_graph_and_pregel(url: str) -> None:
    with treadle.compile(_chain(), store_url=url) as g:
        assert isinstance(g, CompiledStateGraph)
        assert isinstance(g, Pregel)
        assert isinstance(g, treadle.TreadleGraph)


def test_functional_api_graph_is_a_pregel_not_a_state_graph(url: str) -> None:
    @task
    def double(x: int) -> int:
        return 2 * x

    @entrypoint()
    def flow(xs: list[int]) -> list[int]:
        return [f.result() for f in [double(x) for x in xs]]

    with treadle.compile(flow, store_url=url) as g:
        assert isinstance(g, Pregel) and isinstance(g, treadle.TreadleGraph)
        assert not isinstance(g, CompiledStateGraph)
        assert g.invoke([1, 2, 3], {"thread_id": "f"}) == [2, 4, 6]
        assert g.get_state({"thread_id": "f"}).values == [2, 4, 6]


# --- as a node of another graph: the matrix --------------------------------------------------


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("placement", ["top", "plain-parent-saver", "plain-parent-none",
                                       "treadle-parent"])
def test_shape_by_placement_matches_langgraph(shape: str, placement: str, url: str) -> None:
    make = SHAPES[shape]
    if placement == "top":
        expected = _run(make().compile(checkpointer=InMemorySaver()))
        with treadle.compile(make(), store_url=url) as g:
            assert _run(g) == expected
        return
    expected = _run(_parent(make().compile()).compile(checkpointer=InMemorySaver()))
    with treadle.compile(make(), store_url=url) as child:
        if placement == "plain-parent-saver":
            parent = _parent(child).compile(checkpointer=InMemorySaver())
            thread = str(uuid.uuid4())
            assert _run(parent, thread) == expected
            # LangGraph's subgraph semantics: the parent's saver holds the child's state.
            state = parent.get_state({"configurable": {"thread_id": thread}})
            assert sorted(state.values["log"]) == expected["log"]
        elif placement == "plain-parent-none":
            assert _run(_parent(child).compile()) == expected
        else:
            with treadle.compile(_parent(child), store_url=url) as ours:
                thread = str(uuid.uuid4())
                assert _run(ours, thread) == expected
                assert sorted(ours.get_state({"thread_id": thread}).values["log"]) == expected["log"]


def _asks() -> StateGraph[Any, Any, Any, Any]:
    b = StateGraph(S)
    b.add_node("ask", lambda s: {"log": [f"answer:{interrupt('q?')}"]})
    b.add_edge(START, "ask")
    return b


@pytest.mark.parametrize("parent_kind", ["plain", "treadle"])
def test_interrupt_inside_child_resumes_through_parent(parent_kind: str, url: str) -> None:
    ref = _parent(_asks().compile()).compile(checkpointer=InMemorySaver())
    with treadle.compile(_asks(), store_url=url) as child:
        ours = (_parent(child).compile(checkpointer=InMemorySaver()) if parent_kind == "plain"
                else treadle.compile(_parent(child), store_url=url))
        outs = []
        for graph in (ref, ours):
            config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}
            first = graph.invoke({"log": [], "n": 0}, config)
            assert [i.value for i in first["__interrupt__"]] == ["q?"]
            snap = graph.get_state(config, subgraphs=True)
            assert snap.tasks and snap.tasks[0].state is not None  # the child's own state
            outs.append(graph.invoke(Command(resume="yes"), config)["log"])
        assert outs[0] == outs[1] == ["before", "before", "answer:yes"]
        if parent_kind == "treadle":
            assert isinstance(ours, treadle.TreadleGraph)
            ours.close()


# --- a Runnable like any other ----------------------------------------------------------------


def test_pipe_parallel_batch_and_with_config(url: str) -> None:
    with treadle.compile(_chain(), store_url=url) as g:
        assert (g | RunnableLambda(lambda s: len(s["log"]))).invoke({"log": [], "n": 0}) == 2
        both = RunnableParallel(x=g, y=g).invoke({"log": ["p"], "n": 0})
        assert both["x"]["log"] == both["y"]["log"] == ["p", "a", "b"]
        assert [o["log"] for o in g.batch([{"log": [], "n": 0}, {"log": ["z"], "n": 0}])] == [
            ["a", "b"], ["z", "a", "b"]]
        assert [o["log"] for o in asyncio.run(g.abatch([{"log": ["q"], "n": 0}]))] == [["q", "a", "b"]]
        pinned = g.with_config(configurable={"thread_id": "pinned"})
        assert type(pinned) is type(g) and pinned.treadle_core is g.treadle_core
        pinned.invoke({"log": ["1"], "n": 0})
        pinned.invoke({"log": ["2"], "n": 0})
        # Durable under the pinned thread, read back through the original graph.
        assert g.get_state({"thread_id": "pinned"}).values["log"] == ["1", "a", "b", "2", "a", "b"]


@pytest.mark.parametrize("is_async", [False, True])
def test_with_config_max_concurrency_bounds_bodies_not_langgraphs_executor(
        is_async: bool, url: str) -> None:
    import threading
    import time

    lock, running, most = threading.Lock(), [0], [0]

    def leaf(state: S) -> dict[str, Any]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return {"log": [f"leaf{state['n']}"]}

    b = StateGraph(S)
    b.add_node("split", lambda s: {})
    b.add_node("leaf", leaf)
    b.add_edge(START, "split")
    b.add_conditional_edges("split", lambda s: [Send("leaf", {"log": [], "n": i}) for i in range(8)])
    with treadle.compile(b, store_url=url) as g:
        bounded = g.with_config(max_concurrency=2)
        seen: dict[str, Any] = {}
        real = treadle.TreadleGraph._limits

        def spy(self: treadle.TreadleGraph, cfg: dict[str, Any], max_workers: Any,
                is_async: bool) -> RunLimits:
            limits = real(self, cfg, max_workers, is_async)
            seen.update(cfg)
            return limits

        treadle.TreadleGraph._limits = spy  # type: ignore[method-assign]
        try:
            inputs = {"log": [], "n": 0}
            out = asyncio.run(bounded.ainvoke(inputs)) if is_async else bounded.invoke(inputs)
        finally:
            treadle.TreadleGraph._limits = real  # type: ignore[method-assign]
        assert len(out["log"]) == 8
        assert most[0] == 2  # max_concurrency means the most node calls at once
        assert seen["max_concurrency"] == 1 << 30  # LangGraph's executor left unbounded


def test_astream_events_run_is_durable(url: str) -> None:
    async def go(g: Any) -> list[str]:
        return [e["event"] async for e in g.astream_events({"log": [], "n": 0},
                                                          {"thread_id": "ev"}, version="v2")]

    with treadle.compile(_chain(), store_url=url) as g:
        events = asyncio.run(go(g))
        assert "on_chain_end" in events
        assert g.get_state({"thread_id": "ev"}).values["log"] == ["a", "b"]


# --- compile keywords ---------------------------------------------------------------------------


def _remembers() -> StateGraph[Any, Any, Any, Any]:
    def node(state: S, *, store: BaseStore) -> dict[str, Any]:
        store.put(("users",), "u1", {"seen": state["n"]})
        return {"log": [str(store.get(("users",), "u1").value["seen"])]}  # type: ignore[union-attr]

    b = StateGraph(S)
    b.add_node("node", node)
    b.add_edge(START, "node")
    return b


def test_store_is_langgraphs_memory_store(url: str) -> None:
    memory = InMemoryStore()
    with treadle.compile(_remembers(), store=memory, store_url=url) as g:
        assert g.store is memory
        assert g.invoke({"log": [], "n": 7}, {"thread_id": "m"})["log"] == ["7"]
        assert memory.get(("users",), "u1").value == {"seen": 7}  # type: ignore[union-attr]
        assert g.get_state({"thread_id": "m"}).values["n"] == 7  # checkpoints: treadle's store


def test_store_url_given_as_store_string(tmp_path: Any) -> None:
    path = tmp_path / "by-string.db"
    with treadle.compile(_chain(), store=f"sqlite:///{path}") as g:
        g.invoke({"log": [], "n": 0}, {"thread_id": "s"})
        assert g.store is None and g.settings.store == f"sqlite:///{path}"
    assert path.exists()


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"durability": "bogus"}, "durability= / TREADLE_DURABILITY: must be one of sync, async, exit"),
    ({"max_workers": 0}, "max_workers="),
    ({"max_workers": "many"}, "max_workers="),
    ({"node_timeout": -1}, "node_timeout="),
    ({"bogus": 1}, "unknown keyword(s) ['bogus']"),
    ({"checkpointer": InMemorySaver()}, "treadle is the checkpointer"),
    ({"store": 3}, "not int"),
    ({"store": "sqlite:///a.db", "store_url": "sqlite:///b.db"}, "store_url= only"),
    ({"store": InMemoryStore(), "memory_store": InMemoryStore()}, "keep store="),
    ({"nodes": {"nope": {"pool": "thread"}}}, "nodes=['nope'] are not nodes"),
])
def test_bad_options_are_one_config_error_line(kwargs: dict[str, Any], says: str, url: str) -> None:
    kwargs.setdefault("store_url", url) if "store" not in kwargs else None
    with pytest.raises(ConfigError) as info:
        treadle.compile(_chain(), **kwargs)
    message = str(info.value)
    assert says in message
    assert "\n" not in message and "pydantic" not in message and "validation error" not in message


def test_compile_keywords_of_langgraph_pass_through(url: str) -> None:
    with treadle.compile(_chain(), store_url=url, interrupt_before=["b"], name="named") as g:
        assert g.get_name() == "named"
        g.invoke({"log": [], "n": 0}, {"thread_id": "i"})
        assert g.get_state({"thread_id": "i"}).next == ("b",)
