"""Graph factories as LangGraph Platform users write them: ``make_graph(config, runtime)``
and a context manager. Each call is recorded in the server's store (namespace
``("calls", <graph>)``) so a test can see why the server built the graph."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from typing_extensions import TypedDict

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph_sdk.runtime import ServerRuntime


class State(TypedDict, total=False):
    text: str
    access_context: str
    is_for_execution: bool
    context: Any
    thread_id: str


async def _record(runtime: ServerRuntime[Any], graph: str, event: str, config: Any = None) -> None:
    if not isinstance(runtime.store, BaseStore):
        raise TypeError(f"runtime.store is a {type(runtime.store).__name__}")
    ert = runtime.execution_runtime
    await runtime.store.aput(("calls", graph), uuid.uuid4().hex, {
        "event": event, "access_context": runtime.access_context, "user": runtime.user,
        "context": ert.context if ert is not None else None,
        "thread_id": ((config or {}).get("configurable") or {}).get("thread_id"),
    })


def _graph(runtime: ServerRuntime[Any], config: Any) -> CompiledStateGraph[State, None, State, State]:
    ert = runtime.execution_runtime
    made_for = {"access_context": runtime.access_context, "is_for_execution": ert is not None,
                "context": ert.context if ert is not None else None,
                "thread_id": (config.get("configurable") or {}).get("thread_id")}

    def echo(state: State) -> State:
        return {"text": (state.get("text") or "") + " echoed", **made_for}  # type: ignore[typeddict-item]

    builder = StateGraph(State)
    builder.add_node("echo", echo)
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    return builder.compile()


async def make_graph(config: RunnableConfig, runtime: ServerRuntime[Any]) -> CompiledStateGraph[State, None, State, State]:
    await _record(runtime, "made", "call", config)
    return _graph(runtime, config)


@contextlib.asynccontextmanager
async def managed_graph(runtime: ServerRuntime[Any]) -> AsyncIterator[CompiledStateGraph[State, None, State, State]]:
    await _record(runtime, "managed", "enter")
    yield _graph(runtime, {})
    await _record(runtime, "managed", "exit")


def two_configs(config: RunnableConfig, other: RunnableConfig) -> CompiledStateGraph[State, None, State, State]:
    """No server can call this: neither parameter is a ServerRuntime."""
    raise AssertionError("never called")
