"""Prometheus metrics: what ``/metrics`` shows on the API and on a worker's endpoint.

Metrics live in prometheus-client's default registry, beside its process and Python
collectors, so one scrape of a process shows both. Each process counts what happened
in it: a run's counters go up on the worker that executed the attempt, a node's on the
process that ran its body (for a ``remote`` node, the worker that claimed the task).
docs/api.md#metrics describes every series; in short:

* runs: ``treadle_runs_total`` and ``treadle_run_duration_seconds`` {graph, status},
  ``treadle_run_retries_total`` {graph};
* nodes: ``treadle_node_duration_seconds`` {graph, node, status},
  ``treadle_node_retries_total`` {graph, node};
* workers: ``treadle_worker_slots`` {kind, state}, ``treadle_lease_losses_total`` {kind};
* store: ``treadle_checkpoint_write_seconds`` (one group commit);
* API: ``treadle_stream_subscribers``, ``treadle_threads_swept_total`` {strategy} (the
  thread TTL sweep), and the queue read from the store at scrape time
  (cached about a second, so a storm of scrapes costs one query):
  ``treadle_queue_depth``, ``treadle_queue_oldest_pending_age_seconds``,
  ``treadle_queue_runs`` {status}. Workers do not export the queue: every replica would
  report the same number.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "ABANDONED_THREADS",
    "CHECKPOINT_WRITE_SECONDS",
    "CONTENT_TYPE",
    "LEASE_LOSSES",
    "NODE_DURATION",
    "NODE_RETRIES",
    "RUNS",
    "RUN_DURATION",
    "RUN_OUTCOMES",
    "RUN_RETRIES",
    "RUN_WAITERS",
    "RUN_WAITER_PROBES",
    "RUN_WAITER_WAKES",
    "STREAM_SUBSCRIBERS",
    "THREADS_SWEPT",
    "QueueCollector",
    "graph_label",
    "node_attempt",
    "node_retried",
    "render",
    "run_claimed",
    "run_ended",
    "set_graph",
    "track_worker",
    "unwatch_queue",
    "watch_queue",
]

log = logging.getLogger("treadle.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: ``status`` of ``treadle_runs_total``: a final status the worker recorded, or
#: ``handed_over`` (given back to the queue on shutdown, resumed elsewhere) or ``lost``
#: (stopped without recording anything: lease lost, writes fenced, a second SIGTERM, the
#: store failing as the outcome was written; the run resumes elsewhere).
RUN_OUTCOMES = ("success", "error", "timeout", "interrupted", "cancelled", "handed_over", "lost")

_RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_NODE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

RUNS = Counter("treadle_runs_total", "Run attempts that ended on this worker, by outcome.",
               ["graph", "status"])
RUN_DURATION = Histogram("treadle_run_duration_seconds",
                         "One run attempt on this worker, from its claim to its end.",
                         ["graph", "status"], buckets=_RUN_BUCKETS)
RUN_RETRIES = Counter("treadle_run_retries_total",
                      "Runs claimed by this worker at attempt > 1 (a previous attempt failed).",
                      ["graph"])
NODE_DURATION = Histogram("treadle_node_duration_seconds",
                          "One attempt of a node body run in this process.",
                          ["graph", "node", "status"], buckets=_NODE_BUCKETS)
NODE_RETRIES = Counter("treadle_node_retries_total",
                       "Node attempts that were retries of a failed attempt.", ["graph", "node"])
LEASE_LOSSES = Counter("treadle_lease_losses_total",
                       "Leases this worker found lost (it stopped the run or task).", ["kind"])
CHECKPOINT_WRITE_SECONDS = Histogram(
    "treadle_checkpoint_write_seconds",
    "One commit of a batch of store writes (checkpoints, task writes, thread claims).",
    buckets=_COMMIT_BUCKETS)
STREAM_SUBSCRIBERS = Gauge("treadle_stream_subscribers",
                           "SSE streams and WebSockets open on this API process.")
RUN_WAITERS = Gauge("treadle_run_waiters",
                    "Readers of runs (wait, join, streams, callers) waiting in this process.")
RUN_WAITER_WAKES = Counter(
    "treadle_run_waiter_wakes_total",
    "Waiters of runs woken, by cause: a notification naming the run, or a shared probe.",
    ["cause"])
RUN_WAITER_PROBES = Counter(
    "treadle_run_waiter_probes_total",
    "Shared reads of every waited run (a change detected, or the safety net).")
ABANDONED_THREADS = Gauge(
    "treadle_abandoned_threads",
    "Node-pool threads still running a body whose run was cancelled or timed out "
    "(the worker recycles itself at TREADLE_MAX_ABANDONED_THREADS).")
THREADS_SWEPT = Counter("treadle_threads_swept_total",
                        "Expired threads this API process's TTL sweep deleted or pruned "
                        "(checkpointer.ttl), by strategy.", ["strategy"])
for _kind in ("run", "task"):
    LEASE_LOSSES.labels(_kind)
for _strategy in ("delete", "keep_latest"):
    THREADS_SWEPT.labels(_strategy)

# The graph the current run or task belongs to, for the node metrics (node proxies do
# not know their graph's name; asyncio tasks and LangGraph's executors copy it along).
_GRAPH: contextvars.ContextVar[str] = contextvars.ContextVar("treadle_graph", default="")


def graph_label(graph_id: str | None) -> str:
    """The ``graph`` label of a queue graph id: ``ref:chain`` -> ``chain``; a graph
    shipped by value keeps a short prefix of its hash (``pickle:0123456789ab``)."""
    if not graph_id:
        return ""
    kind, _, rest = graph_id.partition(":")
    if kind == "ref":
        return rest
    if kind == "pickle":
        return f"pickle:{rest[:12]}"
    return graph_id


def set_graph(graph_id: str | None) -> None:
    """Label the node metrics recorded from now on in this context with ``graph_id``.
    Call it first thing in the asyncio task of a run or a node task (each task runs in
    a copy of the context, so the label ends with it)."""
    _GRAPH.set(graph_label(graph_id))


def run_claimed(graph_id: str | None, attempt: int) -> None:
    if attempt > 1:
        RUN_RETRIES.labels(graph_label(graph_id)).inc()


def run_ended(graph_id: str | None, status: str, seconds: float) -> None:
    graph = graph_label(graph_id)
    RUNS.labels(graph, status).inc()
    RUN_DURATION.labels(graph, status).observe(seconds)


def node_attempt(node: str | None, status: str, seconds: float) -> None:
    NODE_DURATION.labels(_GRAPH.get(), node or "", status).observe(seconds)


def node_retried(node: str | None) -> None:
    NODE_RETRIES.labels(_GRAPH.get(), node or "").inc()


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of this process, and its content type. Reads the
    queue (at most once a second): call it off the event loop."""
    return generate_latest(REGISTRY), CONTENT_TYPE


