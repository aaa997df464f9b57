"""The graph ``treadle.compile`` returns (:mod:`~treadle.runtime.compiler`): a LangGraph
graph, made durable, recoverable and parallel.

:class:`TreadleGraph` has the compiled graph's API and semantics; it
adds what the run config can ask of treadle (``thread_id`` at top level,
``max_workers``, ``checkpoint_store``, ``runtime``) and, for every execution on a
thread, a fencing token so two executions can never interleave their writes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, TypeAlias, cast, overload

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, merge_configs
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from treadle._langgraph import checkpointer_of, has_checkpointer, in_task, set_checkpointer
from treadle.config import Settings, merge_config
from treadle.errors import ConfigError, FencedWriteError
from treadle.run_context import RunContext, run_context, with_run_context
from treadle.runtime.core import GraphCore
from treadle.runtime.distributed import Distributed, distributed
from treadle.runtime.execution import Execution
from treadle.runtime.pools import Pools, RunLimits
from treadle.store import Store, shared
from treadle.store.checkpointer import TreadleSaver
from treadle.store.checkpoints import ClaimThread
from treadle.store.urls import redact

__all__ = ["TreadleGraph", "TreadleStateGraph"]

# Keys treadle accepts at the top level of a run config (LangGraph keeps them in configurable).
_LIFTED = ("thread_id", "checkpoint_id", "checkpoint_ns")
_TREADLE_KEYS = ("max_workers", "checkpoint_store", "runtime", "multitask_strategy", "max_attempts",
                 "run_timeout")
_RUNTIMES = ("local", "distributed")
# A run config as treadle takes it: LangGraph's, or with treadle's keys at the top level.
_Config: TypeAlias = RunnableConfig | Mapping[str, Any]
# LangGraph's sync executor size for treadle runs: in effect unbounded (see TreadleGraph._limits).
_UNBOUNDED = 1 << 30


class TreadleGraph(Pregel[Any, Any, Any, Any]):
    """A compiled LangGraph graph running on treadle: a real ``Pregel`` (and, compiled
    from a ``StateGraph``, a ``CompiledStateGraph``), durable by default.

    Runs add what the run config can ask of treadle (``thread_id`` at top level,
    ``max_workers``, ``checkpoint_store``, ``runtime``) and, for every execution on a
    thread, a fencing token so two executions can never interleave their writes. As a
    node of another graph it is a LangGraph subgraph: it checkpoints with its parent.
    """

    _plain: type[Pregel[Any, Any, Any, Any]] = Pregel

    def __init__(self, *, treadle_core: GraphCore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.treadle_core = treadle_core

    # --- what treadle adds ---------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.treadle_core.settings

    @property
    def backend(self) -> Store:
        """treadle's store (checkpoints, runs, queue) — not LangGraph's memory ``store``."""
        return self.treadle_core.backend

    @property
    def pools(self) -> Pools:
        return self.treadle_core.pools

    @property
    def graph(self) -> TreadleGraph:
        """The graph itself (older treadle versions wrapped a compiled graph here)."""
        return self

    @property
    def graph_id(self) -> str | None:
        return self.treadle_core.graph_id

    @graph_id.setter
    def graph_id(self, value: str | None) -> None:
        self.treadle_core.graph_id = value

    @property
    def worker_args(self) -> str | None:
        return self.treadle_core.worker_args

    @worker_args.setter
    def worker_args(self, value: str | None) -> None:
        self.treadle_core.worker_args = value

    # --- config --------------------------------------------------------------------
    def _saver_for(self, url: str) -> TreadleSaver:
        core = self.treadle_core
        if url == core.settings.store:
            return core.saver
        with core.lock:
            if url not in core.extra_stores:
                backend = shared.acquire(url, core.settings)
                core.extra_stores[url] = (backend, TreadleSaver(backend))
            return core.extra_stores[url][1]

    def _merged(self, config: _Config | None) -> RunnableConfig:
        """The call's config as LangGraph will see it: this graph's own (``with_config``)
        and the caller's context (a parent graph's task) merged under it."""
        return ensure_config(merge_configs(self.config, _runnable(config)))

    def _config(
        self,
        config: _Config | None,
        *,
        run: bool,
        is_async: bool = False,
        claim: bool | None = None,
    ) -> RunnableConfig | None:
        """Normalise a run config; ``None`` when LangGraph's own handling applies: a call
        treadle prepared already, or one made as a subgraph of another graph (which
        checkpoints it with the parent's saver, or not at all). ``run``: an execution
        (fresh thread if none, limits); ``claim`` (default: ``run``): it writes, so it
        claims the thread on its store."""
        merged = self._merged(config)
        if run_context(merged).prepared or in_task(merged) or has_checkpointer(merged):
            return None
        cfg: dict[str, Any] = dict(config or {})
        conf: dict[str, Any] = dict(cfg.get("configurable") or {})
        execution = run_context(cfg).execution
        own = dict(self.config.get("configurable") or {}) if self.config else {}
        for key in _LIFTED:
            if key in cfg:
                conf.setdefault(key, cfg.pop(key))
        options = {k: v for k, v in ((self.config or {}).items()) if k in _TREADLE_KEYS}
        options.update({k: own[k] for k in _TREADLE_KEYS if k in own})
        options.update({k: cfg.pop(k) for k in _TREADLE_KEYS if k in cfg})
        options.update({k: conf.pop(k) for k in _TREADLE_KEYS if k in conf})
        runtime = options.get("runtime", "local")
        if runtime not in _RUNTIMES:
            raise ConfigError(f"runtime must be one of {_RUNTIMES}, not {runtime!r}")
        saver = self.treadle_core.saver
        if options.get("checkpoint_store"):
            store_url = options["checkpoint_store"]
            if not isinstance(store_url, str):
                raise ConfigError("checkpoint_store must be a store URL string")
            if execution is not None:  # said before a write is refused as stale
                raise ConfigError("checkpoint_store does not apply to a queued run: it runs on "
                                  "its worker's store; remove checkpoint_store from its config")
            saver = self._saver_for(store_url)
            set_checkpointer(conf, saver)
        thread_id = conf.get("thread_id", own.get("thread_id"))
        ctx = RunContext(execution=execution, prepared=True)
        if run:
            if thread_id is None:
                thread_id = conf["thread_id"] = str(uuid.uuid4())
                ctx = ctx.replace(new_thread=True)
            ctx = ctx.replace(limits=self._limits(cfg, options.get("max_workers"), is_async))
        elif thread_id is None:
            raise ConfigError("this call needs a thread: pass thread_id (top level or configurable)")
        if run if claim is None else claim:
            # On the store this call writes to (checkpoint_store may name another).
            token, fut = self._claim(saver, str(thread_id), execution)
            ctx = ctx.replace(token=token, claim=fut)
        with_run_context(conf, ctx)
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
        own = (self.config or {}).get("max_concurrency")  # with_config(max_concurrency=...)
        given = cfg.pop("max_concurrency", own)
        for key, value in (("max_workers", max_workers), ("max_concurrency", given)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{key} must be a positive integer, not {value!r}")
        if max_workers is None:
            max_workers = given
        if not is_async or own is not None:
            # A thread per submission; they park on the run's slots (sync has no "unbounded"),
            # and this graph's own value must not reach LangGraph's executor either.
            cfg["max_concurrency"] = _UNBOUNDED
        settings = self.settings
        return RunLimits(max_workers or settings.max_workers, settings, body_max_concurrency=given)

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
        fut = run_context(config).claim
        if fut is not None and fut.done() and fut.exception() is not None:
            return cast(BaseException, fut.exception())
        return exc

    def _kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("durability") is None:
            kwargs["durability"] = self.settings.durability
        return kwargs

    def _distributed(self, config: _Config | None) -> bool:
        merged = self._merged(config)
        if run_context(merged).prepared or in_task(merged):
            return False  # inside a run already: a subgraph runs where its parent runs
        return _distributed({**(self.config or {}), **(config or {})})

    def _cluster_config(self, config: _Config | None) -> dict[str, Any]:
        return merge_config(cast(dict[str, Any], self.config), cast(dict[str, Any], config))

    # --- the compiled-graph API, made durable ------------------------------------------------
    # Pregel's invoke/ainvoke/batch/astream_events/stream_events all run through
    # stream/astream, so preparing the config there covers every way in.
    def invoke(self, input: Any, config: _Config | None = None, **kwargs: Any) -> Any:
        if self._distributed(config):
            return _cluster().invoke(self, input, self._cluster_config(config), kwargs)
        return super().invoke(input, _runnable(config), **kwargs)

    async def ainvoke(self, input: Any, config: _Config | None = None, **kwargs: Any) -> Any:
        if self._distributed(config):
            return await _cluster().ainvoke(self, input, self._cluster_config(config), kwargs)
        return await super().ainvoke(input, _runnable(config), **kwargs)

    def stream(self, input: Any, config: _Config | None = None,  # type: ignore[override]
               **kwargs: Any) -> Iterator[Any]:
        if self._distributed(config):
            yield from _cluster().stream(self, input, self._cluster_config(config), kwargs)
            return
        cfg = self._config(config, run=True)
        if cfg is None:
            yield from super().stream(input, _runnable(config), **kwargs)
            return
        try:
            yield from super().stream(input, cfg, **self._kwargs(kwargs))
        except FencedWriteError as exc:
            raise self._explain(exc, cfg) from exc
        if run_context(cfg).new_thread:
            _say_stopped(super().get_state(_thread_only(cfg)), cfg)

    async def astream(self, input: Any, config: _Config | None = None,  # type: ignore[override]
                      **kwargs: Any) -> AsyncIterator[Any]:
        if self._distributed(config):
            async for chunk in _cluster().astream(self, input, self._cluster_config(config), kwargs):
                yield chunk
            return
        cfg = self._config(config, run=True, is_async=True)
        if cfg is None:
            async for chunk in super().astream(input, _runnable(config), **kwargs):
                yield chunk
            return
        try:
            async for chunk in super().astream(input, cfg, **self._kwargs(kwargs)):
                yield chunk
        except FencedWriteError as exc:
            raise self._explain(exc, cfg) from exc
        if run_context(cfg).new_thread:
            _say_stopped(await super().aget_state(_thread_only(cfg)), cfg)

    def get_state(self, config: _Config, *, subgraphs: bool = False) -> StateSnapshot:
        return super().get_state(self._config(config, run=False) or _runnable(config), subgraphs=subgraphs)

    async def aget_state(self, config: _Config, *, subgraphs: bool = False) -> StateSnapshot:
        cfg = self._config(config, run=False) or _runnable(config)
        return await super().aget_state(cfg, subgraphs=subgraphs)

    def get_state_history(self, config: _Config, **kwargs: Any) -> Iterator[StateSnapshot]:
        return super().get_state_history(self._config(config, run=False) or _runnable(config), **kwargs)

    def aget_state_history(self, config: _Config,  # type: ignore[override]
                           **kwargs: Any) -> AsyncIterator[StateSnapshot]:
        return super().aget_state_history(self._config(config, run=False) or _runnable(config), **kwargs)

    # update_state/aupdate_state run through these two (and are here for the wider config type).
    def update_state(self, config: _Config, values: Any, as_node: str | None = None,
                     task_id: str | None = None) -> RunnableConfig:
        return super().update_state(_runnable(config), values, as_node, task_id)

    async def aupdate_state(self, config: _Config, values: Any, as_node: str | None = None,
                            task_id: str | None = None) -> RunnableConfig:
        return await super().aupdate_state(_runnable(config), values, as_node, task_id)

    def bulk_update_state(self, config: _Config, supersteps: Any) -> RunnableConfig:
        cfg = self._config(config, run=False, claim=True) or _runnable(config)
        return super().bulk_update_state(cfg, supersteps)

    async def abulk_update_state(self, config: _Config, supersteps: Any) -> RunnableConfig:
        cfg = self._config(config, run=False, claim=True) or _runnable(config)
        return await super().abulk_update_state(cfg, supersteps)

    # --- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Release pools and stores, for this graph and its copies. It cannot run afterwards.

        Graphs that are garbage-collected without ``close()`` release them too.
        """
        self.treadle_core.finalizer()

    def __enter__(self) -> TreadleGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_name()!r}, store={redact(self.settings.store)!r})"


