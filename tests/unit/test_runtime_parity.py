"""treadle.compile keeps LangGraph's semantics: each scenario runs on plain LangGraph
(InMemorySaver) and on treadle (embedded SQLite), and the outputs must match."""

from __future__ import annotations

import itertools
import operator
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph.pregel.protocol import PregelProtocol
from langgraph.types import Command, RetryPolicy, Send, StreamMode, interrupt
from pydantic import BaseModel

import treadle
from treadle import TreadleGraph


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/parity.db"


def both(builder: StateGraph[Any, Any, Any, Any], store_url: str,
         **kw: Any) -> tuple[CompiledStateGraph[Any, Any, Any, Any], TreadleGraph]:
    ref = builder.compile(checkpointer=InMemorySaver(), **kw)
    ours = treadle.compile(builder, store=store_url, **kw)
    return ref, ours


def cfg(tid: str | None = None) -> RunnableConfig:
    return {"configurable": {"thread_id": tid or str(uuid.uuid4())}}


def strip_ids(chunks: list[Any]) -> list[Any]:
    """Message ids and task ids are random per run; compare everything else."""
    out = []
    for c in chunks:
        out.append(repr(c) if not isinstance(c, (dict, tuple, list)) else _norm(c))
    return out


def _norm(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items() if k not in ("id", "checkpoint_id", "task_id")}
    if isinstance(v, (list, tuple)):
        return type(v)(_norm(x) for x in v)
    if hasattr(v, "model_dump"):
        return _norm({k: x for k, x in v.model_dump().items() if k != "id"})
    return v


class Fan(TypedDict):
    items: list[int]
    results: Annotated[list[int], operator.add]
    total: int


def fan_builder() -> StateGraph[Any, Any, Any, Any]:
    def square(state: Any) -> dict[str, Any]:  # a Send payload: {"n": ...}
        return {"results": [state["n"] * state["n"]]}

    def collect(state: Fan) -> dict[str, Any]:
        return {"total": sum(state["results"])}

    b = StateGraph(Fan)
    b.add_node("square", square)
    b.add_node("collect", collect)
    b.add_conditional_edges(START, lambda s: [Send("square", {"n": n}) for n in s["items"]], ["square"])
    b.add_edge("square", "collect")
    b.add_edge("collect", END)
    return b


def test_send_fanout_matches(store_url: str) -> None:
    ref, ours = both(fan_builder(), store_url)
    inp = {"items": list(range(20)), "results": [], "total": 0}
    expected = ref.invoke(inp, cfg())
    got = ours.invoke(inp, cfg())
    assert sorted(got["results"]) == sorted(expected["results"])
    assert got["total"] == expected["total"] == sum(n * n for n in range(20))
    ours.close()


async def test_send_fanout_async_matches(store_url: str) -> None:
    async def square(state: Any) -> dict[str, Any]:  # a Send payload: {"n": ...}
        return {"results": [state["n"] + 1]}

    b = StateGraph(Fan)
    b.add_node("square", square)
    b.add_conditional_edges(START, lambda s: [Send("square", {"n": n}) for n in s["items"]], ["square"])
    ref, ours = both(b, store_url)
    inp = {"items": list(range(50)), "results": [], "total": 0}
    assert sorted((await ours.ainvoke(inp, cfg()))["results"]) == sorted(
        (await ref.ainvoke(inp, cfg()))["results"]
    )
    ours.close()


class Route(TypedDict):
    path: list[str]


def command_builder() -> StateGraph[Any, Any, Any, Any]:
    def a(state: Route) -> Command[str]:
        return Command(goto="c", update={"path": state["path"] + ["a"]})

    def b_(state: Route) -> dict[str, Any]:
        return {"path": state["path"] + ["b"]}

    def c(state: Route) -> dict[str, Any]:
        return {"path": state["path"] + ["c"]}

    b = StateGraph(Route)
    b.add_node("a", a, destinations=("b", "c"))
    b.add_node("b", b_)
    b.add_node("c", c)
    b.add_edge(START, "a")
    return b


@pytest.mark.parametrize("mode", ["values", "updates", "debug", "tasks", "checkpoints"])
def test_command_goto_and_stream_modes_match(store_url: str, mode: StreamMode) -> None:
    ref, ours = both(command_builder(), store_url)
    expected = list(ref.stream({"path": []}, cfg(), stream_mode=mode))
    got = list(ours.stream({"path": []}, cfg(), stream_mode=mode))
    assert len(got) == len(expected)
    if mode in ("values", "updates"):
        assert got == expected
    assert ours.invoke({"path": []}, cfg()) == {"path": ["a", "c"]}
    ours.close()


class Approval(TypedDict):
    request: str
    decision: str


def interrupt_builder() -> StateGraph[Any, Any, Any, Any]:
    def ask(state: Approval) -> dict[str, Any]:
        answer = interrupt({"question": f"approve {state['request']}?"})
        return {"decision": answer}

    b = StateGraph(Approval)
    b.add_node("ask", ask)
    b.add_edge(START, "ask")
    return b


