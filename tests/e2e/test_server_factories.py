"""Graph factories through the official langgraph-sdk, against a real `treadle dev`:
``make_graph(config, runtime: ServerRuntime)`` and a context-manager factory are called
for each use with the access context langgraph-api gives (tests/e2e/factory_graphs)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from processes import ServerProcess, subprocess_env

pytestmark = pytest.mark.timeout(120)

GRAPHS = Path(__file__).resolve().parent / "factory_graphs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("factories")
    proc = ServerProcess("dev", f"sqlite:///{tmp / 'dev.db'}", tmp / "server.log", [],
                         subprocess_env(), GRAPHS / "langgraph.json")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop(timeout=10)


async def _calls(client: Any, graph: str) -> list[dict[str, Any]]:
    items = await client.store.search_items(["calls", graph], limit=100)
    return [i["value"] for i in sorted(items["items"], key=lambda i: i["created_at"])]


async def test_make_graph_with_config_and_runtime(server: ServerProcess) -> None:
    client = get_client(url=server.url)
    # treadle dev loaded it once at start (a read: no context)
    assert await _calls(client, "made") == [{
        "event": "call", "access_context": "assistants.read", "user": None, "context": None,
        "thread_id": None}]
    thread = await client.threads.create()
    tid = thread["thread_id"]
    result = await client.runs.wait(tid, "made", input={"text": "hi"},
                                    context={"user_id": "u-1"})
    assert result == {"text": "hi echoed", "access_context": "threads.create_run",
                      "is_for_execution": True, "context": {"user_id": "u-1"},
                      "thread_id": tid}
    values = (await client.threads.get_state(tid))["values"]
    assert isinstance(values, dict) and values["text"] == "hi echoed"
    assert len(await client.threads.get_history(tid)) >= 2
    await client.threads.update_state(tid, {"text": "edited"}, as_node="echo")
    values = (await client.threads.get_state(tid))["values"]
    assert isinstance(values, dict) and values["text"] == "edited"
    schemas = await client.assistants.get_schemas("made")
    input_schema = schemas["input_schema"]
    assert input_schema is not None and "text" in input_schema["properties"]
    drawn = await client.assistants.get_graph("made")
    assert "echo" in {n["id"] for n in drawn["nodes"]}
    assert await client.assistants.get_subgraphs("made") == {}

    calls = await _calls(client, "made")
    assert [c["access_context"] for c in calls] == [
        "assistants.read",  # start
        "threads.create_run",  # the run
        "threads.read", "threads.read",  # get_state, get_history
        "threads.update", "threads.read",  # update_state, get_state
        "assistants.read", "assistants.read", "assistants.read",  # schemas, graph, subgraphs
    ]
    assert calls[1] == {"event": "call", "access_context": "threads.create_run", "user": None,
                        "context": {"user_id": "u-1"}, "thread_id": tid}
    assert all(c["context"] is None for c in calls if c["access_context"] != "threads.create_run")
    assert all(c["thread_id"] == tid for c in calls[2:6])


async def test_context_manager_factory_is_exited_after_the_run(server: ServerProcess) -> None:
    client = get_client(url=server.url)
    result = await client.runs.wait(None, "managed", input={"text": "yo"})
    assert isinstance(result, dict)
    assert result["text"] == "yo echoed" and result["is_for_execution"] is True
    expected = [("enter", "assistants.read"), ("exit", "assistants.read"),
                ("enter", "threads.create_run"), ("exit", "threads.create_run")]
    for _ in range(100):  # the exit is recorded just after the run's end
        calls = [(c["event"], c["access_context"]) for c in await _calls(client, "managed")]
        if calls == expected:
            break
        await asyncio.sleep(0.1)
    assert calls == expected


def test_a_factory_no_server_could_call_stops_start_up(tmp_path: Path) -> None:
    proc = ServerProcess("dev", f"sqlite:///{tmp_path / 'dev.db'}", tmp_path / "server.log", [],
                         subprocess_env(), GRAPHS / "bad.json")
    try:
        assert proc.proc.wait(60) != 0
    finally:
        proc.stop(timeout=10)
    assert ("graph 'bad' of " in proc.log() and "factories.py:two_configs: a graph factory takes "
            "a config and/or a ServerRuntime, but other is neither (give it a default, or "
            "annotate the runtime parameter as ServerRuntime)" in proc.log()), proc.log()


def test_treadle_run_gives_a_factory_an_execution_runtime(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "treadle", "run", f"{GRAPHS / 'factories.py'}:make_graph",
         "--input", '{"text": "hi"}', "--thread", "T1", "--json",
         "--store", f"sqlite:///{tmp_path / 'run.db'}"],
        env=subprocess_env(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "text": "hi echoed", "access_context": "threads.create_run", "is_for_execution": True,
        "context": None, "thread_id": "T1"}