class TreadleStateGraph(TreadleGraph, CompiledStateGraph[Any, Any, Any, Any]):
    """What ``treadle.compile`` returns for a ``StateGraph``: a ``CompiledStateGraph``."""

    _plain = CompiledStateGraph


_CLASSES: dict[type[Any], type[Any]] = {Pregel: TreadleGraph, CompiledStateGraph: TreadleStateGraph}


@overload
def _runnable(config: _Config) -> RunnableConfig: ...
@overload
def _runnable(config: _Config | None) -> RunnableConfig | None: ...
def _runnable(config: _Config | None) -> RunnableConfig | None:
    """``config`` typed as LangGraph's (treadle's top-level keys are moved by ``_config``)."""
    return cast(RunnableConfig | None, config)


def _thread_only(cfg: RunnableConfig) -> RunnableConfig:
    conf: dict[str, Any] = {k: v for k, v in cfg["configurable"].items() if k == "thread_id"}
    if has_checkpointer(cfg):
        set_checkpointer(conf, checkpointer_of(cfg))
    return {"configurable": conf}


def _say_stopped(snapshot: StateSnapshot, cfg: RunnableConfig) -> None:
    """A run on a thread treadle made up (no thread_id given) stopped before its end: the
    caller needs that thread to resume it, so say it (a warning of ``treadle.runtime``)."""
    if not (snapshot.interrupts or snapshot.next):
        return
    thread = {"configurable": {"thread_id": cfg["configurable"]["thread_id"]}}
    how = "Command(resume=...)" if snapshot.interrupts else "None"
    logging.getLogger("treadle.runtime").warning(
        "run stopped %s on thread %r, which treadle created (no thread_id was given): "
        "continue it with graph.invoke(%s, %r)",
        "at an interrupt" if snapshot.interrupts else "before " + ", ".join(snapshot.next),
        thread["configurable"]["thread_id"], how, thread)


