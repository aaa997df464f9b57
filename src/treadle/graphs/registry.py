"""The graphs a worker serves: loaded by reference at start, or by value on demand.

A graph's id in the queue is ``ref:<name>`` or ``pickle:<sha256>``. The name is
a ``langgraph.json`` key, the ``name`` of a ``name=REF`` argument, or the REF
string itself; callers use the same name (``treadle.compile(..., graph_id=name)``,
``treadle run REF --runtime distributed``). A graph that fails to load is reported
once and its runs are left for workers that can load it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from treadle.config import Settings
from treadle.errors import ConfigError, GraphLoadError, TreadleError
from treadle.graphs import by_value
from treadle.graphs.factories import Factory, RunUser, request_user, server_runtime
from treadle.graphs.refs import factory_failed, load_factory, load_graph, made_graph
from treadle.langgraph_json import Loaded, load, read_langgraph_json
from treadle.runtime import TreadleGraph, compile
from treadle.store import Store

__all__ = ["GraphRegistry", "REF_PREFIX", "parse_graph_args", "read_langgraph_json"]

log = logging.getLogger("treadle.worker")

REF_PREFIX = "ref:"


def parse_graph_args(args: Sequence[str], config: str | None) -> Loaded:
    """``["name=path.py:attr", "mod:attr"]`` (+ a langgraph.json) -> its graphs {name: REF}
    and the rest of the langgraph.json."""
    loaded = load(config) if config else Loaded({})
    refs = loaded.refs
    for arg in args:
        name, sep, ref = arg.partition("=")
        if not sep:
            name, ref = arg, arg
        if not name or not ref:
            raise ConfigError(f"graph argument {arg!r}: expected REF or name=REF")
        refs[name] = ref
    return loaded


class GraphRegistry:
    def __init__(self, store: Store, refs: dict[str, str], *, allow_pickled: bool,
                 settings: Settings, memory_ttl: dict[str, Any] | None = None) -> None:
        self.store = store
        self.memory_ttl = memory_ttl  # langgraph.json's store.ttl, for the graphs' BaseStore
        self.refs = refs
        self.allow_pickled = allow_pickled
        self.settings = settings
        self.graphs: dict[str, TreadleGraph] = {}
        self.failed: dict[str, str] = {}
        self.factories: dict[str, Factory] = {}  # graph id -> its factory (called per use)
        self._lock = threading.Lock()

    def load_all(self) -> None:
        """Load every graph by reference; a failure is recorded, not raised."""
        for name, ref in self.refs.items():
            gid = REF_PREFIX + name
            try:
                graph = load_graph(ref, store=self._memory())
                self.graphs[gid] = self._attach(compile(graph, settings=self.settings))
                factory = load_factory(ref)
                if factory is not None and factory.per_use:
                    self.factories[gid] = factory
            except TreadleError as exc:
                self.failed[gid] = str(exc)
                log.error("graph %r (%s) cannot be loaded, its runs are left to other "
                          "workers: %s", name, ref, exc)

    def _memory(self) -> Any:
        from treadle.store.memory import TreadleStore

        return TreadleStore(self.store, ttl=self.memory_ttl)  # type: ignore[arg-type]

    def _attach(self, graph: TreadleGraph) -> TreadleGraph:
        """Give the graph LangGraph's BaseStore (long-term memory) on the same database,
        unless it was compiled with a store of its own."""
        if getattr(graph.graph, "store", None) is None:
            graph.graph.store = self._memory()
        return graph

    @asynccontextmanager
    async def open(self, graph_id: str, config: dict[str, Any] | None, access_context: str,
                   *, context: Any = None) -> AsyncIterator[TreadleGraph]:
        """The graph to use for ``access_context`` (see :mod:`treadle.graphs.factories`).

        A graph loaded at start is shared. A factory that takes a config or a runtime, or
        makes a context manager, is called again, as LangGraph Platform calls it: with
        ``config`` and a ``ServerRuntime`` (the run's ``context`` when executing); the
        graph it made is closed, and a context manager it returned exited, when the block
        ends."""
        graph = self.get(graph_id)
        factory = self.factories.get(graph_id)
        if factory is None:
            yield graph
            return
        config = dict(config or {})
        config["configurable"] = dict(config.get("configurable") or {})
        runtime = server_runtime(access_context, self._memory(), context=context,
                                 user=RunUser.of(config) or request_user.get())
        entered = False  # past the factory: what is raised now is the caller's
        try:
            async with factory.open(config, runtime) as made:
                built = await asyncio.to_thread(
                    compile, made_graph(made, factory.where), settings=self.settings)
                entered = True
                try:
                    built.graph_id = graph.graph_id
                    yield self._attach(built)
                finally:
                    await asyncio.to_thread(built.close)
        except Exception as exc:
            if entered or isinstance(exc, TreadleError):
                raise
            raise factory_failed(factory.where, exc) from exc

    @property
    def graph_ids(self) -> list[str]:
        return sorted(self.graphs)

    def get(self, graph_id: str) -> TreadleGraph:
        found = self.graphs.get(graph_id)
        if found is not None:
            return found
        if not graph_id.startswith(by_value.PICKLE_PREFIX) or not self.allow_pickled:
            raise GraphLoadError(f"this worker does not serve graph {graph_id!r}")
        with self._lock:
            found = self.graphs.get(graph_id)
            if found is None:
                blob = self.store.get_graph(graph_id)
                if blob is None:
                    raise GraphLoadError(f"graph {graph_id} is not in the store")
                builder, kwargs, nodes = by_value.load(graph_id, blob)
                found = self._attach(compile(builder, settings=self.settings, nodes=nodes, **kwargs))
                self.graphs[graph_id] = found
            return found

    def close(self) -> None:
        for graph in self.graphs.values():
            graph.close()
        self.graphs.clear()
