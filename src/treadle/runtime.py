"""``treadle.compile``: a LangGraph graph, made durable, recoverable and parallel.

The returned :class:`TreadleGraph` has the compiled graph's API and semantics; it
adds what the run config can ask of treadle (``thread_id`` at top level,
``max_workers``, ``checkpoint_store``, ``runtime``) and, for every execution on a
thread, a fencing token so two executions can never interleave their writes.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import StateGraph
from langgraph.pregel import Pregel

from treadle.checkpointer import EPOCH_KEY, TreadleSaver
from treadle.config import Settings, get_settings
from treadle.errors import ConfigError, FencedWriteError
from treadle.execution import EXECUTION_KEY, Execution
from treadle.policies import CircuitBreaker, default_retry_policy
from treadle.pools import LIMITS_KEY, NodeOptions, NodeProxy, Pools, RunLimits
from treadle.store import Store, shared
from treadle.store.base import ClaimThread
from treadle.store.urls import redact

__all__ = ["TreadleGraph", "compile"]

_CHECKPOINTER_KEY = "__pregel_checkpointer"
# Keys treadle accepts at the top level of a run config (LangGraph keeps them in configurable).
_LIFTED = ("thread_id", "checkpoint_id", "checkpoint_ns")
_TREADLE_KEYS = ("max_workers", "checkpoint_store", "runtime", "multitask_strategy", "max_attempts",
                 "run_timeout")
_RUNTIMES = ("local", "distributed")
# configurable key carrying this execution's claim future (a failed claim explains
# why its writes were refused).
_CLAIM_KEY = "__treadle_claim"
# LangGraph's sync executor size for treadle runs: in effect unbounded (see TreadleGraph._limits).
_UNBOUNDED = 1 << 30


def compile(
    graph: StateGraph[Any, Any, Any, Any] | Pregel[Any, Any, Any, Any],
    *,
    store: str | None = None,
    nodes: Mapping[str, Mapping[str, Any]] | None = None,
    max_workers: int | None = None,
    node_timeout: float | None = None,
    durability: str | None = None,
    settings: Settings | None = None,
    graph_id: str | None = None,
    **compile_kwargs: Any,
) -> TreadleGraph:
    """Compile ``graph`` (a ``StateGraph`` builder or a compiled graph) onto treadle.

    ``store`` is a URL (``sqlite:///path`` or ``postgresql://...``); default
    ``TREADLE_STORE`` or ``./.treadle/treadle.db``. ``nodes`` maps node names to
    options (``{"pool": "process", "timeout": 30}``); node metadata
    ``{"treadle": {...}}`` does the same. Other keyword arguments go to LangGraph's
    ``StateGraph.compile`` (``interrupt_before``, ``store`` for long-term memory is
    ``memory_store=``, ``name``, ...).

    ``graph_id`` names the graph for ``runtime="distributed"`` runs: workers that load
    it under that name (a ``langgraph.json`` key or ``treadle worker name=REF``) run
    them. Without it, such runs ship the graph by value (see docs/architecture.md).
    """
    settings = settings or get_settings(
        store=store, max_workers=max_workers, node_timeout=node_timeout, durability=durability
    )
    if settings.trace_exporter != "none":  # TREADLE_TRACE_EXPORTER in a Python program
        from treadle.tracing import configure_tracing

        configure_tracing(settings, "treadle")
    memory_store = compile_kwargs.pop("memory_store", None)
    if "checkpointer" in compile_kwargs:
        raise ConfigError("treadle supplies the checkpointer; pass store='<url>' instead")
    if not isinstance(graph, (StateGraph, Pregel, TreadleGraph)):
        raise ConfigError(
            f"treadle.compile() needs a LangGraph StateGraph or compiled graph, not {type(graph).__name__}"
        )
    if not isinstance(graph, StateGraph) and compile_kwargs:
        raise ConfigError(
            f"{sorted(compile_kwargs)} only apply to a StateGraph builder; "
            "pass the builder instead of a compiled graph"
        )
    backend = shared.acquire(settings.store)
    try:
        saver = TreadleSaver(backend)
        compiled: Pregel[Any, Any, Any, Any]
        if isinstance(graph, StateGraph):
            compiled = graph.compile(checkpointer=saver, store=memory_store, **compile_kwargs)
        else:
            if isinstance(graph, TreadleGraph):
                graph = graph.graph  # its node proxies are re-wrapped, not nested
            update: dict[str, Any] = {"checkpointer": saver}
            if memory_store is not None:
                update["store"] = memory_store
            compiled = graph.copy(update)
        tg = TreadleGraph(compiled, backend, saver, settings, dict(nodes or {}))
        tg.graph_id = graph_id
        return tg
    except BaseException:
        shared.release(settings.store)
        raise


class TreadleGraph:
    """A compiled LangGraph graph running on treadle. Same API, durable by default."""

    def __init__(
        self,
        compiled: Pregel[Any, Any, Any, Any],
        backend: Store,
        saver: TreadleSaver,
        settings: Settings,
        node_options: dict[str, Mapping[str, Any]],
    ) -> None:
        self.settings = settings
        self.store = backend
        self.checkpointer = saver
        self.pools = Pools(settings)
        self.retry_policy = (default_retry_policy(settings),)
        self._extra_stores: dict[str, tuple[Store, TreadleSaver]] = {}
        self.graph_id: str | None = None  # its name for workers (runtime="distributed")
        self._shipped: str | None = None  # its id once shipped to workers by value
        # The graph arguments of a `treadle worker` serving it, when known (`name=REF`,
        # `--graphs langgraph.json`): the hint given when no live worker serves it.
        self.worker_args: str | None = None
        self._lock = threading.Lock()
        unknown = set(node_options) - set(compiled.nodes)
        if unknown:
            raise ConfigError(f"nodes={sorted(unknown)} are not nodes of this graph")
        self.graph = self._wrap(compiled, node_options)
        # Runs when close() is called or when the graph is garbage-collected.
        self._finalizer = weakref.finalize(
            self, _release, self.pools, settings.store, self._extra_stores
        )

    # --- node wiring ---------------------------------------------------------------
    def _wrap(
        self, graph: Pregel[Any, Any, Any, Any], node_options: Mapping[str, Mapping[str, Any]]
    ) -> Pregel[Any, Any, Any, Any]:
        """A copy of ``graph`` whose nodes run through treadle's pools.

        Idempotent: a node that already holds a :class:`NodeProxy` (a graph compiled
        by treadle before) is re-wrapped from its original runnable, never twice.
        """
        new_nodes = {}
        for name, node in graph.nodes.items():
            bound = node.bound
            inherited: dict[str, Any] = {}
            if isinstance(bound, NodeProxy):
                inherited = {"pool": bound.options.pool, "timeout": bound.options.timeout,
                             "placement": bound.options.placement}
                bound = bound.bound
            if isinstance(bound, Pregel):
                # A compiled subgraph added as a node: wrap a copy, leave the user's alone.
                sub = self._wrap(bound, {})
                new_nodes[name] = node.copy({"bound": sub, "subgraphs": [sub]})
                continue
            if node.subgraphs or name.startswith("__"):
                # A subgraph called from inside a function can only be wrapped in place.
                for inner in node.subgraphs or ():
                    if isinstance(inner, Pregel):
                        wrapped = self._wrap(inner, {})
                        inner.nodes = wrapped.nodes
                        inner.retry_policy = wrapped.retry_policy
                new_nodes[name] = node.copy({"bound": bound}) if bound is not node.bound else node
                continue
            meta = (node.metadata or {}).get("treadle")
            options = NodeOptions.parse(
                name, {**inherited, **(meta or {}), **node_options.get(name, {})},
                self.settings.node_timeout,
            )
            breaker = CircuitBreaker(name, self.settings.breaker_threshold,
                                     self.settings.breaker_cooldown)
            proxy = NodeProxy(name, bound, options, self.pools, breaker,
                              # LangGraph's rule: the node's own policy, else the graph's.
                              list(node.retry_policy or self.retry_policy))
            new_nodes[name] = node.copy({"bound": proxy})
        return graph.copy({"nodes": new_nodes, "retry_policy": self.retry_policy})

    # --- config --------------------------------------------------------------------
    def _saver_for(self, url: str) -> TreadleSaver:
        if url == self.settings.store:
            return self.checkpointer
        with self._lock:
            if url not in self._extra_stores:
                backend = shared.acquire(url)
                self._extra_stores[url] = (backend, TreadleSaver(backend))
            return self._extra_stores[url][1]

    def _config(
        self,
        config: RunnableConfig | None,
        *,
        run: bool,
        is_async: bool = False,
        claim: bool | None = None,
    ) -> RunnableConfig:
        """Normalise a run config. ``run``: an execution (fresh thread if none, limits);
        ``claim`` (default: ``run``): it writes, so it claims the thread on its store."""
        cfg: dict[str, Any] = dict(config or {})
        conf: dict[str, Any] = dict(cfg.get("configurable") or {})
        for key in _LIFTED:
            if key in cfg:
                conf.setdefault(key, cfg.pop(key))
        options = {k: cfg.pop(k) for k in _TREADLE_KEYS if k in cfg}
        options.update({k: conf.pop(k) for k in _TREADLE_KEYS if k in conf})
        runtime = options.get("runtime", "local")
        if runtime not in _RUNTIMES:
            raise ConfigError(f"runtime must be one of {_RUNTIMES}, not {runtime!r}")
        saver = self.checkpointer
        if options.get("checkpoint_store"):
            store_url = options["checkpoint_store"]
            if not isinstance(store_url, str):
                raise ConfigError("checkpoint_store must be a store URL string")
            if conf.get(EXECUTION_KEY) is not None:  # said before a write is refused as stale
                raise ConfigError("checkpoint_store does not apply to a queued run: it runs on "
                                  "its worker's store; remove checkpoint_store from its config")
            saver = self._saver_for(store_url)
            conf[_CHECKPOINTER_KEY] = saver
        if run:
            if "thread_id" not in conf:
                conf["thread_id"] = str(uuid.uuid4())
            conf[LIMITS_KEY] = self._limits(cfg, options.get("max_workers"), is_async)
        elif "thread_id" not in conf:
            raise ConfigError("this call needs a thread: pass thread_id (top level or configurable)")
        if run if claim is None else claim:
            # On the store this call writes to (checkpoint_store may name another).
            conf[EPOCH_KEY], conf[_CLAIM_KEY] = self._claim(
                saver, str(conf["thread_id"]), conf.get(EXECUTION_KEY)
            )
        cfg["configurable"] = conf
        return cfg  # type: ignore[return-value]

    def _limits(self, cfg: dict[str, Any], max_workers: Any, is_async: bool) -> RunLimits:
        """The run's concurrency bound, and LangGraph's executor unbounded beneath it.

        LangGraph runs a step's tasks *and* the checkpointer's ``put_writes`` calls on
        one FIFO executor (a thread pool of ``max_concurrency``, or an asyncio
        semaphore of that size). Bounded, a finished task's writes queue behind the
        step's tasks that have not started, and stay uncommitted until they start: a
        crash then re-runs finished tasks. So treadle leaves that executor unbounded
        (every submission starts at once) and bounds only node bodies, with the run's
        slots (:class:`RunLimits`). ``max_concurrency`` given by the caller means what it
        means in LangGraph, the most node calls at once: it becomes ``max_workers``, and
        node bodies see it again in their config (for their own ``batch`` calls).
        """
        given = cfg.pop("max_concurrency", None)
        for key, value in (("max_workers", max_workers), ("max_concurrency", given)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{key} must be a positive integer, not {value!r}")
        if max_workers is None:
            max_workers = given
        if not is_async:
            # A thread per submission; they park on the run's slots (sync has no "unbounded").
            cfg["max_concurrency"] = _UNBOUNDED
        return RunLimits(max_workers or self.settings.max_workers, self.settings, body_max_concurrency=given)

    @staticmethod
    def _claim(
        saver: TreadleSaver, thread_id: str, execution: Execution | None = None
    ) -> tuple[str, Any]:
        """Become the only writer of ``thread_id``; queued ahead of our first write.
        Returns the claim token and the claim's future. A cluster run's claim holds
        only while its lease's epoch is current."""
        if execution is not None and execution.claimed:
            return execution.token, None
        if execution is not None:
            op = ClaimThread(thread_id, token=execution.token, run_id=execution.run_id,
                             run_epoch=execution.epoch)
            return execution.token, saver.store.submit(op)
        token = uuid.uuid4().hex
        return token, saver.store.claim_thread_async(thread_id, token)

    @staticmethod
    def _explain(exc: FencedWriteError, config: RunnableConfig) -> BaseException:
        """A write refused because our own claim never committed: report why it failed."""
        fut = config.get("configurable", {}).get(_CLAIM_KEY)
        if fut is not None and fut.done() and fut.exception() is not None:
            return cast(BaseException, fut.exception())
        return exc

    def _kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.setdefault("durability", self.settings.durability)
        return kwargs

    # --- the compiled-graph API -----------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if _distributed(config):
            return _cluster().invoke(self, input, cast(dict[str, Any], config), kwargs)
        cfg = self._config(config, run=True)
        try:
            return self.graph.invoke(input, cfg, **self._kwargs(kwargs))
        except FencedWriteError as exc:
            raise self._explain(exc, cfg) from exc

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if _distributed(config):
            return await _cluster().ainvoke(self, input, cast(dict[str, Any], config), kwargs)
        cfg = self._config(config, run=True, is_async=True)
        try:
            return await self.graph.ainvoke(input, cfg, **self._kwargs(kwargs))
        except FencedWriteError as exc:
            raise self._explain(exc, cfg) from exc

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        if _distributed(config):
            yield from _cluster().stream(self, input, cast(dict[str, Any], config), kwargs)
            return
        cfg = self._config(config, run=True)
        try:
            yield from self.graph.stream(input, cfg, **self._kwargs(kwargs))
        except FencedWriteError as exc:
            raise self._explain(exc, cfg) from exc

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        if _distributed(config):
            async for chunk in _cluster().astream(self, input, cast(dict[str, Any], config), kwargs):
                yield chunk
            return
        cfg = self._config(config, run=True, is_async=True)
        try:
            async for chunk in self.graph.astream(input, cfg, **self._kwargs(kwargs)):
                yield chunk
        except FencedWriteError as exc:
            raise self._explain(exc, cfg) from exc

    def astream_events(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        cfg = self._config(config, run=True, is_async=True)
        return self.graph.astream_events(input, cfg, **self._kwargs(kwargs))

    def get_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> Any:
        return self.graph.get_state(self._config(config, run=False), subgraphs=subgraphs)

    async def aget_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> Any:
        return await self.graph.aget_state(self._config(config, run=False), subgraphs=subgraphs)

    def get_state_history(self, config: RunnableConfig, **kwargs: Any) -> Iterator[Any]:
        return self.graph.get_state_history(self._config(config, run=False), **kwargs)

    def aget_state_history(self, config: RunnableConfig, **kwargs: Any) -> AsyncIterator[Any]:
        return self.graph.aget_state_history(self._config(config, run=False), **kwargs)

    def update_state(self, config: RunnableConfig, values: Any, as_node: str | None = None,
                     **kwargs: Any) -> RunnableConfig:
        cfg = self._config(config, run=False, claim=True)
        return self.graph.update_state(cfg, values, as_node=as_node, **kwargs)

    async def aupdate_state(self, config: RunnableConfig, values: Any, as_node: str | None = None,
                            **kwargs: Any) -> RunnableConfig:
        cfg = self._config(config, run=False, claim=True)
        return await self.graph.aupdate_state(cfg, values, as_node=as_node, **kwargs)

    def get_graph(self, config: RunnableConfig | None = None, *, xray: int | bool = False) -> Any:
        return self.graph.get_graph(config, xray=xray)

    @property
    def nodes(self) -> Any:
        return self.graph.nodes

    @property
    def builder(self) -> Any:
        return getattr(self.graph, "builder", None)

    def __getattr__(self, name: str) -> Any:
        # Everything else (schemas, get_subgraphs, with_config, ...) is the compiled graph's.
        if name == "graph":
            raise AttributeError(name)
        return getattr(self.graph, name)

    # --- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Release pools and stores. The graph cannot run afterwards.

        Graphs that are garbage-collected without ``close()`` release them too.
        """
        self._finalizer()

    def __enter__(self) -> TreadleGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TreadleGraph({self.graph.get_name()!r}, store={redact(self.settings.store)!r})"


def _distributed(config: RunnableConfig | Mapping[str, Any] | None) -> bool:
    """True when the call asks for a cluster run (``runtime="distributed"``, top level
    or in ``configurable``); an unknown runtime is a ConfigError."""
    if not config:
        return False
    runtime = config.get("runtime") or (config.get("configurable") or {}).get("runtime") or "local"
    if runtime not in _RUNTIMES:
        raise ConfigError(f"runtime must be one of {_RUNTIMES}, not {runtime!r}")
    return bool(runtime == "distributed")


def _cluster() -> Any:
    # The one call from the runtime up into the cluster layer: runtime="distributed"
    # hands the whole call over, lazily, so local runs never import the cluster.
    from treadle.cluster import client

    return client


def _release(pools: Pools, url: str, extra: dict[str, tuple[Store, TreadleSaver]]) -> None:
    pools.close()
    for extra_url in list(extra):
        shared.release(extra_url)
    extra.clear()
    shared.release(url)
