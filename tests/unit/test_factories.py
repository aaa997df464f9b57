"""Unit tests for graph factories: every signature langgraph-api accepts, its ServerRuntime,
context-manager factories, and the access context of each use (treadle.graphs.factories)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langgraph.graph.state import CompiledStateGraph, StateGraph
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore
from langgraph_sdk.runtime import _ExecutionRuntime, _ReadRuntime

from treadle.config import get_settings
from treadle.errors import GraphLoadError
from treadle.graphs.factories import Factory, server_runtime
from treadle.graphs.refs import load_factory, load_graph
from treadle.graphs.registry import REF_PREFIX, GraphRegistry
from treadle.store import open_store

HEADER = '''
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph_sdk.runtime import ServerRuntime

SEEN: list[dict[str, Any]] = []
EVENTS: list[str] = []


class State(TypedDict, total=False):
    text: str


def echo(state: State) -> State:
    return {"text": (state.get("text") or "") + " echoed"}


def build():
    b = StateGraph(State)
    b.add_node("echo", echo)
    b.add_edge(START, "echo")
    b.add_edge("echo", END)
    return b


def record(config=None, runtime=None):
    SEEN.append({"config": config, "runtime": runtime})
    return build().compile()
'''

# name -> (source, the parameter that gets the config, the one that gets the runtime)
SIGNATURES: dict[str, tuple[str, str | None, str | None]] = {
    "none": ("def make():\n    return record()", None, None),
    "config": ("def make(config):\n    return record(config=config)", "config", None),
    "config_default": ("def make(cfg=None):\n    return record(config=cfg)", "cfg", None),
    "runtime": ("def make(runtime: ServerRuntime):\n    return record(runtime=runtime)",
                None, "runtime"),
    "runtime_generic": ("def make(rt: ServerRuntime[dict]):\n    return record(runtime=rt)",
                        None, "rt"),
    "runtime_annotated": (
        "def make(rt: Annotated[ServerRuntime, 'x']):\n    return record(runtime=rt)", None, "rt"),
    "runtime_concrete": (
        "from langgraph_sdk.runtime import _ExecutionRuntime\n"
        "def make(rt: _ExecutionRuntime):\n    return record(runtime=rt)", None, "rt"),
    "both": ("def make(config: RunnableConfig, runtime: ServerRuntime):\n"
             "    return record(config, runtime)", "config", "runtime"),
    "both_reversed": ("def make(runtime: ServerRuntime, config: RunnableConfig):\n"
                      "    return record(config, runtime)", "config", "runtime"),
    "both_by_name": ("def make(config, runtime):\n    return record(config, runtime)",
                     "config", "runtime"),
    "both_positional_only": ("def make(c, r: ServerRuntime, /):\n    return record(c, r)",
                             "c", "r"),
    "keyword_only": ("def make(*, runtime: ServerRuntime, config):\n"
                     "    return record(config, runtime)", "config", "runtime"),
    "star_args": ("def make(*args):\n    return record(config=args[0])", None, None),
    "extra_default": ("def make(config, runtime: ServerRuntime, flavour='x'):\n"
                      "    return record(config, runtime)", "config", "runtime"),
    "async_both": ("async def make(config, runtime: ServerRuntime):\n"
                   "    return record(config, runtime)", "config", "runtime"),
    "callable_object": ("class Maker:\n    def __call__(self, runtime: ServerRuntime):\n"
                        "        return record(runtime=runtime)\nmake = Maker()", None, "runtime"),
}


@pytest.fixture()
def pysrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


def _write(directory: Path, body: str) -> Path:
    path = directory / f"f_{uuid.uuid4().hex[:8]}.py"
    path.write_text(HEADER + textwrap.dedent(body) + "\n", encoding="utf-8")
    return path


def _module(graph: StateGraph[Any, Any, Any, Any] | Pregel[Any, Any, Any, Any]) -> ModuleType:
    builder = graph.builder if isinstance(graph, CompiledStateGraph) else graph
    assert isinstance(builder, StateGraph)
    runnable: Any = builder.nodes["echo"].runnable  # a RunnableCallable: the node function is .func
    return sys.modules[runnable.func.__module__]


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_every_signature_gets_what_it_asks_for(pysrc: Path, name: str) -> None:
    source, config_param, runtime_param = SIGNATURES[name]
    path = _write(pysrc, source)
    factory = load_factory(f"{path}:make")
    assert factory is not None
    assert (factory.config_param, factory.runtime_param) == (config_param, runtime_param)
    config = {"configurable": {"thread_id": "t-1"}}
    graph = load_graph(f"{path}:make", config=config, access_context="threads.read")
    assert isinstance(graph, Pregel)
    seen = _module(graph).SEEN[-1]
    wants_config = config_param is not None or name == "star_args"
    assert seen["config"] == (config if wants_config else None)
    runtime = seen["runtime"]
    if runtime_param is None:
        assert runtime is None
    else:
        assert isinstance(runtime, _ReadRuntime)
        assert runtime.access_context == "threads.read"
        assert runtime.execution_runtime is None
        assert runtime.user is None
        assert isinstance(runtime.store, BaseStore)


def test_execution_runtime_carries_a_copy_of_the_context(pysrc: Path) -> None:
    store = _memory()
    context = {"model": "m-1"}
    runtime = server_runtime("threads.create_run", store, context=context)
    assert isinstance(runtime, _ExecutionRuntime)
    assert runtime.execution_runtime is runtime
    assert runtime.context == context and runtime.context is not context
    assert runtime.store is store
    with pytest.raises(PermissionError):
        runtime.ensure_user()
    for access in ("threads.read", "threads.update", "assistants.read"):
        read = server_runtime(access, store, context=context)
        assert isinstance(read, _ReadRuntime) and read.access_context == access
        assert not hasattr(read, "context")
    with pytest.raises(ValueError, match="unknown access_context 'threads.delete'"):
        server_runtime("threads.delete", store)


def test_load_graph_defaults_to_assistants_read_and_an_empty_store(pysrc: Path) -> None:
    path = _write(pysrc, SIGNATURES["both"][0])
    graph = load_graph(f"{path}:make")
    seen = _module(graph).SEEN[-1]
    assert seen["config"] == {"configurable": {}}
    assert seen["runtime"].access_context == "assistants.read"
    assert list(seen["runtime"].store.search(())) == []


def test_factory_sees_its_config_as_the_current_config(pysrc: Path) -> None:
    path = _write(pysrc, """
        def make(config):
            SEEN.append({"current": get_config()})
            return build()
    """)
    config = {"configurable": {"thread_id": "t-2"}}
    graph = load_graph(f"{path}:make", config=config)
    assert _module(graph).SEEN[-1]["current"]["configurable"]["thread_id"] == "t-2"


def test_context_manager_factories_are_entered_and_exited(pysrc: Path) -> None:
    path = _write(pysrc, """
        @contextlib.contextmanager
        def sync_cm(runtime: ServerRuntime):
            EVENTS.append("sync enter " + runtime.access_context)
            yield build()
            EVENTS.append("sync exit")

        @contextlib.asynccontextmanager
        async def async_cm(config, runtime: ServerRuntime):
            EVENTS.append("async enter " + runtime.access_context)
            yield build().compile()
            EVENTS.append("async exit")
    """)
    graph = load_graph(f"{path}:sync_cm")
    assert isinstance(graph, StateGraph)
    graph = load_graph(f"{path}:async_cm", access_context="threads.create_run")
    assert isinstance(graph, Pregel)
    assert _module(graph).EVENTS == ["sync enter assistants.read", "sync exit",
                                     "async enter threads.create_run", "async exit"]


@pytest.mark.parametrize(("source", "message"), [
    ("def make(a: ServerRuntime, b: ServerRuntime):\n    return build()",
     "a graph factory takes one ServerRuntime, not 2 (a, b)"),
    ("def make(config, other):\n    return build()",
     "a graph factory takes a config and/or a ServerRuntime, but other is neither "
     "(give it a default, or annotate the runtime parameter as ServerRuntime)"),
    ("def make(config, runtime, extra):\n    return build()",
     "a graph factory takes a config and/or a ServerRuntime, but runtime, extra is neither "
     "(give it a default, or annotate the runtime parameter as ServerRuntime)"),
])
def test_signatures_no_server_could_call(pysrc: Path, source: str, message: str) -> None:
    path = _write(pysrc, source)
    with pytest.raises(GraphLoadError) as info:
        load_graph(f"{path}:make")
    assert str(info.value) == f"{path}:make: {message}"


def test_a_bare_async_generator_is_refused_with_a_hint(pysrc: Path) -> None:
    path = _write(pysrc, """
        async def make(runtime: ServerRuntime):
            yield build()
    """)
    with pytest.raises(GraphLoadError) as info:
        load_graph(f"{path}:make")
    assert str(info.value) == (
        f"{path}:make() returned an async_generator, not a LangGraph graph (a StateGraph, a "
        "compiled graph or a TreadleGraph) (decorate it with contextlib.asynccontextmanager "
        "to yield the graph)")


def test_classify_without_a_signature_calls_bare() -> None:
    factory = Factory.classify(dict, "builtins:dict")  # no inspectable signature
    assert not factory.takes_arguments


# --- the registry: one call per use, with that use's access context ----------------------


def _memory() -> BaseStore:
    from langgraph.store.memory import InMemoryStore

    return InMemoryStore()


@pytest.fixture()
def registry(pysrc: Path) -> Iterator[tuple[GraphRegistry, Path]]:
    path = _write(pysrc, """
        @contextlib.asynccontextmanager
        async def make(config, runtime: ServerRuntime):
            ert = runtime.execution_runtime
            EVENTS.append(f"enter {runtime.access_context} "
                          f"{ert.context if ert is not None else None} "
                          f"{config['configurable'].get('thread_id')}")
            if config["configurable"].get("fail"):
                raise RuntimeError("no graph today")
            yield build()
            EVENTS.append("exit")

        graph = build().compile()
    """)
    url = f"sqlite:///{pysrc / 'reg.db'}"
    store = open_store(url)
    settings = get_settings(store=url)
    reg = GraphRegistry(store, {"made": f"{path}:make", "plain": f"{path}:graph"},
                        allow_pickled=False, settings=settings)
    reg.load_all()
    try:
        yield reg, path
    finally:
        reg.close()
        store.close()


def test_registry_calls_a_factory_per_use_with_its_access_context(
        registry: tuple[GraphRegistry, Path]) -> None:
    reg, path = registry
    assert reg.failed == {}
    events = sys.modules[_module(reg.graphs[REF_PREFIX + "made"].graph).__name__].EVENTS
    assert events == ["enter assistants.read None None", "exit"]  # loaded once at start
    events.clear()

    async def use() -> list[Any]:
        made = []
        for access, context in [("threads.create_run", {"user_id": "u"}),
                                ("threads.read", None), ("threads.update", None),
                                ("assistants.read", None)]:
            async with reg.open(REF_PREFIX + "made", {"configurable": {"thread_id": "t"}},
                                access, context=context) as graph:
                assert events[-1].startswith("enter")
                assert graph.invoke({"text": "hi"}, {"configurable": {
                    "thread_id": str(uuid.uuid4())}})["text"] == "hi echoed"
                made.append(graph)
            assert events[-1] == "exit"
        async with reg.open(REF_PREFIX + "plain", None, "threads.create_run") as plain:
            made.append(plain)
        return made

    made = asyncio.run(use())
    assert events == ["enter threads.create_run {'user_id': 'u'} t", "exit",
                      "enter threads.read None t", "exit", "enter threads.update None t", "exit",
                      "enter assistants.read None t", "exit"]
    assert len({id(g) for g in made[:4]}) == 4  # a fresh graph for each use
    assert made[4] is reg.graphs[REF_PREFIX + "plain"]  # a graph is shared


def test_registry_factory_failure_is_a_graph_load_error_and_body_errors_pass(
        registry: tuple[GraphRegistry, Path]) -> None:
    reg, path = registry

    async def fail() -> None:
        async with reg.open(REF_PREFIX + "made", {"configurable": {"fail": True}},
                            "threads.read"):
            pass

    with pytest.raises(GraphLoadError) as info:
        asyncio.run(fail())
    assert str(info.value) == f"{path}:make() raised RuntimeError: no graph today"

    async def body_fails() -> None:
        async with reg.open(REF_PREFIX + "made", None, "threads.read"):
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        asyncio.run(body_fails())


def test_registry_shares_a_parameterless_factory_graph_but_enters_its_context_manager(
        pysrc: Path) -> None:
    path = _write(pysrc, """
        def once():
            EVENTS.append("once")
            return build()

        @contextlib.contextmanager
        def managed():
            EVENTS.append("enter")
            yield build()
            EVENTS.append("exit")
    """)
    url = f"sqlite:///{pysrc / 'reg0.db'}"
    store = open_store(url)
    reg = GraphRegistry(store, {"once": f"{path}:once", "managed": f"{path}:managed"},
                        allow_pickled=False, settings=get_settings(store=url))
    reg.load_all()
    try:
        events = _module(reg.graphs[REF_PREFIX + "once"].graph).EVENTS
        assert events == ["once", "enter", "exit"]  # each loaded at start

        async def use() -> tuple[Any, Any]:
            async with reg.open(REF_PREFIX + "once", None, "threads.read") as once:
                pass
            async with reg.open(REF_PREFIX + "managed", None, "threads.read") as managed:
                assert events[-1] == "enter"
            return once, managed

        once, managed = asyncio.run(use())
        assert events == ["once", "enter", "exit", "enter", "exit"]
        assert once is reg.graphs[REF_PREFIX + "once"]
        assert managed is not reg.graphs[REF_PREFIX + "managed"]
    finally:
        reg.close()
        store.close()
