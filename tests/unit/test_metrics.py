"""Prometheus metrics (treadle.metrics) and the API's probes, in-process on SQLite.

The end-to-end twin (tests/e2e/test_server_metrics.py) scrapes real servers and workers; these
pin the pieces: labels, the node seam (sync, async, retries, graph label carried into
LangGraph's threads), the queue collector's cache and failure mode, the worker slots,
and /healthz, /readyz, /metrics on the app.
"""

from __future__ import annotations

import asyncio
import contextvars
import operator
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import treadle
from treadle import metrics
from treadle.config import Settings
from treadle.store import open_store
from treadle.store.queue import NewRun

METRIC_NAMES = (
    "treadle_runs", "treadle_run_duration_seconds", "treadle_run_retries",
    "treadle_node_duration_seconds", "treadle_node_retries", "treadle_worker_slots",
    "treadle_lease_losses", "treadle_checkpoint_write_seconds", "treadle_stream_subscribers",
    "treadle_queue_depth", "treadle_queue_oldest_pending_age_seconds", "treadle_queue_runs",
    "treadle_threads_swept",
)


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = dict(store=f"sqlite:///{tmp_path}/m.db", retry_initial_interval=0.01,
                                retry_jitter=False, retry_max_attempts=3)
    base.update(kw)
    return Settings(**base)


def new_run(run_id: str, thread_id: str) -> NewRun:
    return NewRun(run_id=run_id, thread_id=thread_id, graph_id="ref:g", payload=b"")


# --- labels --------------------------------------------------------------------------------
@pytest.mark.parametrize(("graph_id", "label"), [
    ("ref:chain", "chain"), ("pickle:" + "ab" * 32, "pickle:" + "ab" * 6), ("", ""),
    (None, ""), ("other", "other"),
])
def test_graph_label(graph_id: str | None, label: str) -> None:
    assert metrics.graph_label(graph_id) == label


def test_run_outcomes_are_counted_and_timed() -> None:
    before = sample("treadle_runs_total", graph="g-unit", status="handed_over")
    count = sample("treadle_run_duration_seconds_count", graph="g-unit", status="handed_over")
    metrics.run_ended("ref:g-unit", "handed_over", 0.25)
    assert sample("treadle_runs_total", graph="g-unit", status="handed_over") == before + 1
    assert sample("treadle_run_duration_seconds_count", graph="g-unit",
                  status="handed_over") == count + 1
    retries = sample("treadle_run_retries_total", graph="g-unit")
    metrics.run_claimed("ref:g-unit", 1)
    assert sample("treadle_run_retries_total", graph="g-unit") == retries
    metrics.run_claimed("ref:g-unit", 2)
    assert sample("treadle_run_retries_total", graph="g-unit") == retries + 1


# --- the node seam ---------------------------------------------------------------------------
class S(TypedDict):
    out: Annotated[list[str], operator.add]


def _flaky_graph(fails: dict[str, int], *, is_async: bool) -> StateGraph[Any]:
    """first -> flaky (raises ConnectionError, a transient error, ``fails`` times) -> END."""

    def first(state: S) -> dict[str, list[str]]:
        return {"out": ["first"]}

    def flaky_body() -> dict[str, list[str]]:
        if fails["left"] > 0:
            fails["left"] -= 1
            raise ConnectionError("flaky")
        return {"out": ["flaky"]}

    async def flaky_async(state: S) -> dict[str, list[str]]:
        return flaky_body()

    def flaky_sync(state: S) -> dict[str, list[str]]:
        return flaky_body()

    b = StateGraph(S)
    b.add_node("first", first)
    b.add_node("flaky", flaky_async if is_async else flaky_sync)  # type: ignore[arg-type]
    b.add_edge(START, "first")
    b.add_edge("first", "flaky")
    b.add_edge("flaky", END)
    return b