def test_interrupt_and_resume_match(store_url: str) -> None:
    ref, ours = both(interrupt_builder(), store_url)
    for g in (ref, ours):
        c = cfg()
        first = g.invoke({"request": "deploy", "decision": ""}, c)
        assert first["__interrupt__"][0].value == {"question": "approve deploy?"}
        state = g.get_state(c)
        assert state.next == ("ask",)
        assert state.tasks[0].interrupts[0].value == {"question": "approve deploy?"}
        done = g.invoke(Command(resume="yes"), c)
        assert done == {"request": "deploy", "decision": "yes"}
    ours.close()


def test_interrupt_before_and_resume(store_url: str) -> None:
    ref, ours = both(command_builder(), store_url, interrupt_before=["c"])
    for g in (ref, ours):
        c = cfg()
        g.invoke({"path": []}, c)
        assert g.get_state(c).next == ("c",)
        assert g.invoke(None, c) == {"path": ["a", "c"]}
    ours.close()


class Outer(TypedDict):
    log: Annotated[list[str], operator.add]


def subgraph_builder() -> StateGraph[Any, Any, Any, Any]:
    def inner_step(state: Outer) -> dict[str, Any]:
        return {"log": ["inner"]}

    sub = StateGraph(Outer)
    sub.add_node("inner_step", inner_step)
    sub.add_edge(START, "inner_step")

    b = StateGraph(Outer)
    b.add_node("before", lambda s: {"log": ["before"]})
    b.add_node("sub", sub.compile())
    b.add_node("after", lambda s: {"log": ["after"]})
    b.add_edge(START, "before")
    b.add_edge("before", "sub")
    b.add_edge("sub", "after")
    return b


def test_subgraph_stream_matches(store_url: str) -> None:
    ref, ours = both(subgraph_builder(), store_url)
    expected = list(ref.stream({"log": []}, cfg(), stream_mode="updates", subgraphs=True))
    got = list(ours.stream({"log": []}, cfg(), stream_mode="updates", subgraphs=True))
    assert [(len(ns), upd) for ns, upd in got] == [(len(ns), upd) for ns, upd in expected]
    assert ours.invoke({"log": []}, cfg()) == ref.invoke({"log": []}, cfg())
    ours.close()


def test_subgraph_interrupt_resume(store_url: str) -> None:
    def inner(state: Approval) -> dict[str, Any]:
        return {"decision": interrupt("inner?")}

    sub = StateGraph(Approval)
    sub.add_node("inner", inner)
    sub.add_edge(START, "inner")
    b = StateGraph(Approval)
    b.add_node("sub", sub.compile())
    b.add_edge(START, "sub")
    ref, ours = both(b, store_url)
    for g in (ref, ours):
        c = cfg()
        out = g.invoke({"request": "r", "decision": ""}, c)
        assert out["__interrupt__"][0].value == "inner?"
        assert g.invoke(Command(resume="ok"), c)["decision"] == "ok"
    ours.close()


class Deferred(TypedDict):
    seen: Annotated[list[str], operator.add]


def test_defer_matches(store_url: str) -> None:
    b = StateGraph(Deferred)
    b.add_node("a", lambda s: {"seen": ["a"]})
    b.add_node("b1", lambda s: {"seen": ["b1"]})
    b.add_node("b2", lambda s: {"seen": ["b2"]})
    b.add_node("final", lambda s: {"seen": ["final"]}, defer=True)
    b.add_edge(START, "a")
    b.add_edge("a", "b1")
    b.add_edge("b1", "b2")
    b.add_edge("a", "final")
    b.add_edge("b2", "final")
    ref, ours = both(b, store_url)
    expected = ref.invoke({"seen": []}, cfg())
    assert ours.invoke({"seen": []}, cfg()) == expected
    assert expected["seen"][-1] == "final"
    ours.close()


class PState(BaseModel):
    count: int = 0
    name: str = "x"


def test_pydantic_state_matches(store_url: str) -> None:
    b = StateGraph(PState)
    b.add_node("inc", lambda s: {"count": s.count + 1})
    b.add_edge(START, "inc")
    ref, ours = both(b, store_url)
    c, rc = cfg(), cfg()
    got = ours.invoke({"count": 41}, c)
    assert got == ref.invoke({"count": 41}, rc)
    assert got["count"] == 42
    assert ours.get_state(c).values == ref.get_state(rc).values
    ours.close()


def _contents(chunks: Iterable[Any]) -> list[Any]:
    """The message contents of a ``stream_mode="messages"`` stream of (message, metadata)."""
    return [m.content for m, _ in chunks]


