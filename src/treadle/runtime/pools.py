"""Worker pools for node tasks, plugged in at LangGraph's node runnable.

``treadle.compile`` replaces each node's ``bound`` runnable with a :class:`NodeProxy`.
LangGraph still plans the step, wires channels, applies reducers, handles ``Send``,
interrupts and checkpoints; the proxy only decides *where* the node body runs:

* **thread** — sync nodes; inline in LangGraph's worker thread, or on treadle's
  thread pool when the node has a timeout (a timed-out thread is abandoned).
* **async** — async nodes, as tasks on the running event loop.
* **process** — CPU-heavy nodes, on a crash-tolerant process pool (a crash or a
  timeout kills only that attempt's process; the attempt fails and is retried).

Each run gets a :class:`RunLimits`: at most ``max_workers`` node bodies run at once;
further tasks wait for a slot (backpressure). Each node also has a circuit breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.types import RetryPolicy

from treadle import logs, metrics, tracing
from treadle._langgraph import (
    is_async_node,
    node_accepts,
    node_attempt,
    node_coroutine,
    node_function,
    retries_on,
)
from treadle.config import Settings
from treadle.errors import ConfigError, NodeTimeoutError
from treadle.run_context import execution_of, limits_of
from treadle.runtime.idempotency import key_from_config, set_process_key
from treadle.runtime.node_threads import NodeThreads
from treadle.runtime.policies import CircuitBreaker, is_transient
from treadle.runtime.sandbox import Sandbox
from treadle.runtime.sandbox import submit as submit_sandboxed

__all__ = ["NodeOptions", "NodeProxy", "Pools", "RunLimits", "plain_config"]

log = logging.getLogger("treadle.runtime")

POOL_KINDS = ("auto", "thread", "async", "process")
PLACEMENTS = ("local", "remote")


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """Where and how a node runs. Set per node with ``metadata={"treadle": {...}}``
    on ``add_node`` or ``treadle.compile(..., nodes={"name": {...}})``."""

    pool: str = "auto"
    timeout: float | None = None
    # "remote": in a cluster run, the body becomes a durable task any worker may run
    # (on that worker's ``pool``); in a local run it runs here as usual.
    placement: str = "local"
    # Limits for each attempt, in a process of its own (process pool only).
    sandbox: Sandbox | None = None

    @classmethod
    def parse(cls, node: str, raw: Any, default_timeout: float | None) -> NodeOptions:
        raw = dict(raw or {})
        unknown = set(raw) - {"pool", "timeout", "placement", "sandbox"}
        if unknown:
            raise ConfigError(f"node {node!r}: unknown treadle option(s) {sorted(unknown)}")
        pool = raw.get("pool", "auto")
        if pool not in POOL_KINDS:
            raise ConfigError(f"node {node!r}: pool must be one of {POOL_KINDS}, not {pool!r}")
        timeout = raw.get("timeout", default_timeout)
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ConfigError(f"node {node!r}: timeout must be a positive number of seconds")
        placement = raw.get("placement", "local")
        if placement not in PLACEMENTS:
            raise ConfigError(
                f"node {node!r}: placement must be one of {PLACEMENTS}, not {placement!r}"
            )
        sandbox = Sandbox.parse(node, raw.get("sandbox"))
        if sandbox is not None:
            if pool == "auto":
                pool = "process"
            elif pool != "process":
                raise ConfigError(f"node {node!r}: a sandbox runs on the process pool; "
                                  f"set pool='process' (not {pool!r}) or drop the sandbox")
        return cls(pool=pool, timeout=float(timeout) if timeout is not None else None,
                   placement=placement, sandbox=sandbox)


class RunLimits:
    """Concurrency bound shared by every node task of one run (and its subgraphs)."""

    def __init__(self, max_workers: int | None, settings: Settings, *,
                 body_max_concurrency: int | None = None) -> None:
        self.max_workers = max_workers
        # What node bodies see as config["max_concurrency"] (LangGraph's executor runs
        # unbounded under treadle; a body's own batch calls keep the caller's value).
        self.body_max_concurrency = body_max_concurrency
        self.thread_slots = threading.BoundedSemaphore(max_workers or settings.thread_workers)
        self._async_limit = max_workers or settings.async_workers
        # One semaphore per event loop (an asyncio.Semaphore belongs to one loop), dropped
        # with its loop.
        self._async_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def async_slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            sem = self._async_slots.get(loop)
            if sem is None:
                sem = self._async_slots[loop] = asyncio.Semaphore(self._async_limit)
            return sem


class Pools:
    """Executors shared by the runs of one compiled graph; created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._threads: NodeThreads | None = None
        self._processes: Any = None
        self._lock = threading.Lock()

    def threads(self) -> NodeThreads:
        with self._lock:
            if self._threads is None:
                self._threads = NodeThreads(
                    max_workers=max(self.settings.thread_workers, self.settings.max_workers or 0),
                    thread_name_prefix="treadle-node",
                )
            return self._threads

    def processes(self) -> Any:
        from treadle.runtime.process_pool import ProcessPool

        with self._lock:
            if self._processes is None:
                size = self.settings.process_workers or os.cpu_count() or 1
                self._processes = ProcessPool(size)
            return self._processes

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, None
            processes, self._processes = self._processes, None
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
        if processes is not None:
            processes.shutdown()


