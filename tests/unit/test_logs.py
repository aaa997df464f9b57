"""Structured log lines: JSON objects with the context bound by a run, a node, a remote
task and the worker; readable console lines; uvicorn's and warnings' records routed too."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

import treadle
from treadle.cluster import client
from treadle.cluster.worker import Worker
from treadle.config import get_settings
from treadle.graphs.refs import load_graph
from treadle.logs import bound, configure_logging

TRACED = f"{Path(__file__).resolve().parents[1] / 'cluster_graphs' / 'traced.py'}:builder"


Configure = Callable[..., io.StringIO]  # configure(format="json", level="info") -> the output


@pytest.fixture
def configure() -> Iterator[Configure]:
    """configure_logging into a StringIO; the logging setup is restored afterwards."""
    root = logging.getLogger()
    names = ["treadle", "uvicorn", "uvicorn.error"]
    saved = (list(root.handlers), root.level,
             {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names})
    out = io.StringIO()

    def setup(format: str = "json", level: str = "info") -> io.StringIO:
        configure_logging(format, level, stream=out)
        return out

    yield setup
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for n, (handlers, propagate) in saved[2].items():
        logging.getLogger(n).handlers[:] = handlers
        logging.getLogger(n).propagate = propagate
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_what_is_bound(configure: Configure) -> None:
    out = configure("json")
    log = logging.getLogger("treadle.worker")
    with bound(worker="w1", run_id="r1", thread_id="t1", attempt=2, node=None):
        log.info("run %s started", "r1")
        with bound(node="plan", node_attempt=1):
            log.warning("in a node")
        try:
            raise ValueError("bad value")
        except ValueError:
            log.exception("failed")
    log.debug("not shown at info")
    uv_logger = logging.getLogger("uvicorn.error")
    uv_level, uv_disabled = uv_logger.level, uv_logger.disabled
    # An in-process uvicorn started by an earlier test sets this logger's level (its
    # log_level); what is tested here is where its lines go, not that level.
    uv_logger.setLevel(logging.INFO)
    uv_logger.disabled = False
    try:
        uv_logger.info("Uvicorn running")
    finally:
        uv_logger.setLevel(uv_level)
        uv_logger.disabled = uv_disabled
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    structlog.get_logger("user.code").info("structlog event", items=3)
    lines = _lines(out)
    assert [line["event"] for line in lines][:4] == ["run r1 started", "in a node", "failed",
                                                     "Uvicorn running"]
    first, node, failed, uv = lines[:4]
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["timestamp"].endswith("Z") and first["level"] == "info"
    assert first["logger"] == "treadle.worker"
    assert {k: first[k] for k in ("worker", "run_id", "thread_id", "attempt")} == {
        "worker": "w1", "run_id": "r1", "thread_id": "t1", "attempt": 2}
    assert "node" not in first
    assert node["node"] == "plan" and node["node_attempt"] == 1 and node["level"] == "warning"
    assert "ValueError: bad value" in failed["exception"] and failed["level"] == "error"
    assert uv["logger"] == "uvicorn.error" and "run_id" not in uv
    assert any("deprecated thing" in line["event"] for line in lines[4:])
    assert any(line["event"] == "structlog event" and line["items"] == 3 for line in lines)


def test_console_lines_are_readable(configure: Configure) -> None:
    out = configure("console")
    with bound(run_id="r9"):
        logging.getLogger("treadle.worker").info("run started")
    (line,) = out.getvalue().splitlines()
    assert "run started" in line and "run_id=r9" in line and "treadle.worker" in line
    assert "\x1b[" not in line  # not a terminal: no colours
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_configuring_again_replaces_the_handler(configure: Configure) -> None:
    out = configure("json")
    configure("json", "warning")
    logging.getLogger("treadle.x").info("dropped")
    logging.getLogger("treadle.x").warning("kept")
    assert [line["event"] for line in _lines(out)] == ["kept"]


async def test_a_cluster_runs_lines_carry_run_node_and_worker(configure: Configure, tmp_path: Path) -> None:
    out = configure("json")
    settings = get_settings(store=f"sqlite:///{tmp_path / 't.db'}", poll_interval=0.05,
                            lease_ttl=3)
    w = Worker(settings, {"traced": TRACED}, task_slots=2, name="w-logs")
    assert await asyncio.to_thread(w.connect)
    await asyncio.to_thread(w.load)
    running = asyncio.create_task(w.run(handle_signals=False))
    g = treadle.compile(load_graph(TRACED), settings=settings, graph_id="traced")
    try:
        row = await asyncio.to_thread(client.submit, g, {"n": 2, "fail": False, "results": []},
                                      {"runtime": "distributed"}, {})
        done = await asyncio.to_thread(client.wait, g.backend, row.run_id, 60)
        assert done.status == "success"
    finally:
        w.request_stop()
        await running
        w.close()
        g.close()
    lines = _lines(out)
    serving = next(line for line in lines if "serving" in line["event"])
    assert serving["worker"] == "w-logs"
    mine = [line for line in lines if line.get("run_id") == done.run_id]
    assert mine and all(line["worker"] == "w-logs" for line in mine)
    started = next(line for line in mine if "started" in line["event"])
    assert started["thread_id"] == done.thread_id and started["attempt"] == 1
    assert started["graph_id"] == "ref:traced" and "node" not in started
    plan = next(line for line in mine if line["event"] == "planning 2 items")
    assert plan["node"] == "plan" and plan["node_attempt"] == 1 and plan["worker"] == "w-logs"
    work = [line for line in mine if line["event"].startswith("working on item")]
    assert len(work) == 2
    for line in work:  # remote tasks: the orchestrator's context, carried in the task record
        assert line["node"] == "work" and line["attempt"] == 1 and line["node_attempt"] == 1
        assert line["thread_id"] == done.thread_id and line["task_key"]
    assert any(line["event"] == "total of 2 results" and line["node"] == "total" for line in mine)


def _fail_with_a_secret_local() -> None:
    api_key = "sk-unit-local-secret-1234567890"  # noqa: F841 - what a locals dump would print
    raise ConnectionError("refused: Authorization: Bearer unit-bearer-secret-99")


@pytest.mark.parametrize("format", ["console", "json"])
def test_tracebacks_show_no_locals_and_no_secrets(configure: Configure, format: str) -> None:
    out = configure(format)
    try:
        _fail_with_a_secret_local()
    except ConnectionError:
        logging.getLogger("treadle.worker").exception("call failed", extra={})
    structlog.get_logger("user.code").error("configured", api_key="sk-field-secret-abcdefgh12",
                                            headers={"authorization": "Basic dXNlcjpwYXNz"},
                                            store="postgresql://app:pg-secret-77@db/app")
    text = out.getvalue()
    for secret in ("sk-unit-local-secret", "unit-bearer-secret", "sk-field-secret",
                   "dXNlcjpwYXNz", "pg-secret-77"):
        assert secret not in text, text
    assert "Traceback (most recent call last)" in text
    assert "ConnectionError: refused: Authorization: ***" in text
    assert "postgresql://app:***@db/app" in text
    assert "api_key" in text and "Locals" not in text and "│" not in text