def _plain_class(cls: type[Any]) -> type[Any]:
    """The LangGraph class under a treadle graph class (``cls`` itself if none)."""
    return cast(type[Any], cls._plain) if issubclass(cls, TreadleGraph) else cls


def _treadle_class(cls: type[Any]) -> type[Any]:
    """The treadle twin of a compiled-graph class (made once for a Pregel subclass)."""
    plain = _plain_class(cls)
    made = _CLASSES.get(plain)
    if made is None:
        made = _CLASSES[plain] = type(f"Treadle{plain.__name__}", (TreadleGraph, plain),
                                      {"_plain": plain, "__module__": __name__})
    return made


def _distributed(config: _Config | None) -> bool:
    """True when the call asks for a cluster run (``runtime="distributed"``, top level
    or in ``configurable``); an unknown runtime is a ConfigError."""
    if not config:
        return False
    runtime = config.get("runtime") or (config.get("configurable") or {}).get("runtime") or "local"
    if runtime not in _RUNTIMES:
        raise ConfigError(f"runtime must be one of {_RUNTIMES}, not {runtime!r}")
    return bool(runtime == "distributed")


def _cluster() -> Distributed:
    # runtime="distributed" hands the whole call over to what the cluster registered
    # (treadle.runtime.distributed): the runtime never imports the cluster.
    return distributed()