def _run_in_process(func: Any, state: Any, key: str | None, kwargs: dict[str, Any]) -> Any:
    set_process_key(key)
    return func(state, **kwargs)


if TYPE_CHECKING:
    _RunnableBase = Runnable[Any, Any]
else:
    # Unsubscripted at runtime, so Runnable.InputType/OutputType (read from the
    # class's generic bases) stay what they were.
    _RunnableBase = Runnable


class NodeProxy(_RunnableBase):
    """Stands in for a node's ``bound`` runnable and runs it on the right pool."""

    def __init__(
        self,
        name: str,
        bound: Runnable[Any, Any],
        options: NodeOptions,
        pools: Pools,
        breaker: CircuitBreaker,
        retry_policy: Sequence[RetryPolicy],
    ) -> None:
        self.name = name
        self.bound = bound
        self.options = options
        self.pools = pools
        self.breaker = breaker
        self.retry_policy = retry_policy
        # A sync node (LangGraph gives it an async shim too) runs on treadle's thread pool,
        # where a body abandoned by a cancelled run is counted and replaced.
        self.is_async = is_async_node(bound)
        self.pool = options.pool
        if self.pool == "auto":
            self.pool = "async" if self.is_async else "thread"
        if self.pool == "process":
            self._check_process_node()
        if options.placement == "remote":
            self._check_plain_node("placement='remote'", "run it locally")

    def _check_process_node(self) -> None:
        if node_function(self.bound) is None:
            raise ConfigError(
                f"node {self.name!r} cannot run on the process pool: only plain sync "
                "functions can (it is async or not a function)"
            )
        self._check_plain_node("process-pool", "use the thread pool")

    def _check_plain_node(self, what: str, instead: str) -> None:
        if node_function(self.bound) is None and node_coroutine(self.bound) is None:
            raise ConfigError(f"node {self.name!r} cannot use {what}: it is not a function")
        extra = node_accepts(self.bound) - {"config"}
        if extra:
            raise ConfigError(
                f"node {self.name!r} takes {sorted(extra)}; {what} nodes receive only "
                f"the state (and a plain config): drop those parameters or {instead}"
            )

    # --- Runnable API ----------------------------------------------------------
    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return self.bound.get_name(suffix, name=name)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = config or {}
        self._count_retry(config)
        with self._observed(config):
            return self._invoke(input, config, **kwargs)

    def _invoke(self, input: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        limits = limits_of(config)
        config = _body_config(config, limits)
        self.breaker.before_call()
        slots = limits.thread_slots if limits else None
        if slots:
            slots.acquire()
        release = slots.release if slots else None
        started = time.perf_counter()
        try:
            if self.pool == "process":
                result = self._submit_process(input, config).result()
            elif self.options.timeout is None:
                result = self.bound.invoke(input, config, **kwargs)
            else:
                ctx = contextvars.copy_context()
                fut = self.pools.threads().submit(
                    ctx.run, functools.partial(self.bound.invoke, input, config, **kwargs)
                )
                if release:
                    # The slot is freed when the body really ends, even if abandoned.
                    free = release
                    fut.add_done_callback(lambda _f: free())
                    release = None
                result = self._wait(fut)
        except GraphBubbleUp:  # an interrupt: the node neither failed nor finished
            self.breaker.on_neither()
            raise
        except Exception as exc:
            self._failed(exc, config, started)
            raise
        except BaseException:
            self.breaker.on_neither()
            raise
        finally:
            if release:
                release()
        self.breaker.on_success()
        metrics.node_attempt(self.name, "success", time.perf_counter() - started)
        return result

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = config or {}
        self._count_retry(config)
        with self._observed(config):
            return await self._run_or_dispatch(input, config, **kwargs)

    async def _run_or_dispatch(self, input: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        execution = execution_of(config)
        if execution is None:
            return await self._ainvoke(input, config, **kwargs)
        await execution.enter()  # parked here while the worker drains
        try:
            if self.options.placement == "remote":
                # A remote body is one of the run's bodies: it holds one of its slots.
                limits = limits_of(config)
                if limits is None:
                    return await execution.dispatch(str(self.name), input, plain_config(config))
                async with limits.async_slots():
                    return await execution.dispatch(str(self.name), input, plain_config(config))
            return await self._ainvoke(input, config, **kwargs)
        finally:
            execution.leave()

    async def _ainvoke(self, input: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        limits = limits_of(config)
        config = _body_config(config, limits)
        self.breaker.before_call()
        timeout = self.options.timeout
        started = time.perf_counter()
        try:
            if limits is not None:
                await limits.async_slots().acquire()
                started = time.perf_counter()  # the attempt starts once it has a slot
            try:
                if self.pool == "process":
                    result = await asyncio.wrap_future(self._submit_process(input, config))
                elif self.is_async:
                    coro = self.bound.ainvoke(input, config, **kwargs)
                    result = await (coro if timeout is None else asyncio.wait_for(coro, timeout))
                else:
                    ctx = contextvars.copy_context()
                    threads = self.pools.threads()
                    body = threads.submit(
                        ctx.run, functools.partial(self.bound.invoke, input, config, **kwargs)
                    )
                    fut = asyncio.wrap_future(body)
                    try:
                        result = await (fut if timeout is None else asyncio.wait_for(fut, timeout))
                    except BaseException:
                        # Cancelled or timed out: the run goes on (or ends) without the body.
                        threads.abandon(body, self.name)
                        raise
            finally:
                if limits is not None:
                    limits.async_slots().release()
        except GraphBubbleUp:  # an interrupt: the node neither failed nor finished
            self.breaker.on_neither()
            raise
        except TimeoutError as exc:
            err = self._timeout_error()
            self._failed(err, config, started)
            raise err from exc
        except Exception as exc:
            self._failed(exc, config, started)
            raise
        except BaseException:  # cancelled
            self.breaker.on_neither()
            raise
        self.breaker.on_success()
        metrics.node_attempt(self.name, "success", time.perf_counter() - started)
        return result

    # --- helpers -----------------------------------------------------------------
    @contextlib.contextmanager
    def _observed(self, config: RunnableConfig) -> Iterator[None]:
        """One node attempt: its log context (node, node_attempt) and its span
        ``treadle.node <name>``. The body's thread gets both: LangGraph and the pools
        run it in a copy of this context."""
        attempt = node_attempt(config)
        with logs.bound(node=self.name, node_attempt=attempt):
            if not tracing.enabled():
                yield
                return
            conf = config.get("configurable", {})
            execution = execution_of(config)
            attributes = {
                "treadle.node": self.name, "treadle.node_attempt": attempt,
                "treadle.step": (config.get("metadata") or {}).get("langgraph_step"),
                "treadle.thread_id": conf.get("thread_id"),
                "treadle.checkpoint_ns": conf.get("checkpoint_ns") or None,
                "treadle.pool": self.pool, "treadle.placement": self.options.placement,
                "treadle.run_id": execution.run_id if execution else None,
                "treadle.graph_id": execution.graph_id if execution else None,
            }
            with tracing.span(f"treadle.node {self.name}", attributes,
                              not_errors=(GraphBubbleUp,)):
                yield

    def _count_retry(self, config: RunnableConfig) -> None:
        # Counted where LangGraph retries (for a remote node: on the orchestrator).
        if node_attempt(config) > 1:
            metrics.node_retried(self.name)

    def _submit_process(self, input: Any, config: RunnableConfig) -> Future[Any]:
        kwargs: dict[str, Any] = {}
        if "config" in node_accepts(self.bound):
            kwargs["config"] = plain_config(config)
        func, key, pool = node_function(self.bound), key_from_config(config), self.pools.processes()
        if self.options.sandbox is not None:
            assert func is not None  # a process node is a plain function (see __init__)
            return submit_sandboxed(pool, str(self.name), self.options.sandbox,
                                    self.pools.settings.sandbox_network, self.options.timeout,
                                    func, input, key, kwargs)
        future: Future[Any] = pool.submit(_run_in_process, func, input, key, kwargs,
                                          timeout=self.options.timeout)
        return future

    def _wait(self, fut: Future[Any]) -> Any:
        try:
            return fut.result(timeout=self.options.timeout)
        except FuturesTimeout as exc:
            self.pools.threads().abandon(fut, self.name)
            raise self._timeout_error() from exc

    def _timeout_error(self) -> NodeTimeoutError:
        how = "its thread was abandoned" if self.pool == "thread" else "it was cancelled"
        return NodeTimeoutError(
            f"node {self.name!r} exceeded its timeout of {self.options.timeout:g}s; {how}"
        )

    def _failed(self, exc: BaseException, config: RunnableConfig, started: float) -> None:
        metrics.node_attempt(self.name, "error", time.perf_counter() - started)
        self.breaker.on_failure()
        policy = next((p for p in self.retry_policy if retries_on(p, exc)), None)
        attempt = node_attempt(config)
        error = f"{type(exc).__name__}: {exc}"
        if policy is not None and attempt < policy.max_attempts:
            log.warning(
                "node %r attempt %d/%d failed (%s); retrying it from the last checkpoint",
                self.name, attempt, policy.max_attempts, error,
            )
            return
        ran = f" after {attempt} attempts" if attempt > 1 else ""
        if policy is not None:
            log.warning("node %r failed%s (%s); giving up", self.name, ran or " after 1 attempt",
                        error)
        elif any(p.retry_on is is_transient for p in self.retry_policy):
            log.warning("node %r failed%s (%s); not retried (not transient: see "
                        "docs/guarantees.md#retries)", self.name, ran, error)
        else:
            log.warning("node %r failed%s (%s); not retried (its RetryPolicy's retry_on "
                        "does not match it)", self.name, ran, error)


def plain_config(config: RunnableConfig) -> dict[str, Any]:
    """What a node running away from LangGraph's loop (a process, another worker)
    receives as its config: the scalar configurable values, LangGraph's task id
    included (so its idempotency key is the same); treadle's run context stays here."""
    conf = config.get("configurable", {})
    return {
        "configurable": {
            k: v for k, v in conf.items()
            if isinstance(v, (str, int, float, bool))
        }
    }


def _body_config(config: RunnableConfig, limits: RunLimits | None) -> RunnableConfig:
    """The config a node body receives: LangGraph's, with the caller's max_concurrency."""
    if limits is None or "max_concurrency" not in config:
        return config
    body = dict(config)
    if limits.body_max_concurrency is None:
        del body["max_concurrency"]
    else:
        body["max_concurrency"] = limits.body_max_concurrency
    return body  # type: ignore[return-value]
