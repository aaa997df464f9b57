"""A distributed run nobody can execute is never silent (SQLite and PostgreSQL).

Workers advertise the graphs they serve (``treadle_workers``, refreshed by heartbeats);
a caller whose run waits on a graph no live worker serves is told so, with the command
that starts one, and keeps waiting unless a ``queue_timeout`` ends the run for good;
``treadle runs list|show`` say why a run is pending.
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import treadle
from processes import subprocess_env, terminate
from treadle.cluster.pending import pending_reason, worker_command
from treadle.errors import QueueTimeoutError
from treadle.graphs.refs import load_graph
from treadle.store import open_store
from treadle.store.queue import NewRun, WorkerInfo

REPO = Path(__file__).resolve().parents[2]
PIPELINE = f"{REPO / 'examples' / 'pipeline.py'}:builder"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cluster.db"
    return str(request.getfixturevalue("pg_url"))


def _cli(url: str, *args: str) -> Any:
    out = subprocess.run([sys.executable, "-m", "treadle", *args, "--store", url, "--json"],
                         cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _lines(stream: Any) -> queue.Queue[str]:
    """The lines of a child's pipe, as they come."""
    got: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            got.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return got


def _line_with(lines: queue.Queue[str], text: str, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 60  # a guard against hanging, not a speed claim
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            assert proc.poll() is None, "the caller exited without the line"
            continue
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r}")


def test_cli_run_on_an_unserved_graph_says_so_keeps_waiting_and_a_late_worker_finishes_it(
        store_url: str, start_worker: Any) -> None:
    # The README's pair: a run of the langgraph.json graph by its name, a worker from the file.
    proc = subprocess.Popen(
        [sys.executable, "-m", "treadle", "run", "pipeline", "--config", "examples/langgraph.json",
         "--runtime", "distributed", "--store", store_url, "--json", "--thread", "late",
         "--input", '{"text": "Durable. Parallel. Resumable."}'],
        cwd=REPO, env=subprocess_env(TREADLE_UNSERVED_WARNING="0.5"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        warning = _line_with(_lines(proc.stderr), "no live worker serves", proc)
        assert "graph 'pipeline'" in warning and "still waiting" in warning
        assert f"start one with: treadle worker --store {store_url} --graphs " \
               "examples/langgraph.json" in warning
        # It keeps waiting; the queue says why.
        assert proc.poll() is None
        [run] = _cli(store_url, "runs", "list")["runs"]
        assert (run["graph_id"], run["status"]) == ("ref:pipeline", "pending")
        assert run["waiting"] == "waiting for a worker serving 'pipeline' (none live)"
        shown = _cli(store_url, "runs", "show", run["run_id"])
        assert shown["waiting"] == run["waiting"]
        # A worker started late, from the same langgraph.json, runs it.
        worker = start_worker(store_url, args=["--graphs", str(REPO / "examples" / "langgraph.json"),
                                               "--poll-interval", "0.05"])
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out)["report"] == "Durable… (1 words); Parallel… (1 words); Resumable… (1 words)"
        assert "waiting" not in _cli(store_url, "runs", "show", run["run_id"])
        with open_store(store_url) as store:
            [live] = store.list_workers("ref:pipeline")
            assert live.graph_ids == ["ref:pipeline"] and not live.allow_pickled
            worker.stop()  # a clean stop takes its advertisement away
            assert store.list_workers() == []
    finally:
        terminate(proc, 5)  # type: ignore[arg-type]


def test_library_caller_is_warned_and_queue_timeout_cancels_for_good(
        store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="treadle.client")
    settings = treadle.Settings(store=store_url, unserved_warning=0.2)
    with treadle.compile(load_graph(PIPELINE), settings=settings, graph_id="nobody") as g:
        with pytest.raises(QueueTimeoutError, match="queue_timeout of 2s") as info:
            g.invoke({"text": "a. b"}, {"runtime": "distributed", "queue_timeout": 2,
                                        "thread_id": "t-nobody"})
        [warning] = [r.getMessage() for r in caplog.records if r.name == "treadle.client"]
        assert warning.startswith("no live worker serves graph 'nobody' (run ")
        assert f"start one with: treadle worker --store {store_url} " \
               "nobody=path/to/module.py:graph" in warning
        assert info.value.graph_id == "ref:nobody" and "no live worker serves it" in str(info.value)
        # The cancel is durable: the run ended, and a worker serving the graph never gets it.
        [row] = g.backend.list_runs(thread_id="t-nobody")
        assert row.status == "cancelled" and row.ended_at is not None
        assert "queue_timeout" in (row.error or "")
        assert g.backend.claim_run("w", ["ref:nobody"], False, 60.0) is None


def test_no_warning_while_a_live_worker_serves_the_graph(
        store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="treadle.client")
    settings = treadle.Settings(store=store_url, unserved_warning=0.0)
    with treadle.compile(load_graph(PIPELINE), settings=settings, graph_id="busy") as g:
        # A live worker serving the graph, all of whose slots are taken.
        g.backend.register_worker(WorkerInfo("w1", "host:1:w1", ["ref:busy"], False, 1, 1,
                                           0.0, 0.0, 0.0), 60.0)
        with pytest.raises(QueueTimeoutError) as info:
            g.invoke({"text": "a"}, {"runtime": "distributed", "queue_timeout": 1.5})
        assert "no live worker" not in str(info.value)
        assert [r for r in caplog.records if r.name == "treadle.client"] == []


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


def _pending(store: Any, run_id: str, thread_id: str, graph_id: str = "ref:g") -> Any:
    return store.enqueue_run(NewRun(run_id, thread_id, graph_id, b"x"))


def test_pending_reasons(store: Any) -> None:
    first = _pending(store, "r1", "t1")
    assert pending_reason(store, first) == "waiting for a worker serving 'g' (none live)"
    store.register_worker(WorkerInfo("w1", "host:1:w1", ["ref:g"], False, 2, 0, 0.0, 0.0, 0.0),
                          60.0)
    assert pending_reason(store, first) == "about to be claimed (served by host:1:w1)"
    second = _pending(store, "r2", "t2")
    assert pending_reason(store, second) == "queued behind 1 run"
    behind = _pending(store, "r3", "t1")
    assert pending_reason(store, behind) == "waiting for run r1 of its thread to end"
    store.register_worker(WorkerInfo("w1", "host:1:w1", ["ref:g"], False, 2, 2, 0.0, 0.0, 0.0),
                          60.0)
    assert pending_reason(store, second) == "waiting for a free slot on workers host:1:w1"
    shipped = _pending(store, "r4", "t4", "pickle:" + "ab" * 32)
    assert pending_reason(store, shipped).startswith("waiting for a worker serving pickle:abab")


def test_the_worker_command_never_shows_a_password() -> None:
    command = worker_command("postgresql://app:s3cret@db/agents", "ref:pipeline")
    assert "s3cret" not in command
    assert command == "treadle worker --store 'postgresql://app:***@db/agents' " \
                      "pipeline=path/to/module.py:graph"
    assert worker_command("sqlite:///x.db", "pickle:abc").endswith("--allow-pickled-graphs")


def _run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treadle", "run", *args], cwd=cwd,
                          env=subprocess_env(TREADLE_UNSERVED_WARNING="0"), capture_output=True,
                          text=True, timeout=60)


