"""`treadle worker` processes executing runs queued with runtime="distributed" (SQLite store)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import treadle
from processes import StartWorker
from treadle.errors import ConfigError, RunFailedError, ThreadBusyError
from treadle.graphs.refs import load_graph
from treadle.store import Store

GRAPHS = Path(__file__).resolve().parents[1] / "cluster_graphs"
CHAIN = f"chain={GRAPHS / 'chain.py'}:builder"
FANOUT = f"fanout={GRAPHS / 'fanout.py'}:builder"
FAST = ["--lease-ttl", "2", "--poll-interval", "0.05"]


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cluster.db"


def _graph(url: str, ref: str, name: str) -> treadle.TreadleGraph:
    return treadle.compile(load_graph(ref), store=url, graph_id=name)


def _dist(thread_id: str | None = None, **extra: object) -> dict[str, Any]:
    cfg: dict[str, Any] = {"runtime": "distributed", **extra}
    if thread_id:
        cfg["configurable"] = {"thread_id": thread_id}
    return cfg


def _status(store: Store, run_id: str) -> str:
    row = store.get_run(run_id)
    assert row is not None, run_id
    return row.status


def _steps(store: object, thread_id: str) -> list[int]:
    return sorted(
        json.loads(r.row.metadata).get("step") for r in store.list_checkpoints(thread_id, "")  # type: ignore[attr-defined]
    )


def test_distributed_invoke_and_stream(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    start_worker(url, CHAIN, args=FAST)
    with _graph(url, CHAIN.split("=", 1)[1], "chain") as g:
        out = g.invoke({"n": 0, "done": []}, _dist("t-invoke"))
        assert out["n"] == 10 and out["done"] == [f"s{i}" for i in range(1, 11)]
        # Every step committed exactly once, by the worker, on the shared store.
        assert _steps(g.backend, "t-invoke") == list(range(-1, 11))
        run = g.backend.list_runs(thread_id="t-invoke")[0]
        assert run.status == "success" and run.attempt == 1

        chunks = list(g.stream({"n": 0, "done": []}, _dist("t-stream"), stream_mode="updates"))
        assert [next(iter(c)) for c in chunks] == [f"s{i}" for i in range(1, 11)]
        multi = list(g.stream({"n": 0, "done": []}, _dist(), stream_mode=["values", "updates"]))
        assert all(isinstance(c, tuple) and c[0] in ("values", "updates") for c in multi)


async def test_distributed_ainvoke_and_astream(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    start_worker(url, CHAIN, args=FAST)
    with _graph(url, CHAIN.split("=", 1)[1], "chain") as g:
        out = await g.ainvoke({"n": 5, "done": []}, _dist())
        assert out["n"] == 15
        seen = [c async for c in g.astream({"n": 0, "done": []}, _dist(), stream_mode="values")]
        assert seen[-1]["n"] == 10


def test_remote_node_tasks_spread_over_workers(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    env = {"WORK_SLEEP": "0.3"}
    start_worker(url, FANOUT, args=[*FAST, "--task-slots", "4"], env=env)
    start_worker(url, FANOUT, args=[*FAST, "--task-slots", "4"], env=env)
    with _graph(url, FANOUT.split("=", 1)[1], "fanout") as g:
        out = g.invoke({"n": 8, "results": []}, _dist("fan"))
        assert sorted(r["i"] for r in out["results"]) == list(range(8))
        assert len({r["pid"] for r in out["results"]}) == 2  # both workers ran branches
        tasks = g.backend.list_tasks(g.backend.list_runs(thread_id="fan")[0].run_id)
        assert len(tasks) == 8 and {t.status for t in tasks} == {"success"}


def test_max_workers_bounds_remote_branches(tmp_path: Path, start_worker: StartWorker) -> None:
    """Remote branches of a run are bodies of that run: at most max_workers at once,
    however many task slots the workers have."""
    url = _url(tmp_path)
    start_worker(url, FANOUT, args=[*FAST, "--task-slots", "8"], env={"WORK_SLEEP": "0.2"})
    with _graph(url, FANOUT.split("=", 1)[1], "fanout") as g:
        out = g.invoke({"n": 8, "results": []}, _dist("fan-bounded", max_workers=2))
    results = out["results"]
    assert sorted(r["i"] for r in results) == list(range(8))
    peak = max(sum(1 for o in results if o["began"] <= r["began"] < o["ended"]) for r in results)
    assert peak <= 2, peak


def test_cli_run_distributed(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    ref = f"{GRAPHS / 'chain.py'}:builder"
    start_worker(url, ref, args=FAST)  # served under the REF itself
    out = subprocess.run(
        [sys.executable, "-m", "treadle", "run", ref, "--store", url, "--runtime", "distributed",
         "--json", "--input", '{"n": 1, "done": []}'],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n"] == 11


def test_graph_shipped_by_value(tmp_path: Path, start_worker: StartWorker) -> None:
    """A script's graph (functions in __main__) runs on a worker that trusts the store."""
    url = _url(tmp_path)
    start_worker(url, args=[*FAST, "--allow-pickled-graphs"])
    script = tmp_path / "notebook.py"
    script.write_text(
        "import sys, treadle\n"
        "from typing import TypedDict\n"
        "from langgraph.graph import StateGraph, START, END\n"
        "class S(TypedDict):\n    x: int\n"
        "def double(s):\n    return {'x': s['x'] * 2}\n"
        "b = StateGraph(S); b.add_node('double', double)\n"
        "b.add_edge(START, 'double'); b.add_edge('double', END)\n"
        "g = treadle.compile(b, store=sys.argv[1])\n"
        "print(g.invoke({'x': 21}, {'runtime': 'distributed'})['x'])\n"
    )
    out = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"


