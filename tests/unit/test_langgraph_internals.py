"""treadle._langgraph against the installed LangGraph: each accessor of a LangGraph
internal does what treadle relies on (a release that changes one fails here, by name),
and no other treadle module reaches into LangGraph's private names."""

from __future__ import annotations

import ast
import asyncio
import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.types import RetryPolicy, Send, interrupt

import treadle
from treadle import _langgraph as lg

SRC = Path(treadle.__file__).parent


class S(TypedDict):
    out: Annotated[list[Any], operator.add]


def _thread(name: str) -> RunnableConfig:
    return {"configurable": {"thread_id": name}}


def _seen_config(**compile_kwargs: Any) -> dict[str, Any]:
    """The config LangGraph gives a node of a one-node graph."""
    seen: dict[str, Any] = {}

    def node(state: S, config: RunnableConfig) -> dict[str, Any]:
        seen.update(config)
        return {"out": [1]}

    b = StateGraph(S)
    b.add_node("a", node)
    b.add_edge(START, "a")
    b.compile(**compile_kwargs).invoke({"out": []}, _thread("t"))
    return seen


# --- a task's config -----------------------------------------------------------------------
def test_task_id_and_in_task_inside_and_outside_a_task() -> None:
    config = _seen_config()
    tid = lg.task_id(config)
    assert isinstance(tid, str) and tid
    assert lg.in_task(config)
    assert lg.task_id({"configurable": {"thread_id": "t"}}) is None
    assert lg.task_id(None) is None
    assert not lg.in_task({"configurable": {"thread_id": "t"}})


def test_task_id_is_the_same_for_every_attempt_of_a_task() -> None:
    ids: list[str | None] = []
    attempts: list[int] = []

    def flaky(state: S, config: RunnableConfig) -> dict[str, Any]:
        ids.append(lg.task_id(config))
        attempts.append(lg.node_attempt(config))
        if len(ids) < 3:
            raise ValueError("not yet")
        return {"out": [1]}

    b = StateGraph(S)
    b.add_node("a", flaky, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.0,
                                                   jitter=False, retry_on=ValueError))
    b.add_edge(START, "a")
    assert b.compile(checkpointer=InMemorySaver()).invoke({"out": []}, _thread("t")) == {"out": [1]}
    assert len(set(ids)) == 1 and ids[0]
    # node_attempt: which attempt of its task a node call is.
    assert attempts == [1, 2, 3]


def test_node_attempt_defaults_to_one() -> None:
    assert lg.node_attempt({"configurable": {}}) == 1
    assert lg.node_attempt(None) == 1
    assert lg.node_attempt(_seen_config()) == 1


def test_checkpointer_of_a_task_is_its_graphs_saver() -> None:
    saver = InMemorySaver()
    config = _seen_config(checkpointer=saver)
    assert lg.has_checkpointer(config)
    assert lg.checkpointer_of(config) is saver
    assert not lg.has_checkpointer({"configurable": {"thread_id": "t"}})
    assert lg.checkpointer_of({"configurable": {"thread_id": "t"}}) is None


def test_set_checkpointer_makes_a_run_write_to_that_saver() -> None:
    """What checkpoint_store= relies on: the config's saver wins over the graph's."""
    own, other = InMemorySaver(), InMemorySaver()
    b = StateGraph(S)
    b.add_node("a", lambda s: {"out": [1]})
    b.add_edge(START, "a")
    conf: dict[str, Any] = {"thread_id": "t"}
    lg.set_checkpointer(conf, other)
    assert lg.checkpointer_of({"configurable": conf}) is other
    b.compile(checkpointer=own).invoke({"out": []}, {"configurable": conf})
    assert other.get_tuple(_thread("t")) is not None
    assert own.get_tuple(_thread("t")) is None


def test_langgraphs_own_config_keys_share_one_prefix() -> None:
    """treadle's server refuses client keys with that prefix: every key LangGraph adds
    to a task's configurable for its own use must carry it."""
    config = _seen_config(checkpointer=InMemorySaver())
    ours = {"thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint_map"}
    internal = {k for k in config["configurable"] if k not in ours}
    assert internal, "LangGraph no longer adds keys of its own to a task's configurable"
    assert all(k.startswith(lg.CONFIG_KEY_PREFIX) for k in internal), internal


# --- retries -------------------------------------------------------------------------------
def test_retries_on_matches_as_langgraph_matches() -> None:
    by_class = RetryPolicy(retry_on=ValueError)
    assert lg.retries_on(by_class, ValueError("x"))
    assert not lg.retries_on(by_class, KeyError("x"))
    by_tuple = RetryPolicy(retry_on=(KeyError, TypeError))
    assert lg.retries_on(by_tuple, TypeError("x"))
    assert not lg.retries_on(by_tuple, ValueError("x"))
    by_call = RetryPolicy(retry_on=lambda exc: "again" in str(exc))
    assert lg.retries_on(by_call, RuntimeError("again"))
    assert not lg.retries_on(by_call, RuntimeError("never"))
    # Not an Exception (a cancellation, an exit): never retried.
    assert not lg.retries_on(RetryPolicy(retry_on=lambda exc: True), KeyboardInterrupt())


