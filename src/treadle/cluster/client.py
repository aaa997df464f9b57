"""The caller's side of a cluster run: queue it, then wait for it or stream it.

``graph.invoke(input, {"runtime": "distributed", ...})`` on a TreadleGraph lands
here. The run is written to the store with its input, config and stream options;
a ``treadle worker`` claims it and executes it with the same runtime; the caller
reads the outcome (and, when streaming, the run's events) back from the store.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from treadle.cluster import watch as runs
from treadle.cluster.codec import decode
from treadle.cluster.events import decode_chunk
from treadle.cluster.pending import PendingWatch
from treadle.cluster.spec import RunSpec
from treadle.cluster.submit import submit as submit_run
from treadle.config import merge_config
from treadle.errors import ConfigError, RunFailedError, WaitTimeoutError
from treadle.graphs import by_value
from treadle.graphs.registry import REF_PREFIX
from treadle.store import Store
from treadle.store.queue import MULTITASK_STRATEGIES, TERMINAL, RunRow

if TYPE_CHECKING:
    from treadle.runtime import TreadleGraph

__all__ = ["afollow", "ainvoke", "astream", "cancel", "follow", "invoke", "outcome", "stream", "submit",
           "wait"]

# Keys of a run config that steer the cluster run rather than LangGraph.
log = logging.getLogger("treadle.client")

_RUN_OPTIONS = ("runtime", "multitask_strategy", "max_attempts", "run_timeout", "queue_timeout")
_LIFTED = ("thread_id", "checkpoint_id", "checkpoint_ns")


def _graph_id(graph: TreadleGraph) -> str:
    if graph.graph_id is not None:
        return REF_PREFIX + graph.graph_id
    if graph.treadle_core.shipped is None:
        compiled = graph
        kwargs = {
            "interrupt_before": list(getattr(compiled, "interrupt_before_nodes", []) or []),
            "interrupt_after": list(getattr(compiled, "interrupt_after_nodes", []) or []),
            "name": compiled.get_name(),
        }
        nodes = {
            name: {"pool": n.bound.options.pool, "timeout": n.bound.options.timeout,
                   "placement": n.bound.options.placement,
                   # only when set: the ids of graphs without a sandbox stay as they were
                   **({"sandbox": n.bound.options.sandbox}
                      if n.bound.options.sandbox is not None else {})}
            for name, n in compiled.nodes.items() if hasattr(n.bound, "options")
        }
        gid, blob = by_value.pack(getattr(compiled, "builder", None), kwargs, nodes)
        graph.backend.put_graph(gid, blob)
        graph.treadle_core.shipped = gid
    return graph.treadle_core.shipped


def _queue_timeout(graph: TreadleGraph, config: dict[str, Any] | None) -> float | None:
    """The run's ``queue_timeout`` (run config, top level or ``configurable``; else
    ``TREADLE_QUEUE_TIMEOUT``): seconds it may stay unclaimed before it is cancelled."""
    cfg = dict(config or {})
    value = cfg.get("queue_timeout", (cfg.get("configurable") or {}).get("queue_timeout"))
    if value is None:
        return graph.settings.queue_timeout
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError("queue_timeout must be a positive number of seconds")
    return float(value)


def watch(graph: TreadleGraph, config: dict[str, Any] | None, row: RunRow) -> PendingWatch:
    """What the caller of a queued run watches while it waits (see treadle.cluster.pending)."""
    return PendingWatch(graph.backend, graph.settings.store, row.run_id, row.graph_id,
                        warn_after=graph.settings.unserved_warning,
                        queue_timeout=_queue_timeout(graph, config),
                        graph_args=graph.worker_args)


_warned_max_attempts = False


def _warn_max_attempts() -> None:
    # Said once per process, not silently ignored: runs are not retried as a whole.
    global _warned_max_attempts
    _warned_max_attempts = True
    log.warning("max_attempts is recorded but bounds nothing: a failed node is retried by its retry "
                "policy, a lost worker counts against TREADLE_MAX_WORKER_LOSSES and a hand-back "
                "against TREADLE_RUN_MAX_HANDBACKS (docs/cluster.md)")


def submit(graph: TreadleGraph, input: Any, config: dict[str, Any] | None,
           kwargs: dict[str, Any], *, stream: bool = False) -> RunRow:
    """Queue a run of ``graph``; return its record (status ``pending``)."""
    cfg: dict[str, Any] = dict(config or {})
    lifted = {key: cfg.pop(key) for key in _LIFTED if key in cfg}
    cfg = merge_config(cfg)
    conf: dict[str, Any] = cfg["configurable"]
    for key, value in lifted.items():
        conf.setdefault(key, value)
    options = {k: cfg.pop(k) for k in _RUN_OPTIONS if k in cfg}
    options.update({k: conf.pop(k) for k in _RUN_OPTIONS if k in conf})
    if "checkpoint_store" in cfg or "checkpoint_store" in conf:
        raise ConfigError("checkpoint_store does not apply to distributed runs: they use the "
                          "graph's store, which the workers share")
    multitask = options.get("multitask_strategy", "enqueue")
    if multitask not in MULTITASK_STRATEGIES:
        raise ConfigError(f"multitask_strategy must be one of {MULTITASK_STRATEGIES}")
    max_attempts = int(options.get("max_attempts", 3))
    if max_attempts < 1:
        raise ConfigError("max_attempts must be at least 1")
    if "max_attempts" in options and not _warned_max_attempts:
        _warn_max_attempts()
    timeout = options.get("run_timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError("run_timeout must be a positive number of seconds")
    _queue_timeout(graph, options)  # checked before anything is queued
    thread_id = str(conf.pop("thread_id", None) or uuid.uuid4())
    run_id = str(cfg.pop("run_id", None) or uuid.uuid4())
    row, _spec = submit_run(
        graph.backend, RunSpec(input=input, config=cfg, kwargs=kwargs), run_id=run_id,
        thread_id=thread_id, graph_id=_graph_id(graph), stream=stream,
        max_attempts=max_attempts, timeout_s=float(timeout) if timeout else None,
        metadata=cfg.get("metadata") or {}, multitask=multitask)
    return row


def _checked(run_id: str, row: RunRow | None, timeout: float | None) -> RunRow:
    if row is None:
        raise RunFailedError(run_id, "deleted", "the run no longer exists")
    if row.status not in TERMINAL:
        raise WaitTimeoutError(f"run {run_id} is still {row.status} after {timeout:g}s")
    return row


def wait(store: Store, run_id: str, timeout: float | None = None, *,
         pending: PendingWatch | None = None) -> RunRow:
    """Block until the run is terminal (or ``timeout`` s pass: TimeoutError).

    ``pending``: warn when no live worker serves the run's graph, and enforce its
    queue_timeout (QueueTimeoutError)."""
    return _checked(run_id, runs.run_sync(runs.wait(
        store, run_id, timeout, poll=runs.POLL_CALLER, pending=pending)), timeout)


def outcome(row: RunRow) -> Any:
    """The run's output, or RunFailedError for error / timeout / cancelled."""
    if row.status in ("success", "interrupted") and row.result is not None:
        return decode(row.result)
    if row.status in ("success", "interrupted"):
        return None
    raise RunFailedError(row.run_id, row.status, row.error)