def test_pickled_runs_wait_for_a_trusting_worker(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    start_worker(url, CHAIN, args=FAST)  # does not accept pickled graphs
    from treadle.cluster import client

    with treadle.compile(load_graph(f"{GRAPHS / 'chain.py'}:builder"), store=url) as g:
        row = client.submit(g, {"n": 0, "done": []}, _dist(), {})
        assert row.graph_id.startswith("pickle:")
        time.sleep(1.0)
        assert _status(g.backend, row.run_id) == "pending"
        g.backend.cancel_run(row.run_id)


def test_worker_reports_unloadable_graph_and_serves_the_rest(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    w = start_worker(url, f"bad={broken}:graph", CHAIN, args=FAST)
    assert "bad" in w.log() and "boom at import" in w.log()
    with _graph(url, CHAIN.split("=", 1)[1], "chain") as ok, \
            _graph(url, CHAIN.split("=", 1)[1], "bad") as bad:
        from treadle.cluster import client

        row = client.submit(bad, {"n": 0, "done": []}, _dist(), {})
        assert ok.invoke({"n": 0, "done": []}, _dist())["n"] == 10
        assert _status(bad.backend, row.run_id) == "pending"  # left for another worker


def test_worker_with_nothing_to_serve_fails_clearly(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "treadle", "worker", "--store", _url(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "would serve nothing" in out.stderr and "Traceback" not in out.stderr


def test_cancel_keeps_partial_state_and_timeout(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    start_worker(url, CHAIN, args=FAST, env={"STEP_SLEEP": "0.3"})
    from treadle.cluster import client

    with _graph(url, CHAIN.split("=", 1)[1], "chain") as g:
        row = client.submit(g, {"n": 0, "done": []}, _dist("c1"), {})
        deadline = time.monotonic() + 20
        while len(_steps(g.backend, "c1")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        g.backend.cancel_run(row.run_id)
        done = client.wait(g.backend, row.run_id, timeout=20)
        assert done.status == "cancelled"
        kept = _steps(g.backend, "c1")
        assert 3 <= len(kept) < 12  # partial state is kept
        time.sleep(0.8)
        assert _steps(g.backend, "c1") == kept  # and nothing runs after the cancel

        with pytest.raises(RunFailedError, match="timeout"):
            g.invoke({"n": 0, "done": []}, _dist("c2", run_timeout=0.5))
        assert g.backend.list_runs(thread_id="c2")[0].status == "timeout"


def test_multitask_strategies(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    start_worker(url, CHAIN, args=FAST, env={"STEP_SLEEP": "0.2"})
    from treadle.cluster import client

    with _graph(url, CHAIN.split("=", 1)[1], "chain") as g:
        first = client.submit(g, {"n": 0, "done": []}, _dist("busy"), {})
        with pytest.raises(ThreadBusyError):
            client.submit(g, {"n": 0, "done": []}, _dist("busy", multitask_strategy="reject"), {})
        queued = client.submit(g, {"n": 100, "done": []}, _dist("busy"), {})  # enqueue
        a = client.wait(g.backend, first.run_id, timeout=30)
        b = client.wait(g.backend, queued.run_id, timeout=30)
        assert (a.status, b.status) == ("success", "success")
        assert b.started_at is not None and a.ended_at is not None
        assert b.started_at >= a.ended_at  # one run per thread at a time, in order

        slow = client.submit(g, {"n": 0, "done": []}, _dist("busy2"), {})
        while _status(g.backend, slow.run_id) != "running":
            time.sleep(0.02)
        newer = client.submit(g, {"n": 1000, "done": []}, _dist("busy2", multitask_strategy="interrupt"), {})
        assert client.wait(g.backend, slow.run_id, timeout=30).status == "interrupted"
        assert client.wait(g.backend, newer.run_id, timeout=30).status == "success"

        with pytest.raises(ConfigError):
            client.submit(g, None, _dist("x", multitask_strategy="bogus"), {})


def test_invalid_input_errors_with_the_validation_message(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    typed = tmp_path / "typed.py"
    typed.write_text(
        "from pydantic import BaseModel\n"
        "from langgraph.graph import StateGraph, START, END\n"
        "class S(BaseModel):\n    count: int\n"
        "def inc(s):\n    return {'count': s.count + 1}\n"
        "builder = StateGraph(S); builder.add_node('inc', inc)\n"
        "builder.add_edge(START, 'inc'); builder.add_edge('inc', END)\n"
    )
    start_worker(url, f"typed={typed}:builder", args=FAST)
    with _graph(url, f"{typed}:builder", "typed") as g:
        with pytest.raises(RunFailedError, match="count") as err:
            g.invoke({"count": "not a number"}, _dist("bad-input"))
        assert err.value.status == "error"
        assert list(g.backend.list_checkpoints("bad-input", None)) == []  # nothing written
        assert g.invoke({"count": 1}, _dist("good-input")) == {"count": 2}


def test_sigterm_hands_the_run_over(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    env = {"STEP_SLEEP": "0.3"}
    a = start_worker(url, CHAIN, args=[*FAST, "--drain-timeout", "5"], env=env)
    from treadle.cluster import client

    with _graph(url, CHAIN.split("=", 1)[1], "chain") as g:
        row = client.submit(g, {"n": 0, "done": []}, _dist("handoff"), {})
        deadline = time.monotonic() + 20
        while len(_steps(g.backend, "handoff")) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        b = start_worker(url, CHAIN, args=FAST, env=env)
        a.signal(signal.SIGTERM)
        a.proc.wait(20)
        assert a.proc.returncode == 0, a.log()
        assert "handed back" in a.log()
        done = client.wait(g.backend, row.run_id, timeout=30)
        assert done.status == "success" and done.attempt == 1  # a hand-off is not a failure
        assert _steps(g.backend, "handoff") == list(range(-1, 11))  # each step once
        assert "started" in b.log()


def test_distributed_needs_known_runtime(tmp_path: Path) -> None:
    with treadle.compile(load_graph(f"{GRAPHS / 'chain.py'}:builder"),
                         store=_url(tmp_path)) as g:
        with pytest.raises(ConfigError, match="runtime"):
            g.invoke({"n": 0, "done": []}, {"runtime": "cloud"})


def test_worker_serves_a_langgraph_json(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    app = tmp_path / "app"
    app.mkdir()
    (app / "graphs.py").write_text((GRAPHS / "chain.py").read_text())
    (app / "langgraph.json").write_text(json.dumps(
        {"dependencies": ["."], "graphs": {"agent": "./graphs.py:builder"}, "env": {"STEP_SLEEP": "0"}}
    ))
    start_worker(url, args=[*FAST, "--graphs", str(app / "langgraph.json")])
    with _graph(url, f"{app / 'graphs.py'}:builder", "agent") as g:
        assert g.invoke({"n": 0, "done": []}, _dist())["n"] == 10


def test_multitask_rollback_deletes_the_active_runs_checkpoints(tmp_path: Path, start_worker: StartWorker) -> None:
    url = _url(tmp_path)
    start_worker(url, CHAIN, args=FAST, env={"STEP_SLEEP": "0.2"})
    from treadle.cluster import client

    with _graph(url, CHAIN.split("=", 1)[1], "chain") as g:
        old = client.submit(g, {"n": 0, "done": []}, _dist("rb"), {})
        deadline = time.monotonic() + 20
        while len(_steps(g.backend, "rb")) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        new = client.submit(g, {"n": 500, "done": []}, _dist("rb", multitask_strategy="rollback"), {})
        assert client.wait(g.backend, old.run_id, timeout=30).status == "cancelled"
        assert client.wait(g.backend, new.run_id, timeout=30).status == "success"
        runs = {json.loads(c.row.metadata).get("run_id") for c in g.backend.list_checkpoints("rb", "")}
        assert runs == {new.run_id}  # the rolled-back run left nothing behind
        state = g.get_state({"configurable": {"thread_id": "rb"}})
        assert state.values["n"] == 510 and len(state.values["done"]) == 10


def test_worker_waits_for_an_unreachable_store(tmp_path: Path, start_worker: StartWorker) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    w = start_worker(f"postgresql://postgres@127.0.0.1:{port}/x", CHAIN, ready=False)
    time.sleep(4)
    assert w.proc.poll() is None, w.log()  # backing off, not dead
    retries = w.log().count("store unreachable")
    assert 2 <= retries <= 6, w.log()  # backing off, not spinning
    assert "Traceback" not in w.log()
    w.signal(signal.SIGTERM)
    assert w.proc.wait(10) == 0


def test_cli_runs_list_show_cancel(tmp_path: Path) -> None:
    url = _url(tmp_path)
    from treadle.cluster import client

    with _graph(url, CHAIN.split("=", 1)[1], "chain") as g:
        row = client.submit(g, {"n": 0, "done": []}, _dist("cli-runs"), {})  # no worker: pending

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "treadle", *args, "--store", url],
                              capture_output=True, text=True, timeout=60)

    listed = cli("runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["pending"] == 1 and doc["runs"][0]["run_id"] == row.run_id
    assert doc["runs"][0]["lost_workers"] == 0
    shown = cli("runs", "show", row.run_id)
    assert shown.returncode == 0 and "pending" in shown.stdout
    cancelled = cli("runs", "cancel", row.run_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    assert json.loads(cli("runs", "show", row.run_id, "--json").stdout)["status"] == "cancelled"
    missing = cli("runs", "show", "nope")
    assert missing.returncode == 1 and "no run 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
