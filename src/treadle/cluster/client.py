"""The caller's side of a cluster run: queue it, then wait for it or stream it.

``graph.invoke(input, {"runtime": "distributed", ...})`` on a TreadleGraph lands
here. The run is written to the store with its input, config and stream options;
a ``treadle worker`` claims it and executes it with the same runtime; the caller
reads the outcome (and, when streaming, the run's events) back from the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from treadle import tracing
from treadle.cluster.codec import decode, encode
from treadle.cluster.events import END, decode_chunk
from treadle.cluster.notify import notifier_for
from treadle.cluster.pending import PendingWatch
from treadle.errors import ConfigError, RunFailedError
from treadle.graphs import by_value
from treadle.graphs.registry import REF_PREFIX
from treadle.store import Store
from treadle.store.queue import (
    CHANNEL_EVENTS,
    CHANNEL_RUN_DONE,
    CHANNEL_RUNS,
    MULTITASK_STRATEGIES,
    TERMINAL,
    NewRun,
    RunRow,
)

if TYPE_CHECKING:
    from treadle.runtime import TreadleGraph

__all__ = ["ainvoke", "astream", "cancel", "invoke", "stream", "submit", "wait"]

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
                   "placement": n.bound.options.placement}
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
    conf: dict[str, Any] = dict(cfg.get("configurable") or {})
    for key in _LIFTED:
        if key in cfg:
            conf.setdefault(key, cfg.pop(key))
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
    cfg["configurable"] = conf
    graph_id = _graph_id(graph)
    # The run's trace starts here; its context rides in the payload to every attempt.
    with tracing.span("treadle.run.enqueue", {"treadle.run_id": run_id, "treadle.thread_id": thread_id,
                                              "treadle.graph_id": graph_id}, kind="producer"):
        payload = encode({"input": input, "config": cfg, "kwargs": kwargs,
                          tracing.TRACE_KEY: tracing.carrier()})
        run = NewRun(
            run_id=run_id, thread_id=thread_id, graph_id=graph_id, payload=payload,
            max_attempts=max_attempts, timeout_s=float(timeout) if timeout else None,
            stream=stream, metadata=json.dumps(cfg.get("metadata") or {}, default=str),
        )
        row = graph.backend.enqueue_run(run, multitask=multitask)
    notifier_for(graph.backend).emit(CHANNEL_RUNS, row.run_id)
    return row


def wait(store: Store, run_id: str, timeout: float | None = None, *,
         pending: PendingWatch | None = None) -> RunRow:
    """Block until the run is terminal (or ``timeout`` s pass: TimeoutError).

    ``pending``: warn when no live worker serves the run's graph, and enforce its
    queue_timeout (QueueTimeoutError)."""
    notifier = notifier_for(store)
    poll = 1.0 if notifier.pushes else 0.02
    deadline = None if timeout is None else time.monotonic() + timeout
    ev, sub = notifier.event(CHANNEL_RUN_DONE, run_id)
    with sub:
        while True:
            row = store.get_run(run_id)
            if row is None:
                raise RunFailedError(run_id, "deleted", "the run no longer exists")
            if row.status in TERMINAL:
                return row
            if pending is not None:
                pending.check(row)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"run {run_id} is still {row.status} after {timeout:g}s")
            sleep = poll if pending is None else pending.next_wake(poll)
            ev.wait(sleep if left is None else min(sleep, left))
            ev.clear()


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
    done = await asyncio.to_thread(wait, graph.backend, row.run_id, None,
                                   pending=watch(graph, config, row))
    return outcome(done)


def stream(graph: TreadleGraph, input: Any, config: dict[str, Any] | None,
           kwargs: dict[str, Any]) -> Iterator[Any]:
    """Yield the run's stream chunks as its worker records them."""
    row = submit(graph, input, config, kwargs, stream=True)
    yield from follow(graph.backend, row.run_id, pending=watch(graph, config, row))


def follow(store: Store, run_id: str, after_seq: int = 0, *,
           pending: PendingWatch | None = None) -> Iterator[Any]:
    """The chunks of run ``run_id`` after ``after_seq``, until the run ends (``pending``:
    as for :func:`wait`)."""
    notifier = notifier_for(store)
    poll = 1.0 if notifier.pushes else 0.02
    ev, sub = notifier.event((CHANNEL_EVENTS, CHANNEL_RUN_DONE), run_id)
    with sub:
        while True:
            events = store.read_events(run_id, after_seq)
            for event in events:
                after_seq = event.seq
                if event.kind != END:
                    yield decode_chunk(event.data)
            if events:
                continue
            row = store.get_run(run_id)
            if row is None:
                raise RunFailedError(run_id, "deleted", "the run no longer exists")
            if row.status in TERMINAL:
                if store.read_events(run_id, after_seq):
                    continue  # written just before the status: read them first
                outcome(row)  # raises for a failed run
                return
            if pending is not None:
                pending.check(row)
            ev.wait(poll if pending is None else pending.next_wake(poll))
            ev.clear()


async def astream(graph: TreadleGraph, input: Any, config: dict[str, Any] | None,
                  kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    row = await asyncio.to_thread(submit, graph, input, config, kwargs, stream=True)
    it = follow(graph.backend, row.run_id, pending=watch(graph, config, row))
    done = object()
    while True:
        chunk = await asyncio.to_thread(next, it, done)
        if chunk is done:
            return
        yield chunk


def cancel(store: Store, run_id: str, action: str = "cancel") -> RunRow | None:
    return store.cancel_run(run_id, action)