def invoke(graph: TreadleGraph, input: Any, config: dict[str, Any] | None,
           kwargs: dict[str, Any]) -> Any:
    row = submit(graph, input, config, kwargs)
    return outcome(wait(graph.backend, row.run_id, pending=watch(graph, config, row)))


async def ainvoke(graph: TreadleGraph, input: Any, config: dict[str, Any] | None,
                  kwargs: dict[str, Any]) -> Any:
    row = await asyncio.to_thread(submit, graph, input, config, kwargs)
    done = await runs.wait(graph.backend, row.run_id, poll=runs.POLL_CALLER,
                           pending=watch(graph, config, row))
    return outcome(_checked(row.run_id, done, None))


def stream(graph: TreadleGraph, input: Any, config: dict[str, Any] | None,
           kwargs: dict[str, Any]) -> Iterator[Any]:
    """Yield the run's stream chunks as its worker records them."""
    row = submit(graph, input, config, kwargs, stream=True)
    yield from follow(graph.backend, row.run_id, pending=watch(graph, config, row))


async def afollow(store: Store, run_id: str, after_seq: int = 0, *,
                  pending: PendingWatch | None = None) -> AsyncIterator[Any]:
    """The chunks of run ``run_id`` after ``after_seq``, until the run ends (``pending``:
    as for :func:`wait`); RunFailedError when it fails or is deleted."""
    async for item in runs.watch(store, run_id, after_seq, poll=runs.POLL_CALLER,
                                 pending=pending):
        if isinstance(item, RunRow):
            outcome(item)  # raises for a failed run
            return
        yield decode_chunk(item.data)
    raise RunFailedError(run_id, "deleted", "the run no longer exists")


def follow(store: Store, run_id: str, after_seq: int = 0, *,
           pending: PendingWatch | None = None) -> Iterator[Any]:
    """:func:`afollow`, for a sync caller."""
    yield from runs.iterate(afollow(store, run_id, after_seq, pending=pending))


async def astream(graph: TreadleGraph, input: Any, config: dict[str, Any] | None,
                  kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    row = await asyncio.to_thread(submit, graph, input, config, kwargs, stream=True)
    async for chunk in afollow(graph.backend, row.run_id, pending=watch(graph, config, row)):
        yield chunk


def cancel(store: Store, run_id: str, action: str = "cancel") -> RunRow | None:
    return store.cancel_run(run_id, action)