def test_messages_stream_mode(store_url: str) -> None:
    model = GenericFakeChatModel(messages=itertools.cycle([AIMessage(content="hello there")]))

    def chat(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    b = StateGraph(MessagesState)
    b.add_node("chat", chat)
    b.add_edge(START, "chat")
    ref, ours = both(b, store_url)
    inp = {"messages": [HumanMessage(content="hi")]}
    expected = _contents(ref.stream(inp, cfg(), stream_mode="messages"))
    got = _contents(ours.stream(inp, cfg(), stream_mode="messages"))
    assert got == expected and "".join(got) == "hello there"
    c = cfg()
    ours.invoke(inp, c)
    assert [m.content for m in ours.get_state(c).values["messages"]] == ["hi", "hello there"]
    ours.close()


def test_custom_stream_mode(store_url: str) -> None:
    from langgraph.config import get_stream_writer

    def node(state: Route) -> dict[str, Any]:
        get_stream_writer()({"progress": 50})
        return {"path": ["x"]}

    b = StateGraph(Route)
    b.add_node("node", node)
    b.add_edge(START, "node")
    ref, ours = both(b, store_url)
    assert list(ours.stream({"path": []}, cfg(), stream_mode="custom")) == list(
        ref.stream({"path": []}, cfg(), stream_mode="custom")
    ) == [{"progress": 50}]
    ours.close()


def test_node_retry_policy_honoured(store_url: str) -> None:
    calls = {"n": 0}

    def flaky(state: Route) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ValueError("flaky")  # not transient by default: only the node policy retries
        return {"path": ["ok"]}

    b = StateGraph(Route)
    b.add_node("flaky", flaky, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01,
                                                       jitter=False, retry_on=ValueError))
    b.add_edge(START, "flaky")
    ours = treadle.compile(b, store=store_url)
    assert ours.invoke({"path": []}, cfg()) == {"path": ["ok"]}
    assert calls["n"] == 3
    ours.close()


def test_history_update_state_and_time_travel(store_url: str) -> None:
    ref, ours = both(command_builder(), store_url)
    results: list[tuple[Any, ...]] = []
    for g in (ref, ours):
        c = cfg()
        g.invoke({"path": []}, c)
        history = list(g.get_state_history(c))
        assert [h.next for h in history] == [(), ("c",), ("a",), ("__start__",)]
        # Replay from the checkpoint before "c" ran: only "c" runs again.
        before_c = history[1]
        replayed = g.invoke(None, before_c.config)
        # Fork: edit that checkpoint's state as if "a" had written it.
        forked = g.update_state(before_c.config, {"path": ["edited"]}, as_node="a")
        after_fork = g.invoke(None, forked)
        results.append((replayed, g.get_state(forked).values, after_fork,
                        len(list(g.get_state_history(c)))))
    assert results[0] == results[1]
    assert results[1][0] == {"path": ["a", "c"]}
    ours.close()


def test_thread_id_top_level_and_fresh_thread(store_url: str) -> None:
    ours = treadle.compile(command_builder(), store=store_url)
    assert ours.invoke({"path": []}, {"thread_id": "top"}) == {"path": ["a", "c"]}
    assert ours.get_state({"thread_id": "top"}).values == {"path": ["a", "c"]}
    # No thread id: a fresh thread each time (stateless use keeps working).
    assert ours.invoke({"path": []}) == {"path": ["a", "c"]}
    assert ours.invoke({"path": []}) == {"path": ["a", "c"]}
    ours.close()


def test_recursion_limit_applies(store_url: str) -> None:
    from langgraph.errors import GraphRecursionError

    b = StateGraph(Route)
    b.add_node("loop", lambda s: {"path": s["path"] + ["x"]})
    b.add_edge(START, "loop")
    b.add_conditional_edges("loop", lambda s: "loop", ["loop"])
    ours = treadle.compile(b, store=store_url)
    with pytest.raises(GraphRecursionError):
        ours.invoke({"path": []}, {"recursion_limit": 5})
    ours.close()


def test_compiling_twice_never_nests_proxies(store_url: str, tmp_path: Path) -> None:
    from treadle.runtime.pools import NodeProxy

    builder = subgraph_builder()
    first = treadle.compile(builder, store=store_url)
    second = treadle.compile(builder, store=f"sqlite:///{tmp_path}/second.db")
    again = treadle.compile(first, store=f"sqlite:///{tmp_path}/third.db")

    def depth(graph: PregelProtocol[Any, Any, Any, Any]) -> int:
        assert isinstance(graph, Pregel)
        worst = 0
        for node in graph.nodes.values():
            d, bound = 0, node.bound
            while isinstance(bound, NodeProxy):
                d, bound = d + 1, bound.bound
            worst = max(worst, d)
            for sub in node.subgraphs or ():
                worst = max(worst, depth(sub))
        return worst

    for g in (first, second, again):
        assert depth(g.graph) == 1
        # max_workers=1 would deadlock if a task took two slots.
        assert g.invoke({"log": []}, {"max_workers": 1})["log"][-1] == "after"
        g.close()


def test_graphs_share_one_store_per_url_and_release_it(store_url: str) -> None:
    import gc

    from treadle.store import shared

    a = treadle.compile(command_builder(), store=store_url)
    b = treadle.compile(command_builder(), store=store_url)
    assert a.backend is b.backend
    a.close()
    assert b.invoke({"path": []}) == {"path": ["a", "c"]}  # still open for b
    del b
    gc.collect()  # a graph dropped without close() releases its store too
    assert store_url not in shared._stores
    with pytest.raises(treadle.ConfigError):
        treadle.compile(command_builder(), store=store_url, nodes={"nope": {}})
    assert store_url not in shared._stores  # a failed compile leaks nothing