# --- checkpoint layout -----------------------------------------------------------------------
def test_channel_names_in_a_real_checkpoint() -> None:
    """BRANCH_TO_PREFIX triggers a node; TASKS_CHANNEL holds pending Sends."""
    b = StateGraph(S)
    b.add_node("a", lambda s: {"out": [1]})
    b.add_node("w", lambda s: {"out": [2]})
    b.add_edge(START, "a")
    b.add_conditional_edges("a", lambda s: [Send("w", {"out": []})], ["w"])
    saver = InMemorySaver()
    b.compile(checkpointer=saver, interrupt_before=["w"]).invoke({"out": []}, _thread("t"))
    tup = saver.get_tuple(_thread("t"))
    assert tup is not None
    assert lg.BRANCH_TO_PREFIX + "a" in tup.checkpoint["channel_versions"]
    packets = tup.checkpoint["channel_values"][lg.TASKS_CHANNEL]
    assert [p.node for p in packets] == ["w"]


def test_error_and_interrupt_channels_in_pending_writes() -> None:
    def boom(state: S) -> dict[str, Any]:
        raise RuntimeError("boom")

    def ask(state: S) -> dict[str, Any]:
        return {"out": [interrupt("question")]}

    saver = InMemorySaver()
    for name, node in (("boom", boom), ("ask", ask)):
        b = StateGraph(S)
        b.add_node(name, node)
        b.add_edge(START, name)
        try:
            b.compile(checkpointer=saver).invoke({"out": []}, _thread(name))
        except RuntimeError:
            pass
    failed = saver.get_tuple(_thread("boom"))
    asked = saver.get_tuple(_thread("ask"))
    assert failed is not None and asked is not None
    assert lg.ERROR_CHANNEL in {channel for _t, channel, _v in failed.pending_writes or ()}
    interrupts = [v for _t, channel, v in asked.pending_writes or () if channel == lg.INTERRUPT_CHANNEL]
    assert interrupts and "question" in repr(interrupts)


# --- a function node's runnable ------------------------------------------------------------------
def test_function_node_accessors() -> None:
    def sync_node(state: S, config: RunnableConfig) -> dict[str, Any]:
        return {"out": [1]}

    async def async_node(state: S) -> dict[str, Any]:
        return {"out": [2]}

    b = StateGraph(S)
    b.add_node("s", sync_node)
    b.add_node("a", async_node)
    b.add_edge(START, "s")
    b.add_edge("s", "a")
    g = b.compile()
    sync_bound, async_bound = g.nodes["s"].bound, g.nodes["a"].bound
    assert lg.node_function(sync_bound) is sync_node
    assert lg.node_coroutine(sync_bound) is not None  # LangGraph's executor shim
    assert not lg.is_async_node(sync_bound)
    assert "config" in lg.node_accepts(sync_bound)
    assert lg.node_coroutine(async_bound) is async_node
    assert lg.is_async_node(async_bound)
    assert "config" not in lg.node_accepts(async_bound)
    assert asyncio.run(g.ainvoke({"out": []})) == {"out": [1, 2]}
    # Not a function node.
    assert lg.node_function(object()) is None and lg.node_accepts(object()) == frozenset()
    assert not lg.is_async_node(object())


# --- langgraph-sdk's ServerRuntime variants ------------------------------------------------------
def test_server_runtime_classes() -> None:
    store = InMemoryStore()
    ex = lg.EXECUTION_RUNTIME(access_context="threads.create_run", user=None, store=store,
                              context={"k": 1})
    read = lg.READ_RUNTIME(access_context="threads.read", user=None, store=store)
    assert ex.access_context == "threads.create_run" and ex.context == {"k": 1}
    assert ex.store is store and read.store is store
    assert read.access_context == "threads.read"
    assert ex.execution_runtime is ex and read.execution_runtime is None


# --- nobody else imports LangGraph's private names -------------------------------------------------
def _private_import(node: ast.AST) -> str | None:
    """What a statement imports of LangGraph's (or langgraph-sdk's) private names."""
    def lg_module(name: str) -> bool:
        return name.split(".")[0] in ("langgraph", "langgraph_sdk")

    def private_path(name: str) -> bool:
        return any(part.startswith("_") for part in name.split(".")[1:])

    if isinstance(node, ast.Import):
        for alias in node.names:
            if lg_module(alias.name) and private_path(alias.name):
                return alias.name
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if not lg_module(node.module):
            return None
        if private_path(node.module):
            return node.module
        for alias in node.names:
            if alias.name.startswith("_") or alias.name.startswith("CONFIG_KEY"):
                return f"{node.module}.{alias.name}"
    elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
        # importlib.import_module("langgraph._internal...") / __import__(...)
        name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                    and lg_module(arg.value) and private_path(arg.value):
                return arg.value
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
            and node.value.startswith(lg.CONFIG_KEY_PREFIX):
        return repr(node.value)  # one of LangGraph's config keys, spelled out
    return None


def test_scan_finds_private_imports() -> None:
    found = [_private_import(n) for n in ast.walk(ast.parse(
        "from langgraph._internal._constants import CONFIG_KEY_TASK_ID\n"
        "from langgraph.pregel._retry import x\n"
        "from langgraph.graph.state import _CHANNEL_BRANCH_TO\n"
        "from langgraph.constants import CONFIG_KEY_CHECKPOINTER\n"
        "import langgraph._internal._runnable\n"
        "from langgraph_sdk.runtime import _ReadRuntime\n"
        "importlib.import_module('langgraph.pregel._algo')\n"
        "k = '__pregel_task_id'\n"
        "from langgraph.graph import StateGraph\n"
        "from treadle._langgraph import task_id\n"))]
    assert len([f for f in found if f]) == 8


def test_only_treadle_langgraph_imports_langgraph_internals() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "_langgraph.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            what = _private_import(node)
            if what is not None:
                offenders.append(f"{path.relative_to(SRC)}:{getattr(node, 'lineno', '?')}: {what}")
    assert not offenders, "LangGraph internals outside treadle._langgraph:\n" + "\n".join(offenders)