def test_treadle_run_names_a_graph_as_its_langgraph_json_does(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    # A REF that is an entry of the langgraph.json is queued under the entry's name.
    done = _run_cli("examples/pipeline.py:builder", "--config", "examples/langgraph.json",
                    "--runtime", "distributed", "--store", url, "--queue-timeout", "0.5",
                    "--input", '{"text": "a"}')
    assert done.returncode == 1
    assert "no live worker serves graph 'pipeline'" in done.stderr
    assert "--graphs examples/langgraph.json" in done.stderr
    assert "queue_timeout of 0.5s" in done.stderr
    # Without a langgraph.json naming it, the REF string is the name.
    done = _run_cli("examples/pipeline.py:builder", "--runtime", "distributed", "--store", url,
                    "--queue-timeout", "0.5", "--input", '{"text": "a"}')
    assert "graph 'examples/pipeline.py:builder'" in done.stderr
    assert f"treadle worker --store {url} examples/pipeline.py:builder" in done.stderr
    with open_store(url) as store:
        assert {r.graph_id for r in store.list_runs()} == {
            "ref:pipeline", "ref:examples/pipeline.py:builder"}
        assert {r.status for r in store.list_runs()} == {"cancelled"}
    # A name runs locally too (./langgraph.json by default); an unknown one says what there is.
    local = _run_cli("pipeline", "--store", url, "--json", "--input", '{"text": "a. b"}',
                     cwd=REPO / "examples")
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["report"] == "a… (1 words); b… (1 words)"
    unknown = _run_cli("pipline", "--config", "examples/langgraph.json", "--store", url)
    assert unknown.returncode == 1
    assert "examples/langgraph.json has no graph 'pipline' (its graphs: pipeline)" in unknown.stderr