# --- read at scrape time -------------------------------------------------------------------
class _QueueSource(Protocol):
    def queue_stats(self) -> Any: ...


class QueueCollector(Collector):
    """The queue gauges, read from the watched store, at most once per ``max_age`` s.

    Nothing is exported while no store is watched, or when the read fails (an absent
    series, rather than a made-up zero, is what alerts on a broken exporter expect)."""

    def __init__(self, max_age: float = 1.0) -> None:
        self.max_age = max_age
        self._store: _QueueSource | None = None
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._stats: Any = None

    def watch(self, store: _QueueSource | None) -> None:
        with self._lock:
            self._store, self._stats, self._read_at = store, None, float("-inf")

    def unwatch(self, store: _QueueSource) -> None:
        with self._lock:
            if self._store is store:
                self._store, self._stats = None, None

    def _read(self) -> Any:
        with self._lock:  # concurrent scrapes wait for one read
            store = self._store
            if store is None:
                return None
            now = time.monotonic()
            if now - self._read_at >= self.max_age:
                self._read_at = now
                try:
                    self._stats = store.queue_stats()
                except Exception as exc:  # noqa: BLE001 - a scrape must not fail for it
                    log.warning("reading the queue for /metrics failed (%s)", exc)
                    self._stats = None
            return self._stats

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        stats = self._read()
        return self._families(stats) if stats is not None else []

    @staticmethod
    def _families(stats: Any) -> list[Metric]:
        depth = GaugeMetricFamily("treadle_queue_depth",
                                  "Runs waiting for a worker (status pending).")
        age = GaugeMetricFamily("treadle_queue_oldest_pending_age_seconds",
                                "Seconds the oldest pending run has waited (0: none pending).")
        runs = GaugeMetricFamily("treadle_queue_runs", "Runs in the queue by status.",
                                 labels=["status"])
        if stats is not None:
            depth.add_metric([], stats.pending)
            age.add_metric([], stats.oldest_pending_age or 0.0)
            runs.add_metric(["pending"], stats.pending)
            runs.add_metric(["running"], stats.running)
        return [depth, age, runs]


class _Slots(Protocol):
    concurrency: int
    task_slots: int
    runs: Any
    tasks: Any


class _WorkerCollector(Collector):
    """``treadle_worker_slots``: read from the running workers of this process."""

    def __init__(self) -> None:
        self.workers: list[_Slots] = []

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        workers = list(self.workers)
        if not workers:
            return []
        family = self._family()
        runs = sum(len(w.runs) for w in workers)
        tasks = sum(len(w.tasks) for w in workers)
        run_slots = sum(w.concurrency for w in workers)
        task_slots = sum(max(w.task_slots, 0) for w in workers)
        family.add_metric(["run", "busy"], runs)
        family.add_metric(["run", "idle"], max(run_slots - runs, 0))
        family.add_metric(["task", "busy"], tasks)
        family.add_metric(["task", "idle"], max(task_slots - tasks, 0))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("treadle_worker_slots",
                                 "Run and task slots of the workers in this process.",
                                 labels=["kind", "state"])


_QUEUE = QueueCollector()
_WORKERS = _WorkerCollector()
REGISTRY.register(_QUEUE)
REGISTRY.register(_WORKERS)


def watch_queue(store: _QueueSource) -> None:
    """Export the queue gauges of ``store`` (the API, from its start to its end)."""
    _QUEUE.watch(store)


def unwatch_queue(store: _QueueSource) -> None:
    _QUEUE.unwatch(store)


@contextlib.contextmanager
def track_worker(worker: _Slots) -> Iterator[None]:
    """Export ``worker``'s slots while inside (its run loop)."""
    _WORKERS.workers.append(worker)
    try:
        yield
    finally:
        _WORKERS.workers.remove(worker)