@pytest.mark.parametrize("is_async", [False, True])
def test_node_attempts_errors_and_retries_carry_the_graph_label(tmp_path: Path,
                                                                 is_async: bool) -> None:
    graph = f"g-{uuid.uuid4().hex[:8]}"  # labels of this test only

    def values() -> dict[str, float]:
        return {
            "first": sample("treadle_node_duration_seconds_count", graph=graph, node="first",
                            status="success"),
            "ok": sample("treadle_node_duration_seconds_count", graph=graph, node="flaky",
                         status="success"),
            "error": sample("treadle_node_duration_seconds_count", graph=graph, node="flaky",
                            status="error"),
            "retries": sample("treadle_node_retries_total", graph=graph, node="flaky"),
            "first_retries": sample("treadle_node_retries_total", graph=graph, node="first"),
        }

    assert set(values().values()) == {0.0}
    fails = {"left": 1}
    with treadle.compile(_flaky_graph(fails, is_async=is_async),
                         settings=settings(tmp_path)) as g:

        def run() -> Any:
            metrics.set_graph(f"ref:{graph}")  # as a worker does, in the run's own context
            if is_async:
                return asyncio.run(g.ainvoke({"out": []}))
            return g.invoke({"out": []})

        out = contextvars.copy_context().run(run)
    assert out["out"] == ["first", "flaky"]
    assert values() == {"first": 1, "ok": 1, "error": 1, "retries": 1, "first_retries": 0}
    # Outside that context the label is "" again (a local run).
    assert metrics._GRAPH.get() == ""


def test_checkpoint_commits_are_timed(tmp_path: Path) -> None:
    before = sample("treadle_checkpoint_write_seconds_count")
    with treadle.compile(_flaky_graph({"left": 0}, is_async=False),
                         settings=settings(tmp_path)) as g:
        g.invoke({"out": []})
    # At least the claim and one checkpoint per step were committed.
    assert sample("treadle_checkpoint_write_seconds_count") >= before + 3
    assert sample("treadle_checkpoint_write_seconds_sum") > 0


# --- read at scrape time -----------------------------------------------------------------
def test_queue_collector_reads_the_store_and_caches_it(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/q.db")
    collector = metrics.QueueCollector(max_age=3600)
    try:
        assert list(collector.collect()) == []  # no store watched: nothing, not zeros
        collector.watch(store)
        for i in range(3):
            store.enqueue_run(new_run(f"r{i}", f"t{i}"))
        assert store.claim_run("w", ["ref:g"], False, 60) is not None

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            return {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for family in collector.collect() for s in family.samples}

        first = scrape()
        assert first[("treadle_queue_depth", ())] == 2
        assert first[("treadle_queue_runs", (("status", "pending"),))] == 2
        assert first[("treadle_queue_runs", (("status", "running"),))] == 1
        assert first[("treadle_queue_oldest_pending_age_seconds", ())] >= 0
        store.enqueue_run(new_run("r9", "t9"))
        assert scrape() == first  # cached: a storm of scrapes is one query
        collector.max_age = 0
        assert scrape()[("treadle_queue_depth", ())] == 3
        assert store.claim_run("w", ["ref:g"], False, 60) is not None
        assert store.claim_run("w", ["ref:g"], False, 60) is not None
        assert store.claim_run("w", ["ref:g"], False, 60) is not None
        drained = scrape()
        assert drained[("treadle_queue_depth", ())] == 0
        assert drained[("treadle_queue_oldest_pending_age_seconds", ())] == 0
        # A store that fails: the scrape still works, without the queue's series.
        store.close()
        assert scrape() == {}
        collector.unwatch(store)
        assert list(collector.collect()) == []
    finally:
        store.close()


def test_worker_slots_follow_the_workers_of_the_process(tmp_path: Path) -> None:
    from treadle.cluster.worker import Worker

    w = Worker(settings(tmp_path, worker_concurrency=3, worker_task_slots=2), {})
    assert REGISTRY.get_sample_value("treadle_worker_slots", {"kind": "run", "state": "idle"}) \
        is None
    with metrics.track_worker(w):
        w.runs["r1"] = object()  # type: ignore[assignment]
        w.tasks["k1"] = object()  # type: ignore[assignment]
        w.tasks["k2"] = object()  # type: ignore[assignment]
        assert sample("treadle_worker_slots", kind="run", state="busy") == 1
        assert sample("treadle_worker_slots", kind="run", state="idle") == 2
        assert sample("treadle_worker_slots", kind="task", state="busy") == 2
        assert sample("treadle_worker_slots", kind="task", state="idle") == 0
    assert REGISTRY.get_sample_value("treadle_worker_slots", {"kind": "run", "state": "idle"}) \
        is None


def test_render_is_prometheus_text_with_process_collectors() -> None:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"process_cpu_seconds", "python_info", "treadle_lease_losses",
            "treadle_checkpoint_write_seconds", "treadle_stream_subscribers"} <= names
    # Both kinds of lease loss are exported from the start (a rate() over a series that
    # appears only at its first increment misses that increment).
    losses = {s.labels["kind"] for f in text_string_to_metric_families(body.decode())
              if f.name == "treadle_lease_losses" for s in f.samples
              if s.name == "treadle_lease_losses_total"}
    assert losses == {"run", "task"}


