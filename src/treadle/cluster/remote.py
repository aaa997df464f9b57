"""Node tasks across workers: the orchestrator's side and the executing worker's side.

A node placed ``remote`` becomes a durable task record keyed by
``thread_id:checkpoint_ns:task_id`` (LangGraph's task id is deterministic, so an
orchestrator that resumes the run after a crash asks for the same key and finds
the result if the task already ran, or waits for it if it is running). Any worker
with free task slots claims it, runs the node body on its own pools, and stores the
output under the task's lease epoch; the orchestrator hands the output back to
LangGraph, which applies it exactly as if the node had run locally.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from treadle import logs, tracing
from treadle._langgraph import task_id
from treadle.cluster.codec import decode, encode
from treadle.cluster.notify import Notifier
from treadle.errors import RemoteNodeError, TreadleError, UsageError
from treadle.runtime.idempotency import key_from_config, reset_process_key, set_process_key
from treadle.runtime.policies import is_transient
from treadle.runtime.pools import NodeProxy
from treadle.store import Store
from treadle.store.encryption import CONTEXT_KEY, context_scope
from treadle.store.queue import CHANNEL_TASK_DONE, CHANNEL_TASKS, NewTask, TaskRow

if TYPE_CHECKING:
    from treadle.graphs.registry import GraphRegistry

__all__ = ["call_remote", "run_task", "task_key"]

log = logging.getLogger("treadle.worker")


def task_key(config: dict[str, Any]) -> str:
    conf = config.get("configurable", {})
    tid = task_id(config)
    if tid is None:
        raise UsageError("a remote node's config carries no LangGraph task id")
    return f"{conf.get('thread_id', '')}:{conf.get('checkpoint_ns', '')}:{tid}"


async def call_remote(
    store: Store, notifier: Notifier, *, run_id: str, graph_id: str, node: str, input: Any,
    config: dict[str, Any], poll: float,
) -> Any:
    """Send one node body to the cluster and return its output (or raise its error)."""
    key = task_key(config)
    conf = config.get("configurable", {})
    # The node span's context and the log context go along: the executing worker's span
    # and log lines join this run's trace and carry its run_id, attempt, node ...
    payload = encode({"input": input, "config": config, "key": key_from_config(config),
                      tracing.TRACE_KEY: tracing.carrier(), "log": logs.carried()})
    task = NewTask(task_key=key, run_id=run_id, thread_id=str(conf.get("thread_id", "")),
                   graph_id=graph_id, node=node, payload=payload)
    ev, sub = notifier.async_event(CHANNEL_TASK_DONE, key)
    with sub:
        row = await asyncio.to_thread(store.submit_task, task)
        notifier.emit(CHANNEL_TASKS, key)  # a worker of this process claims it at once
        while row.status not in ("success", "error"):
            try:
                await asyncio.wait_for(ev.wait(), poll)
            except TimeoutError:
                pass
            ev.clear()
            rows = await asyncio.to_thread(store.get_tasks, [key])
            if not rows:
                raise RemoteNodeError(f"task {key} of node {node!r} vanished from the store",
                                      transient=True)
            row = rows[0]
            if row.status == "pending" and row.run_id != run_id:
                # Re-queued under an earlier run of the thread that has ended since:
                # adopt it, or no worker would claim it.
                row = await asyncio.to_thread(store.submit_task, task)
    return _outcome(row)


def _outcome(row: TaskRow) -> Any:
    if row.status == "success":
        return decode(row.result) if row.result is not None else None
    info = decode(row.result) if row.result else {}
    transient = bool(info.get("transient", True)) if isinstance(info, dict) else True
    raise RemoteNodeError(
        f"node {row.node!r} failed on {row.worker or 'a worker'}: {row.error}", transient=transient
    )


async def run_task(store: Store, registry: GraphRegistry, row: TaskRow) -> bool:
    """Execute a claimed task on this worker; record its outcome. False when fenced."""
    try:
        graph = registry.get(row.graph_id)
        node = graph.graph.nodes.get(row.node)
        proxy = node.bound if node is not None else None
        if not isinstance(proxy, NodeProxy):
            raise RemoteNodeError(f"graph {row.graph_id} has no node {row.node!r} on this worker")
        payload = decode(row.payload)
    except (TreadleError, ValueError, TypeError) as exc:
        return await asyncio.to_thread(
            store.finish_task, row.task_key, row.epoch, "error",
            error=f"{type(exc).__name__}: {exc}", result=encode({"transient": False}),
        )
    carried = payload.get("log") if isinstance(payload.get("log"), dict) else {}
    config = payload.get("config")
    configurable = config.get("configurable") if isinstance(config, dict) else None
    encryption_ctx = configurable.get(CONTEXT_KEY) if isinstance(configurable, dict) else None  # the run's: the task's writes use it too
    with context_scope(encryption_ctx if isinstance(encryption_ctx, dict) else None), \
            logs.bound(**{**carried, "run_id": row.run_id, "thread_id": row.thread_id,
                       "graph_id": row.graph_id, "node": row.node, "task_key": row.task_key}), \
            tracing.span(f"treadle.task {row.node}", {
                "treadle.node": row.node, "treadle.node_attempt": carried.get("node_attempt"),
                "treadle.task_key": row.task_key, "treadle.task_attempt": row.attempt,
                "treadle.run_id": row.run_id, "treadle.thread_id": row.thread_id,
                "treadle.graph_id": row.graph_id, "treadle.worker": row.worker,
            }, parent=payload.get(tracing.TRACE_KEY), kind="consumer"):
        return await _execute(store, proxy, row, payload)


async def _execute(store: Store, proxy: NodeProxy, row: TaskRow, payload: dict[str, Any]) -> bool:
    token = set_process_key(payload.get("key"))
    try:
        output = await proxy._ainvoke(payload["input"], payload["config"])
        blob = encode(output)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        tracing.record_error(exc)
        log.warning("remote task %s (node %r) failed: %s: %s", row.task_key, row.node,
                    type(exc).__name__, exc)
        return await asyncio.to_thread(
            store.finish_task, row.task_key, row.epoch, "error",
            error=f"{type(exc).__name__}: {exc}",
            result=encode({"transient": is_transient(exc)}),
        )
    finally:
        reset_process_key(token)
    done = await asyncio.to_thread(store.finish_task, row.task_key, row.epoch, "success",
                                   result=blob)
    if not done:
        log.warning("task %s: result refused, its lease was taken over (epoch %d)",
                    row.task_key, row.epoch)
    return done
