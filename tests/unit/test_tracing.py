"""Spans in one process: a span per node attempt (local runs), one trace per cluster run
(enqueue -> attempt -> node -> remote task) with an in-process worker on SQLite."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
import structlog
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from structlog.contextvars import get_contextvars

import treadle
from spans import memory_exporter
from treadle import tracing
from treadle.cluster import client
from treadle.cluster.worker import Worker
from treadle.config import get_settings
from treadle.graphs.refs import load_graph

TRACED = f"{Path(__file__).resolve().parents[1] / 'cluster_graphs' / 'traced.py'}:builder"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return memory_exporter()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


class S(TypedDict):
    x: int


def _settings(tmp_path: Path, **extra: Any) -> Any:
    return get_settings(store=f"sqlite:///{tmp_path / 't.db'}", retry_initial_interval=0.0,
                        retry_jitter=False, **extra)


def _nodes(finished: Any) -> list[Any]:
    return [s for s in finished if s.name.startswith("treadle.node ")]


def test_a_span_per_node_attempt_children_of_the_callers_span(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    failures = {"flaky": 0}

    def first(state: S) -> dict[str, Any]:
        with trace.get_tracer("user").start_as_current_span("inside-first"):
            pass
        seen["first"] = get_contextvars()
        return {"x": state["x"] + 1}

    def flaky(state: S) -> dict[str, Any]:
        failures["flaky"] += 1
        if failures["flaky"] == 1:
            raise ConnectionError("blip")  # transient: retried
        seen["flaky"] = get_contextvars()
        return {"x": state["x"] + 1}

    def last(state: S) -> dict[str, Any]:
        seen["last"] = get_contextvars()
        return {"x": state["x"] + 1}

    b = StateGraph(S)
    b.add_node("first", first, metadata={"treadle": {"timeout": 30}})  # on treadle's pool
    b.add_node("flaky", flaky)  # inline in LangGraph's thread
    b.add_node("last", last)
    b.add_edge(START, "first")
    b.add_edge("first", "flaky")
    b.add_edge("flaky", "last")
    b.add_edge("last", END)
    g = treadle.compile(b, settings=_settings(tmp_path))
    try:
        with trace.get_tracer("app").start_as_current_span("request") as request:
            assert g.invoke({"x": 0}, {"configurable": {"thread_id": "t1"}}) == {"x": 3}
    finally:
        g.close()
    finished = spans.get_finished_spans()
    nodes = _nodes(finished)
    assert [s.name for s in nodes] == ["treadle.node first", "treadle.node flaky",
                                       "treadle.node flaky", "treadle.node last"]
    root = request.get_span_context()
    for s in nodes:
        assert s.context.trace_id == root.trace_id
        assert s.parent is not None and s.parent.span_id == root.span_id
        assert s.attributes["treadle.thread_id"] == "t1"
    fail, retry = nodes[1], nodes[2]
    assert (fail.attributes["treadle.node_attempt"], retry.attributes["treadle.node_attempt"]) == (1, 2)
    assert fail.status.status_code == StatusCode.ERROR and "ConnectionError" in fail.status.description
    assert [e.name for e in fail.events] == ["exception"]
    assert retry.status.status_code == StatusCode.UNSET
    # A span opened in the node body (run on treadle's thread pool) is the node span's child.
    inner = next(s for s in finished if s.name == "inside-first")
    assert inner.parent is not None and inner.parent.span_id == nodes[0].context.span_id
    # The log context reaches the bodies: on treadle's pool and in LangGraph's threads.
    assert seen["first"]["node"] == "first" and seen["first"]["node_attempt"] == 1
    assert seen["flaky"]["node"] == "flaky" and seen["flaky"]["node_attempt"] == 2
    assert seen["last"]["node"] == "last"


async def test_async_runs_trace_async_and_sync_nodes(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def fetch(state: S) -> dict[str, Any]:
        seen["fetch"] = get_contextvars()
        with trace.get_tracer("user").start_as_current_span("inside-fetch"):
            await asyncio.sleep(0)
        return {"x": state["x"] + 1}

    def crunch(state: S) -> dict[str, Any]:  # on treadle's thread pool under ainvoke
        seen["crunch"] = get_contextvars()
        with trace.get_tracer("user").start_as_current_span("inside-crunch"):
            pass
        return {"x": state["x"] + 1}

    b = StateGraph(S)
    b.add_node("fetch", fetch)
    b.add_node("crunch", crunch)
    b.add_edge(START, "fetch")
    b.add_edge("fetch", "crunch")
    b.add_edge("crunch", END)
    g = treadle.compile(b, settings=_settings(tmp_path))
    try:
        with trace.get_tracer("app").start_as_current_span("request") as request:
            assert await g.ainvoke({"x": 0}, {"configurable": {"thread_id": "t2"}}) == {"x": 2}
    finally:
        g.close()
    finished = {s.name: s for s in spans.get_finished_spans()}
    for node in ("fetch", "crunch"):
        span, inside = finished[f"treadle.node {node}"], finished[f"inside-{node}"]
        assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id
        assert inside.parent is not None and inside.parent.span_id == span.context.span_id
        assert seen[node]["node"] == node


def test_an_interrupt_is_not_an_error(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    def ask(state: S) -> dict[str, Any]:
        return {"x": interrupt("how much?")}

    b = StateGraph(S)
    b.add_node("ask", ask)
    b.add_edge(START, "ask")
    b.add_edge("ask", END)
    g = treadle.compile(b, settings=_settings(tmp_path))
    try:
        g.invoke({"x": 0}, {"configurable": {"thread_id": "t-int"}})
    finally:
        g.close()
    (node,) = _nodes(spans.get_finished_spans())
    assert node.status.status_code == StatusCode.UNSET


async def _cluster_run(tmp_path: Path, state: dict[str, Any]) -> Any:
    """Queue a run of tests/cluster_graphs/traced.py and execute it on an in-process
    worker (it runs the remote tasks too); the finished run record."""
    settings = _settings(tmp_path, poll_interval=0.05, lease_ttl=3)
    w = Worker(settings, {"traced": TRACED}, task_slots=4)
    assert await asyncio.to_thread(w.connect)
    await asyncio.to_thread(w.load)
    running = asyncio.create_task(w.run(handle_signals=False))
    g = treadle.compile(load_graph(TRACED), settings=settings, graph_id="traced")
    try:
        row = await asyncio.to_thread(client.submit, g, state, {"runtime": "distributed"}, {})
        return await asyncio.to_thread(client.wait, g.backend, row.run_id, 60)
    finally:
        w.request_stop()
        await running
        w.close()
        g.close()


def _trace_of(finished: Any, run_id: str) -> list[Any]:
    enqueue = next(s for s in finished if s.name == "treadle.run.enqueue"
                   and s.attributes["treadle.run_id"] == run_id)
    return [s for s in finished if s.context.trace_id == enqueue.context.trace_id]


async def test_one_trace_per_cluster_run(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    done = await _cluster_run(tmp_path, {"n": 3, "fail": False, "results": []})
    assert done.status == "success"
    mine = _trace_of(spans.get_finished_spans(), done.run_id)
    by_id = {s.context.span_id: s for s in mine}
    (enqueue,) = [s for s in mine if s.name == "treadle.run.enqueue"]
    (attempt,) = [s for s in mine if s.name == "treadle.run"]
    assert enqueue.parent is None and enqueue.kind == SpanKind.PRODUCER
    assert attempt.parent.span_id == enqueue.context.span_id and attempt.kind == SpanKind.CONSUMER
    assert attempt.attributes["treadle.run_id"] == done.run_id
    assert attempt.attributes["treadle.thread_id"] == done.thread_id
    assert attempt.attributes["treadle.graph_id"] == "ref:traced"
    assert attempt.attributes["treadle.attempt"] == 1 and attempt.attributes["treadle.worker"]
    assert attempt.attributes["treadle.status"] == "success"
    nodes = _nodes(mine)
    assert sorted(s.name for s in nodes) == ["treadle.node plan", "treadle.node total",
                                             *["treadle.node work"] * 3]
    for s in nodes:
        assert s.parent.span_id == attempt.context.span_id
        assert s.attributes["treadle.run_id"] == done.run_id
        assert s.attributes["treadle.graph_id"] == "ref:traced"
    tasks = [s for s in mine if s.name == "treadle.task work"]
    assert len(tasks) == 3
    # Each remote task is the child of its own node span (one task per node span).
    parents = [by_id[t.parent.span_id] for t in tasks]
    assert sorted(p.name for p in parents) == ["treadle.node work"] * 3
    assert len({p.context.span_id for p in parents}) == 3
    assert {s.status.status_code for s in mine} == {StatusCode.UNSET}


async def test_a_failed_run_marks_its_spans(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    done = await _cluster_run(tmp_path, {"n": 1, "fail": True, "results": []})
    assert done.status == "error"
    mine = _trace_of(spans.get_finished_spans(), done.run_id)
    failed = {s.name for s in mine if s.status.status_code == StatusCode.ERROR}
    assert failed == {"treadle.run", "treadle.node work", "treadle.task work"}
    (task,) = [s for s in mine if s.name == "treadle.task work"]
    assert "refused on purpose" in [e for e in task.events][0].attributes["exception.message"]
    (attempt,) = [s for s in mine if s.name == "treadle.run"]
    assert attempt.attributes["treadle.status"] == "error"


def test_carrier_round_trip_and_no_parent_starts_a_trace(spans: InMemorySpanExporter) -> None:
    with tracing.span("outer") as outer:
        headers = tracing.carrier()
    assert outer is not None and headers and headers["traceparent"].startswith("00-")
    with tracing.span("child", parent=headers):
        pass
    with tracing.span("fresh", parent=None):
        pass
    got = {s.name: s for s in spans.get_finished_spans()}
    assert got["child"].context.trace_id == got["outer"].context.trace_id
    child_parent = got["child"].parent
    assert child_parent is not None and child_parent.span_id == got["outer"].context.span_id
    assert got["fresh"].parent is None
    assert got["fresh"].context.trace_id != got["outer"].context.trace_id


def test_log_lines_carry_the_active_span(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    import io
    import json

    from treadle.logs import configure_logging

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        configure_logging("json", "info", stream=out)
        with tracing.span("logged") as current:
            logging.getLogger("treadle.test").info("inside")
        logging.getLogger("treadle.test").info("outside")
    finally:
        from treadle.logs import _Handler

        for h in [h for h in root.handlers if isinstance(h, _Handler)]:
            root.removeHandler(h)
        root.handlers[:] = before[0]
        root.setLevel(before[1])
        logging.captureWarnings(False)
        structlog.reset_defaults()
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert current is not None
    assert inside["trace_id"] == format(current.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(current.get_span_context().span_id, "016x")
    assert "trace_id" not in outside


def test_a_run_created_through_the_http_api_is_one_trace(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from treadle.server.app import create_app

    settings = _settings(tmp_path, poll_interval=0.05, lease_ttl=3)
    graph_ref = TRACED.replace(":builder", ":graph")
    with TestClient(create_app(settings, {"traced": graph_ref}, in_process_worker=True)) as http:
        r = http.post("/runs/wait", json={"assistant_id": "traced",
                                          "input": {"n": 2, "fail": False, "results": []}})
        assert r.status_code == 200, r.text
        run_id = r.headers["Content-Location"].rsplit("/", 1)[-1]
    mine = _trace_of(spans.get_finished_spans(), run_id)
    (enqueue,) = [s for s in mine if s.name == "treadle.run.enqueue"]
    assert enqueue.attributes["treadle.graph_id"] == "ref:traced"
    assert enqueue.attributes["treadle.assistant_id"]
    (attempt,) = [s for s in mine if s.name == "treadle.run"]
    assert attempt.parent.span_id == enqueue.context.span_id
    assert len(_nodes(mine)) == 4 and len([s for s in mine if s.name == "treadle.task work"]) == 2


def test_a_callers_traceparent_header_is_continued(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from treadle.server.app import create_app

    tracer = trace.get_tracer("client")
    settings = _settings(tmp_path, poll_interval=0.05, lease_ttl=3)
    graph_ref = TRACED.replace(":builder", ":graph")
    with TestClient(create_app(settings, {"traced": graph_ref}, in_process_worker=True)) as http:
        with tracer.start_as_current_span("client call") as caller:
            headers = tracing.carrier()
        assert headers and headers["traceparent"]
        r = http.post("/runs/wait", headers=headers,
                      json={"assistant_id": "traced", "input": {"n": 1, "fail": False, "results": []}})
        assert r.status_code == 200, r.text
        run_id = r.headers["Content-Location"].rsplit("/", 1)[-1]
        # Without the header, a run starts its own trace.
        r = http.post("/runs/wait", json={"assistant_id": "traced",
                                          "input": {"n": 1, "fail": False, "results": []}})
        assert r.status_code == 200, r.text
        other_id = r.headers["Content-Location"].rsplit("/", 1)[-1]
    finished = spans.get_finished_spans()
    (enqueue,) = [s for s in _trace_of(finished, run_id) if s.name == "treadle.run.enqueue"]
    assert enqueue.context.trace_id == caller.get_span_context().trace_id
    assert enqueue.parent is not None and enqueue.parent.span_id == caller.get_span_context().span_id
    (other,) = [s for s in _trace_of(finished, other_id) if s.name == "treadle.run.enqueue"]
    assert other.context.trace_id != caller.get_span_context().trace_id
