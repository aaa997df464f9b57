"""Logs and traces of real processes: `treadle worker` / `serve` JSON lines, `treadle dev`
console lines, one trace across two worker processes (PostgreSQL), and OTLP export to a
receiver."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import treadle
from processes import StartServer, StartWorker, subprocess_env
from spans import memory_exporter
from treadle.cluster import client
from treadle.graphs.refs import load_graph
from treadle.store import Store

TESTS = Path(__file__).resolve().parents[1]
TRACED_FILE = TESTS / "cluster_graphs" / "traced.py"
TRACED = f"traced={TRACED_FILE}:builder"
FAST = ["--lease-ttl", "2", "--poll-interval", "0.05"]
INPUT = {"n": 2, "fail": False, "results": []}


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\n{text}") from None
        assert isinstance(doc, dict) and {"timestamp", "level", "logger", "event"} <= set(doc), line
        lines.append(doc)
    return lines


def _run(url: str, thread_id: str, state: dict[str, Any] | None = None) -> Any:
    with treadle.compile(load_graph(f"{TRACED_FILE}:builder"), store=url, graph_id="traced") as g:
        row = client.submit(g, state or INPUT, {"runtime": "distributed",
                                                "configurable": {"thread_id": thread_id}}, {})
        return client.wait(g.backend, row.run_id, timeout=60)


def test_worker_logs_json_lines_with_the_run_context(tmp_path: Path, start_worker: StartWorker) -> None:
    url = f"sqlite:///{tmp_path}/cluster.db"
    w = start_worker(url, TRACED, args=[*FAST, "--name", "w-json"],
                     env={"TREADLE_LOG_FORMAT": "json"})
    done = _run(url, "t-logs")
    assert done.status == "success"
    w.stop()
    lines = _json_lines(w.log())  # every line, stdout and stderr
    assert any("serving" in line["event"] and line["worker"] == "w-json" for line in lines)
    mine = [line for line in lines if line.get("run_id") == done.run_id]
    assert {line["logger"] for line in mine} >= {"treadle.worker", "tests.traced"}
    for line in mine:
        assert line["thread_id"] == "t-logs" and line["attempt"] == 1
        assert line["worker"] == "w-json"
    plan = next(line for line in mine if line["event"] == "planning 2 items")
    assert plan["node"] == "plan" and plan["node_attempt"] == 1
    work = [line for line in mine if line["event"].startswith("working on item")]
    assert len(work) == 2 and all(line["node"] == "work" for line in work)
    assert not any("trace_id" in line for line in lines)  # tracing is off


def _langgraph_json(tmp_path: Path) -> Path:
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"traced": f"{TRACED_FILE}:graph"}}))
    return config


def _http_run(base: str) -> str:
    r = httpx.post(f"{base}/runs/wait", timeout=60,
                   json={"assistant_id": "traced", "input": INPUT})
    assert r.status_code == 200, r.text
    return r.headers["Content-Location"].rsplit("/", 1)[-1]


def _wait_for(predicate: Any, describe: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(describe())
        time.sleep(0.05)


def test_dev_prints_readable_console_lines(tmp_path: Path, start_server: StartServer) -> None:
    server = start_server("dev", config=_langgraph_json(tmp_path))
    run_id = _http_run(server.url)
    _wait_for(lambda: f"run {run_id} success" in server.log(), server.log)
    server.stop()
    lines = [line for line in server.log().splitlines() if line.strip()]
    for line in lines:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            continue
        raise AssertionError(f"a JSON line from treadle dev: {line!r}")
    assert any("treadle dev:" in line and "[info" in line for line in lines), lines
    assert any("Application startup complete" in line for line in lines), lines  # uvicorn's, same format
    planned = next(line for line in lines if "planning 2 items" in line)
    assert f"run_id={run_id}" in planned and "node=plan" in planned


def test_serve_logs_json_lines_from_api_and_workers(tmp_path: Path, start_server: StartServer) -> None:
    server = start_server("serve", config=_langgraph_json(tmp_path), args=["--workers", "1"])
    run_id = _http_run(server.url)
    _wait_for(lambda: f"run {run_id} success" in server.log(), server.log)
    server.stop()
    lines = _json_lines(server.log())  # the API's and its worker process's lines
    assert any(line["event"].startswith("treadle serve:") for line in lines)
    mine = [line for line in lines if line.get("run_id") == run_id]
    assert mine and all(line["worker"] and line["attempt"] == 1 for line in mine)
    assert any(line.get("node") == "work" for line in mine)


# --- one trace across processes -----------------------------------------------------------------


class _TracedWorker:
    """`treadle worker` under tests/tracing_worker.py: its spans land in ``spans_path``."""

    def __init__(self, tmp_path: Path, name: str, url: str, args: list[str]) -> None:
        self.spans_path = tmp_path / f"{name}.spans.jsonl"
        self.log_path = tmp_path / f"{name}.log"
        self._out = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(TESTS / "tracing_worker.py"), str(self.spans_path), "worker",
             "--store", url, "--name", name, *FAST, *args, TRACED],
            env=subprocess_env(PYTHONPATH=os.pathsep.join([str(TESTS), subprocess_env()["PYTHONPATH"]])),
            stdout=self._out, stderr=subprocess.STDOUT,
        )
        _wait_for(lambda: "serving" in self.log() or self.proc.poll() is not None, self.log, 30)
        assert self.proc.poll() is None, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> list[dict[str, Any]]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        assert self.proc.returncode == 0, self.log()
        return [json.loads(line) for line in self.spans_path.read_text().splitlines()]


def _status(store: Store, run_id: str) -> str:
    row = store.get_run(run_id)
    assert row is not None, run_id
    return row.status


@pytest.mark.postgres
def test_one_trace_across_two_worker_processes(pg_url: str, tmp_path: Path) -> None:
    exporter = memory_exporter()  # this process queues the run: the trace's root
    exporter.clear()
    workers: list[_TracedWorker] = []
    try:
        a = _TracedWorker(tmp_path, "A", pg_url, ["--task-slots", "0"])  # runs the run only
        workers.append(a)
        with treadle.compile(load_graph(f"{TRACED_FILE}:builder"), store=pg_url,
                             graph_id="traced") as g:
            row = client.submit(g, {"n": 3, "fail": False, "results": []},
                                {"runtime": "distributed"}, {})
            _wait_for(lambda: _status(g.backend, row.run_id) != "pending",
                      lambda: a.log())
            # B only now (the run is A's): it executes the remote node tasks A queues.
            b = _TracedWorker(tmp_path, "B", pg_url, ["--task-slots", "4", "--concurrency", "1"])
            workers.append(b)
            done = client.wait(g.backend, row.run_id, timeout=60)
            assert done.status == "success", done.error
        spans_a, spans_b = a.stop(), b.stop()
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
    (enqueue,) = [s for s in exporter.get_finished_spans() if s.name == "treadle.run.enqueue"]
    trace_id = format(enqueue.context.trace_id, "032x")
    run_a = [s for s in spans_a if s["attributes"].get("treadle.run_id") == row.run_id]
    run_b = [s for s in spans_b if s["attributes"].get("treadle.run_id") == row.run_id]
    assert {s["trace_id"] for s in run_a + run_b} == {trace_id}  # one trace, three processes
    (attempt,) = [s for s in run_a if s["name"] == "treadle.run"]
    assert attempt["parent_id"] == format(enqueue.context.span_id, "016x")
    assert attempt["attributes"]["treadle.worker"] == "A" and attempt["service"] == "treadle-worker"
    nodes = [s for s in run_a if s["name"].startswith("treadle.node ")]
    assert sorted(s["name"] for s in nodes) == ["treadle.node plan", "treadle.node total",
                                                *["treadle.node work"] * 3]
    assert all(s["parent_id"] == attempt["span_id"] for s in nodes)
    assert not [s for s in run_a if s["name"].startswith("treadle.task")]  # A ran no task
    tasks = [s for s in run_b if s["name"] == "treadle.task work"]
    assert len(tasks) == 3 and len(run_b) == 3  # B: only the tasks, nothing else of the run
    work_nodes = {s["span_id"] for s in nodes if s["name"] == "treadle.node work"}
    # Each task in B is the child of its own node span in A.
    assert sorted(t["parent_id"] for t in tasks) == sorted(work_nodes)
    assert all(t["kind"] == "CONSUMER" and t["attributes"]["treadle.worker"] == "B" for t in tasks)


# --- OTLP export -------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    requests: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            type(self).requests.append(body)
            self.send_response(200)
        else:
            self.send_response(404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_otlp_exporter_sends_the_workers_spans(tmp_path: Path, start_worker: StartWorker) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _Receiver.requests = []
    receiver = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"sqlite:///{tmp_path}/cluster.db"
        w = start_worker(url, TRACED, args=[*FAST, "--trace-exporter", "otlp"], env={
            "TREADLE_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}"})
        done = _run(url, "t-otlp")
        assert done.status == "success"
        w.stop()  # SIGTERM: the worker flushes its spans as it exits
        assert w.proc.returncode == 0, w.log()
    finally:
        receiver.shutdown()
    names, services, run_ids = [], set(), set()
    for body in _Receiver.requests:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes
                         if a.key == "service.name"}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    names.append(span.name)
                    run_ids |= {a.value.string_value for a in span.attributes
                                if a.key == "treadle.run_id"}
    assert services == {"treadle-worker"}
    assert names.count("treadle.run") == 1 and names.count("treadle.node work") == 2
    assert names.count("treadle.task work") == 2 and done.run_id in run_ids
    # Log lines inside a span carry its ids.
    lines = _json_lines(w.log())
    assert any(line.get("run_id") == done.run_id and len(line.get("trace_id", "")) == 32
               for line in lines)