# --- the API's endpoints ------------------------------------------------------------------
def test_api_probes_and_metrics(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from treadle.server.app import create_app

    app = create_app(settings(tmp_path), {})
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"ok": True}
        assert client.get("/readyz").json() == {"ok": True}
        app.state.ctx.store.enqueue_run(new_run("queued", "t"))
        metrics._QUEUE.max_age = 0  # no cache: this test reads what it just wrote
        try:
            text = client.get("/metrics")
        finally:
            metrics._QUEUE.max_age = 1.0
        assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
        values = {(s.name, tuple(s.labels.items())): s.value
                  for f in text_string_to_metric_families(text.text) for s in f.samples}
        assert values[("treadle_queue_depth", ())] == 1
        assert values[("treadle_queue_runs", (("status", "running"),))] == 0
        paths = set(client.get("/openapi.json").json()["paths"])
        assert "/ok" in paths and not paths & {"/healthz", "/readyz", "/metrics"}

        app.state.ctx.extra["draining"] = True
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"ok": False, "reason": "draining"}
        assert client.get("/healthz").status_code == 200
        app.state.ctx.extra["draining"] = False

        # A store that stops answering (here: a closed one in its place).
        working, broken = app.state.ctx.store, open_store(f"sqlite:///{tmp_path}/gone.db")
        broken.close()
        app.state.ctx.store = broken
        app.state.ctx.extra.pop("store_check")  # forget the cached answer
        try:
            ready = client.get("/readyz")
        finally:
            app.state.ctx.store = working
        assert ready.status_code == 503 and "store" in ready.json()["reason"]
        assert client.get("/healthz").status_code == 200
    # The API's queue gauges go with it.
    assert REGISTRY.get_sample_value("treadle_queue_depth") is None


def test_every_metric_is_exported(tmp_path: Path) -> None:
    from treadle.cluster.worker import Worker

    with metrics.track_worker(Worker(settings(tmp_path), {})):
        names = {f.name for f in REGISTRY.collect()}
    names |= {f.name for f in metrics.QueueCollector().describe()}  # the API's queue gauges
    assert set(METRIC_NAMES) <= names


# --- the worker's probes ---------------------------------------------------------------------
def test_worker_health_and_readiness(tmp_path: Path) -> None:
    import time

    from treadle.cluster.endpoint import health, readiness
    from treadle.cluster.worker import Worker

    w = Worker(settings(tmp_path, lease_ttl=2.0), {})
    assert readiness(w) == "starting"  # its loops have not started

    async def probe() -> list[str | None]:
        async def sleeps() -> None:
            await asyncio.sleep(3600)

        async def returns() -> None:  # a loop with nothing to do (no task slots) just ends
            return None

        async def crashes() -> None:
            raise RuntimeError("a bug")

        w.loops = [asyncio.create_task(sleeps(), name="sweep"),
                   asyncio.create_task(returns(), name="claim-tasks")]
        await asyncio.sleep(0)
        seen = [health(w), readiness(w)]
        w.ticked_at = time.monotonic() - 3 * w.ttl - 1  # the heartbeat loop is stuck
        seen.append(health(w))
        w.ticked_at = time.monotonic()
        w.loops.append(asyncio.create_task(crashes(), name="heartbeat"))
        await asyncio.sleep(0)
        seen.append(health(w))
        w.stopping = True
        seen.append(readiness(w))
        for task in w.loops:
            task.cancel()
        await asyncio.gather(*w.loops, return_exceptions=True)
        return seen

    ok, ready, stuck, crashed, draining = asyncio.run(probe())
    assert (ok, ready) == (None, None)
    assert stuck is not None and "heartbeat loop has not run" in stuck
    assert crashed is not None and "heartbeat loop died" in crashed and "a bug" in crashed
    assert draining == "draining"
