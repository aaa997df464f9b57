"""``treadle.compile``: wrap a LangGraph graph's nodes and give it treadle's checkpointer.

Returns a :class:`~treadle.runtime.graph.TreadleGraph` (a ``TreadleStateGraph`` for a
``StateGraph``), LangGraph's own compiled class subclassed.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, cast

from langgraph.graph.state import StateGraph
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore

from treadle._langgraph import schema_types
from treadle.config import Settings, get_settings
from treadle.errors import ConfigError
from treadle.runtime.core import GraphCore, wrap_nodes
from treadle.runtime.graph import TreadleGraph, _plain_class, _treadle_class
from treadle.store import serde_policy, shared
from treadle.store.checkpointer import TreadleSaver

__all__ = ["compile"]


def compile(
    graph: StateGraph[Any, Any, Any, Any] | Pregel[Any, Any, Any, Any],
    *,
    store: str | BaseStore | None = None,
    store_url: str | None = None,
    nodes: Mapping[str, Mapping[str, Any]] | None = None,
    max_workers: int | None = None,
    node_timeout: float | None = None,
    durability: str | None = None,
    settings: Settings | None = None,
    graph_id: str | None = None,
    **compile_kwargs: Any,
) -> TreadleGraph:
    """Compile ``graph`` (a ``StateGraph`` builder or a compiled graph) onto treadle.

    The result is a real LangGraph graph (a ``CompiledStateGraph`` for a builder, else
    a ``Pregel``) whose runs are durable. Keyword arguments of ``StateGraph.compile``
    mean what they mean there: ``store`` is LangGraph's long-term memory store (a
    ``BaseStore``), ``interrupt_before``, ``cache``, ``name``, ... .

    ``store_url`` is treadle's store, where checkpoints and runs live
    (``sqlite:///path`` or ``postgresql://...``); default ``TREADLE_STORE`` or
    ``./.treadle/treadle.db``. A URL string given as ``store`` is accepted too.
    ``nodes`` maps node names to options (``{"pool": "process", "timeout": 30}``);
    node metadata ``{"treadle": {...}}`` does the same.

    ``graph_id`` names the graph for ``runtime="distributed"`` runs: workers that load
    it under that name (a ``langgraph.json`` key or ``treadle worker name=REF``) run
    them. Without it, such runs ship the graph by value (see docs/architecture.md).
    """
    url, memory_store = _stores(store, store_url, compile_kwargs.pop("memory_store", None))
    settings = settings or get_settings(
        store=url, max_workers=max_workers, node_timeout=node_timeout, durability=durability
    )
    if settings.trace_exporter != "none":  # TREADLE_TRACE_EXPORTER in a Python program
        from treadle.tracing import configure_tracing

        configure_tracing(settings, "treadle")
    if compile_kwargs.get("checkpointer") is not None:
        raise ConfigError("treadle is the checkpointer: drop checkpointer= (treadle's store is "
                          "store_url=), or compile with LangGraph alone to use your own saver")
    compile_kwargs.pop("checkpointer", None)
    if not isinstance(graph, (StateGraph, Pregel)):
        raise ConfigError(
            f"treadle.compile() needs a LangGraph StateGraph or compiled graph, not {type(graph).__name__}"
        )
    if isinstance(graph, StateGraph):
        _check_compile_kwargs(compile_kwargs)
    elif compile_kwargs:
        raise ConfigError(
            f"{sorted(compile_kwargs)} only apply to a StateGraph builder; "
            "pass the builder instead of a compiled graph"
        )
    _allow_schema_types(graph)
    backend = shared.acquire(settings.store, settings)
    try:
        saver = TreadleSaver(backend)
        plain = saver.serde
        compiled: Pregel[Any, Any, Any, Any]
        if isinstance(graph, StateGraph):
            compiled = graph.compile(checkpointer=saver, store=memory_store, **compile_kwargs)
        else:
            update: dict[str, Any] = {"checkpointer": saver}
            if memory_store is not None:
                update["store"] = memory_store
            compiled = _rebuild(graph, _plain_class(type(graph)), update)
        # Subgraphs LangGraph found in node functions: their types too, before any read.
        if _allow_schema_types(compiled) and saver.serde is plain:
            saver.serde = serde_policy.serializer()
        core = GraphCore(backend, saver, settings)
        core.graph_id = graph_id
        wrapped = wrap_nodes(compiled, dict(nodes or {}), core)
        return cast(TreadleGraph, _rebuild(wrapped, _treadle_class(type(wrapped)), {"treadle_core": core}))
    except BaseException:
        shared.release(settings.store)
        raise


def _allow_schema_types(graph: Any) -> bool:
    """The types the schemas of ``graph`` and of its subgraphs name are read back as
    themselves (see treadle.store.serde_policy: the strict default allows no others).
    Whether that allowed a type not allowed before."""
    graphs = [graph]
    if isinstance(graph, Pregel):
        graphs += [sub for _, sub in graph.get_subgraphs(recurse=True)]
    elif isinstance(graph, StateGraph):
        graphs += [spec.runnable for spec in graph.nodes.values()
                   if isinstance(spec.runnable, Pregel)]
    added = False
    for g in graphs:
        builder = g if isinstance(g, StateGraph) else getattr(g, "builder", None)
        if isinstance(builder, StateGraph):
            added = serde_policy.allow_types(schema_types(builder)) or added
    return added


def _stores(store: Any, store_url: str | None, memory_store: Any) -> tuple[str | None, BaseStore | None]:
    """(treadle's store URL, LangGraph's memory store) from ``store=``/``store_url=``
    (and the older spelling ``memory_store=``)."""
    if isinstance(store, str):
        if store_url is not None:
            raise ConfigError("store= is LangGraph's memory store (a BaseStore); pass treadle's "
                              "store URL as store_url= only")
        store_url, store = store, None
    if store is not None and memory_store is not None:
        raise ConfigError("store= and memory_store= both name LangGraph's memory store; keep store=")
    memory = store if store is not None else memory_store
    if memory is not None and not isinstance(memory, BaseStore):
        raise ConfigError(f"store= takes LangGraph's memory store (a BaseStore) or treadle's store URL "
                          f"(a string), not {type(memory).__name__}")
    if store_url is not None and not isinstance(store_url, str):
        raise ConfigError("store_url= takes a store URL string (sqlite:///path or postgresql://...)")
    return store_url, memory


def _check_compile_kwargs(kwargs: Mapping[str, Any]) -> None:
    accepted = set(inspect.signature(StateGraph.compile).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(
            f"treadle.compile() got unknown keyword(s) {unknown}: it takes treadle's (store_url, "
            f"nodes, max_workers, node_timeout, durability, settings, graph_id) and "
            f"StateGraph.compile's ({', '.join(sorted(accepted - {'checkpointer'}))})"
        )


def _rebuild(graph: Pregel[Any, Any, Any, Any], cls: type[Any],
             update: Mapping[str, Any]) -> Pregel[Any, Any, Any, Any]:
    """``graph`` as an instance of ``cls`` (as ``Pregel.copy`` does, another class)."""
    attrs = {k: v for k, v in graph.__dict__.items() if k not in ("__orig_class__", "treadle_core")}
    attrs.update(update)
    return cast(Pregel[Any, Any, Any, Any], cls(**attrs))
