"""The HTTP API through the official langgraph-sdk, against a real `treadle dev` process.

Every endpoint group the SDK exposes: assistants, threads, thread runs, stateless
runs, streaming (each mode, subgraphs, reconnect), human in the loop, double
texting, crons and the key-value store. Async client unless a test says sync.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError
from langgraph_sdk.schema import Cron, RunCreate, StreamPart, Thread

from processes import ServerProcess, StartServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def client(dev_server: ServerProcess) -> LangGraphClient:
    return get_client(url=dev_server.url)


def _values(out: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
    """A run's output values (the SDK types a run's output as a list or a dict)."""
    assert isinstance(out, dict), out
    return out


# --- system -------------------------------------------------------------------------------
def test_ok_info_and_openapi(dev_server: ServerProcess) -> None:
    assert httpx.get(f"{dev_server.url}/ok").json() == {"ok": True}
    info = httpx.get(f"{dev_server.url}/info").json()
    assert info["server"] == "treadle" and "chain" in info["graphs"]
    spec = httpx.get(f"{dev_server.url}/openapi.json").json()
    for path in ("/assistants/search", "/threads/{thread_id}/runs/stream", "/runs/wait",
                 "/store/items", "/runs/crons"):
        assert path in spec["paths"], path


# --- assistants ---------------------------------------------------------------------------
async def test_default_assistants_and_crud(client: LangGraphClient) -> None:
    found = await client.assistants.search(graph_id="chain")
    assert [a["graph_id"] for a in found] == ["chain"]
    default = found[0]
    assert (await client.assistants.get(default["assistant_id"]))["name"] == "chain"
    assert (await client.assistants.get("chain"))["assistant_id"] == default["assistant_id"]

    a = await client.assistants.create("chain", config={"configurable": {"k": 1}},
                                       metadata={"team": "a"}, name="mine")
    assert a["version"] == 1 and a["name"] == "mine"
    with pytest.raises(ConflictError):
        await client.assistants.create("chain", assistant_id=a["assistant_id"])
    same = await client.assistants.create("chain", assistant_id=a["assistant_id"],
                                          if_exists="do_nothing")
    assert same["assistant_id"] == a["assistant_id"]
    b = await client.assistants.update(a["assistant_id"], metadata={"tier": "gold"})
    assert b["version"] == 2 and b["metadata"] == {"team": "a", "tier": "gold"}
    versions = await client.assistants.get_versions(a["assistant_id"])
    assert [v["version"] for v in versions] == [2, 1]
    back = await client.assistants.set_latest(a["assistant_id"], 1)
    assert back["version"] == 1 and back["metadata"] == {"team": "a"}
    assert await client.assistants.count(metadata={"team": "a"}) == 1
    assert [x["assistant_id"] for x in await client.assistants.search(metadata={"team": "a"})] \
        == [a["assistant_id"]]
    graph = await client.assistants.get_graph(a["assistant_id"])
    assert {n["id"] for n in graph["nodes"]} >= {"s0", "s9"}
    schemas = await client.assistants.get_schemas(a["assistant_id"])
    input_schema = schemas["input_schema"]
    assert input_schema is not None and "n" in input_schema["properties"]
    subgraphs = await client.assistants.get_subgraphs("chat")
    assert "inner" in subgraphs
    await client.assistants.delete(a["assistant_id"])
    with pytest.raises(NotFoundError):
        await client.assistants.get(a["assistant_id"])


async def test_unknown_graph_is_404(client: LangGraphClient) -> None:
    with pytest.raises(NotFoundError):
        await client.assistants.create("no-such-graph")


# --- threads ------------------------------------------------------------------------------
async def test_thread_crud_copy_prune(client: LangGraphClient) -> None:
    tag = uuid.uuid4().hex
    t = await client.threads.create(metadata={"tag": tag})
    assert t["status"] == "idle" and t["metadata"] == {"tag": tag}
    assert (await client.threads.get(t["thread_id"]))["thread_id"] == t["thread_id"]
    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=t["thread_id"])
    t2 = await client.threads.update(t["thread_id"], metadata={"more": 1})
    assert t2["metadata"] == {"tag": tag, "more": 1}
    await client.runs.wait(t["thread_id"], "chain", input={"n": 0})
    assert [x["thread_id"] for x in await client.threads.search(metadata={"tag": tag})] \
        == [t["thread_id"]]
    assert await client.threads.count(metadata={"tag": tag}) == 1
    # The SDK annotates copy as returning None; it returns the API's answer, the new thread.
    copy = cast(Thread, await client.threads.copy(t["thread_id"]))
    assert (await client.threads.get_state(copy["thread_id"]))["values"] == {"n": 10}
    assert (await client.threads.prune([copy["thread_id"]]))["pruned_count"] == 1
    with pytest.raises(NotFoundError):
        await client.threads.get(copy["thread_id"])
    await client.threads.delete(t["thread_id"])
    with pytest.raises(NotFoundError):
        await client.threads.get(t["thread_id"])


async def test_state_history_and_update(client: LangGraphClient) -> None:
    t = await client.threads.create()
    out = await client.runs.wait(t["thread_id"], "chain", input={"n": 5})
    assert out == {"n": 15}
    thread = await client.threads.get(t["thread_id"])
    assert thread["status"] == "idle" and thread["values"] == {"n": 15}
    state = await client.threads.get_state(t["thread_id"])
    assert state["values"] == {"n": 15} and state["next"] == []
    history = await client.threads.get_history(t["thread_id"], limit=100)
    assert history[0]["values"] == {"n": 15} and len(history) == 12
    mid = history[5]
    at = await client.threads.get_state(t["thread_id"], checkpoint_id=mid["checkpoint"]["checkpoint_id"])
    assert at["values"] == mid["values"]
    upd = await client.threads.update_state(t["thread_id"], {"n": 100}, as_node="s9")
    assert upd["checkpoint"]["checkpoint_id"]
    assert (await client.threads.get_state(t["thread_id"]))["values"] == {"n": 100}
    assert (await client.threads.get(t["thread_id"]))["values"] == {"n": 100}


# --- runs ---------------------------------------------------------------------------------
async def test_background_run_get_list_join_delete(client: LangGraphClient) -> None:
    t = await client.threads.create()
    run = await client.runs.create(t["thread_id"], "chain", input={"n": 1},
                                   metadata={"why": "test"})
    assert run["status"] in ("pending", "running") and run["thread_id"] == t["thread_id"]
    assert await client.runs.join(t["thread_id"], run["run_id"]) == {"n": 11}
    got = await client.runs.get(t["thread_id"], run["run_id"])
    assert got["metadata"] is not None
    assert got["status"] == "success" and got["metadata"]["why"] == "test"
    listed = await client.runs.list(t["thread_id"])
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    await client.runs.delete(t["thread_id"], run["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(t["thread_id"], run["run_id"])


async def test_stream_values_updates_and_metadata_first(client: LangGraphClient) -> None:
    t = await client.threads.create()
    parts = [p async for p in client.runs.stream(t["thread_id"], "chain", input={"n": 0},
                                                 stream_mode=["values", "updates"])]
    assert parts[0].event == "metadata" and "run_id" in parts[0].data
    values = [p.data for p in parts if p.event == "values"]
    updates = [p.data for p in parts if p.event == "updates"]
    assert values[0] == {"n": 0} and values[-1] == {"n": 10} and len(values) == 11
    assert updates == [{f"s{i}": {"n": i + 1}} for i in range(10)]


async def test_stream_events_mode(client: LangGraphClient) -> None:
    parts = [p async for p in client.runs.stream(None, "chain", input={"n": 0},
                                                 stream_mode=["events", "values"])]
    kinds = [p.data["event"] for p in parts if p.event == "events"]
    assert kinds[0] == "on_chain_start" and kinds[-1] == "on_chain_end"
    assert kinds.count("on_chain_start") >= 11  # the graph and its ten nodes
    assert [p.data for p in parts if p.event == "values"][-1] == {"n": 10}


async def test_stream_messages_custom_subgraphs_and_store(client: LangGraphClient) -> None:
    t = await client.threads.create()
    hi_there: dict[str, Any] = {"messages": [{"role": "user", "content": "hi there"}]}
    parts = [p async for p in client.runs.stream(
        t["thread_id"], "chat", input=hi_there,
        config={"configurable": {"user": "ann"}},
        stream_mode=["messages-tuple", "custom", "values", "tasks", "checkpoints", "debug"],
        stream_subgraphs=True)]
    events = {p.event.split("|")[0] for p in parts}
    assert {"metadata", "messages", "custom", "values", "tasks", "checkpoints", "debug"} <= events
    chunks = [p.data[0]["content"] for p in parts if p.event == "messages"]
    assert "".join(chunks).strip() == "echo: hi there"
    assert {"progress": "thinking"} in [p.data for p in parts if p.event == "custom"]
    sub = [p for p in parts if p.event.startswith("custom|")]
    assert sub and sub[0].data == {"inner": "hop"}
    item = await client.store.get_item(["memories", "ann"], "last")
    assert item["value"] == {"text": "hi there"}

    again: dict[str, Any] = {"messages": [{"role": "user", "content": "again"}]}
    parts = [p async for p in client.runs.stream(
        t["thread_id"], "chat", input=again,
        stream_mode="messages")]
    names = [p.event for p in parts]
    assert "messages/metadata" in names and "messages/partial" in names


async def test_stream_reconnect_with_last_event_id(client: LangGraphClient, dev_server: ServerProcess) -> None:
    t = await client.threads.create()
    run = await client.runs.create(t["thread_id"], "slow", input={"n": 0, "delay": 0.3},
                                   stream_mode=["values", "updates"])
    first: list[StreamPart] = []
    async for p in client.runs.join_stream(t["thread_id"], run["run_id"],
                                           stream_mode=["values", "updates"]):
        first.append(p)
        if len([x for x in first if x.event == "updates"]) == 1:
            break  # drop the connection mid-run
    last_id = first[-1].id
    assert last_id is not None
    rest = [p async for p in client.runs.join_stream(t["thread_id"], run["run_id"],
                                                     stream_mode=["values", "updates"],
                                                     last_event_id=last_id)]
    seqs = [int(p.id) for p in first + rest if p.id not in (None, "0")]
    assert seqs == sorted(set(seqs)), "an event was repeated or reordered"
    updates = [p.data for p in first + rest if p.event == "updates"]
    assert [list(u) for u in updates] == [["a"], ["b"], ["c"]]
    everything = [p async for p in client.runs.join_stream(t["thread_id"], run["run_id"],
                                                           stream_mode="updates",
                                                           last_event_id="0")]
    assert len([p for p in everything if p.event == "updates"]) == 3


async def test_on_disconnect_cancel_stops_the_run(client: LangGraphClient) -> None:
    t = await client.threads.create()
    stream = client.runs.stream(t["thread_id"], "slow", input={"n": 0, "delay": 1.0},
                                stream_mode="updates", on_disconnect="cancel")
    run_id = None
    async for part in stream:
        run_id = part.data["run_id"]  # the metadata event: drop the connection
        break
    assert isinstance(stream, AsyncGenerator)
    await stream.aclose()
    assert run_id is not None
    for _ in range(100):
        run = await client.runs.get(t["thread_id"], run_id)
        if run["status"] not in ("pending", "running"):
            break
        await asyncio.sleep(0.1)
    assert run["status"] == "interrupted"


async def test_stateless_runs_and_batch(client: LangGraphClient) -> None:
    assert await client.runs.wait(None, "chain", input={"n": 2}) == {"n": 12}
    parts = [p async for p in client.runs.stream(None, "chain", input={"n": 0})]
    assert parts[-1].data == {"n": 10}
    # The SDK's RunCreate marks every field required; the API needs only these two.
    batch = await client.runs.create_batch([
        cast(RunCreate, {"assistant_id": "chain", "input": {"n": i}}) for i in range(3)])
    assert len(batch) == 3
    for run in batch:
        for _ in range(200):
            got = await client.runs.get(run["thread_id"], run["run_id"])
            if got["status"] == "success":
                break
            await asyncio.sleep(0.05)
        assert got["status"] == "success"


async def test_cancel_and_cancel_many(client: LangGraphClient) -> None:
    t = await client.threads.create()
    run = await client.runs.create(t["thread_id"], "slow", input={"n": 0, "delay": 1.0})
    await asyncio.sleep(0.3)
    await client.runs.cancel(t["thread_id"], run["run_id"], wait=True)
    got = await client.runs.get(t["thread_id"], run["run_id"])
    assert got["status"] == "interrupted"
    t2 = await client.threads.create()
    r2 = await client.runs.create(t2["thread_id"], "slow", input={"n": 0, "delay": 1.0})
    await client.runs.cancel_many(thread_id=t2["thread_id"], run_ids=[r2["run_id"]])
    await client.runs.join(t2["thread_id"], r2["run_id"])
    assert (await client.runs.get(t2["thread_id"], r2["run_id"]))["status"] == "interrupted"


# --- human in the loop --------------------------------------------------------------------
async def test_interrupt_and_resume(client: LangGraphClient) -> None:
    t = await client.threads.create()
    out = _values(await client.runs.wait(t["thread_id"], "approval", input={"request": "post"}))
    assert out["__interrupt__"][0]["value"] == {"question": "approve post?"}
    thread = await client.threads.get(t["thread_id"])
    assert thread["status"] == "interrupted" and thread["interrupts"]
    state = await client.threads.get_state(t["thread_id"])
    assert state["next"] == ["review"] and state["interrupts"][0]["value"]["question"]
    out = _values(await client.runs.wait(t["thread_id"], "approval", command={"resume": "yes"}))
    assert out["decision"] == "yes" and out["log"][-1] == "published (yes)"
    assert (await client.threads.get(t["thread_id"]))["status"] == "idle"


async def test_interrupt_before_and_goto(client: LangGraphClient) -> None:
    t = await client.threads.create()
    await client.runs.wait(t["thread_id"], "chain", input={"n": 0}, interrupt_before=["s5"])
    state = await client.threads.get_state(t["thread_id"])
    assert state["values"] == {"n": 5} and state["next"] == ["s5"]
    assert await client.runs.wait(t["thread_id"], "chain", input=None) == {"n": 10}
    t2 = await client.threads.create()
    await client.runs.wait(t2["thread_id"], "chain", input={"n": 0}, interrupt_after=["s1"])
    assert (await client.threads.get_state(t2["thread_id"]))["next"] == ["s2"]
    t3 = await client.threads.create()
    assert await client.runs.wait(t3["thread_id"], "chain", input={"n": 0}) == {"n": 10}
    out = await client.runs.wait(t3["thread_id"], "chain", command={"goto": "s8",
                                                                    "update": {"n": 50}})
    assert out == {"n": 52}


# --- double texting -----------------------------------------------------------------------
async def test_multitask_reject_and_enqueue(client: LangGraphClient) -> None:
    t = await client.threads.create()
    first = await client.runs.create(t["thread_id"], "slow", input={"n": 0, "delay": 0.4})
    with pytest.raises(ConflictError):
        await client.runs.create(t["thread_id"], "slow", input={"n": 0, "delay": 0.1},
                                 multitask_strategy="reject")
    second = await client.runs.create(t["thread_id"], "slow", input={"n": 100, "delay": 0.05},
                                      multitask_strategy="enqueue")
    assert await client.runs.join(t["thread_id"], second["run_id"]) == {"n": 103, "delay": 0.05}
    assert (await client.runs.get(t["thread_id"], first["run_id"]))["status"] == "success"
    assert len(await client.runs.list(t["thread_id"])) == 2


async def test_multitask_interrupt_and_rollback(client: LangGraphClient) -> None:
    t = await client.threads.create()
    first = await client.runs.create(t["thread_id"], "slow", input={"n": 0, "delay": 1.0})
    await asyncio.sleep(0.3)
    second = await client.runs.create(t["thread_id"], "slow", input={"n": 10, "delay": 0.01},
                                      multitask_strategy="interrupt")
    await client.runs.join(t["thread_id"], second["run_id"])
    assert (await client.runs.get(t["thread_id"], first["run_id"]))["status"] == "interrupted"
    t2 = await client.threads.create()
    first = await client.runs.create(t2["thread_id"], "slow", input={"n": 0, "delay": 1.0})
    await asyncio.sleep(0.3)
    second = await client.runs.create(t2["thread_id"], "slow", input={"n": 10, "delay": 0.01},
                                      multitask_strategy="rollback")
    assert await client.runs.join(t2["thread_id"], second["run_id"]) == {"n": 13, "delay": 0.01}
    history = await client.threads.get_history(t2["thread_id"], limit=100)
    assert all(h["metadata"] is not None and h["metadata"].get("run_id") != first["run_id"]
               for h in history)


# --- crons --------------------------------------------------------------------------------
async def test_crons_fire_and_crud(client: LangGraphClient) -> None:
    t = await client.threads.create()
    # The SDK annotates create_for_thread as returning a Run; the API answers with the cron.
    cron = cast(Cron, await client.crons.create_for_thread(t["thread_id"], "chain",
                                                           schedule="* * * * *", input={"n": 0}))
    assert cron["thread_id"] == t["thread_id"] and cron["next_run_date"]
    found = await client.crons.search(thread_id=t["thread_id"])
    assert [c["cron_id"] for c in found] == [cron["cron_id"]]
    assert await client.crons.count(thread_id=t["thread_id"]) == 1
    updated = await client.crons.update(cron["cron_id"], schedule="*/5 * * * *")
    assert updated["schedule"] == "*/5 * * * *"
    await client.crons.delete(cron["cron_id"])
    assert await client.crons.count(thread_id=t["thread_id"]) == 0
    with pytest.raises(NotFoundError):
        await client.crons.delete(cron["cron_id"])


# --- bad input ----------------------------------------------------------------------------
def test_bad_input_is_4xx_and_writes_nothing(dev_server: ServerProcess) -> None:
    url = dev_server.url
    before = httpx.post(f"{url}/threads/count", json={}).json()
    r = httpx.post(f"{url}/threads", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = httpx.post(f"{url}/threads", json={"metadata": "not-an-object"})
    assert r.status_code == 422 and "metadata" in r.text
    r = httpx.post(f"{url}/threads/search", json={"limit": -1})
    assert r.status_code == 422 and "limit" in r.text
    r = httpx.post(f"{url}/threads/{uuid.uuid4()}/runs", json={"assistant_id": "chain"})
    assert r.status_code == 404
    r = httpx.post(f"{url}/runs/wait", json={"assistant_id": "nope"})
    assert r.status_code == 404
    r = httpx.post(f"{url}/threads", content=b"{" + b" " * (11 * 1024 * 1024) + b"}",
                   headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert httpx.post(f"{url}/threads/count", json={}).json() == before


# --- the sync client ----------------------------------------------------------------------
def test_sync_client(dev_server: ServerProcess) -> None:
    client = get_sync_client(url=dev_server.url)
    t = client.threads.create()
    assert client.runs.wait(t["thread_id"], "chain", input={"n": 3}) == {"n": 13}
    parts = list(client.runs.stream(t["thread_id"], "chain", input={"n": 0},
                                    stream_mode="updates"))
    assert [p.event for p in parts][:2] == ["metadata", "updates"]
    client.store.put_item(["sync"], "k", {"v": 1})
    assert client.store.get_item(["sync"], "k")["value"] == {"v": 1}
    assert client.assistants.search(graph_id="fanout")[0]["graph_id"] == "fanout"
    items: dict[str, Any] = {"items": [1, 2, 3]}
    assert _values(client.runs.wait(None, "fanout", input=items))["results"] == [2, 4, 6]


def test_langgraph_json_env_and_factory(dev_server: ServerProcess) -> None:
    client = get_sync_client(url=dev_server.url)
    assert _values(client.runs.wait(None, "env", input={}))["value"] == "from-langgraph-json"
    assert client.runs.wait(None, "factory", input={"n": 1}) == {"n": 11}
    # the factory is called per run with the run's config, as LangGraph Platform does
    assert client.runs.wait(None, "factory", input={"n": 1},
                            config={"configurable": {"length": 3}}) == {"n": 4}


def test_webhook_is_called_on_run_end(dev_server: ServerProcess) -> None:
    import http.server
    import json
    import threading

    received: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(json.loads(body))
            self.send_response(500 if len(received) == 1 else 200)  # first attempt fails
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        client = get_sync_client(url=dev_server.url)
        t = client.threads.create()
        run = client.runs.create(t["thread_id"], "chain", input={"n": 0},
                                 webhook=f"http://127.0.0.1:{srv.server_port}/hook")
        deadline = time.monotonic() + 30
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(received) == 2, "the failed delivery was not retried"
        assert received[1]["run_id"] == run["run_id"] and received[1]["status"] == "success"
        assert received[1]["values"] == {"n": 10}
    finally:
        srv.shutdown()


def test_dev_refuses_a_graph_that_cannot_load_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from processes import subprocess_env

    config = tmp_path / "langgraph.json"
    config.write_text('{"graphs": {"agent": "./missing.py:graph"}}')
    for args in (["--config", str(config)], ["--config", str(tmp_path / "nope.json")]):
        r = subprocess.run([sys.executable, "-m", "treadle", "dev", *args, "--port", "0",
                            "--store", f"sqlite:///{tmp_path / 'x.db'}"],
                           capture_output=True, text=True, timeout=60, env=subprocess_env())
        assert r.returncode == 1, r.stderr
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "missing.py" in subprocess.run(
        [sys.executable, "-m", "treadle", "dev", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True, timeout=60, env=subprocess_env()).stderr


def test_quiet_streams_carry_heartbeats(start_server: StartServer) -> None:
    server = start_server(env={"TREADLE_SSE_HEARTBEAT": "0.2"})
    body = {"assistant_id": "slow", "input": {"n": 0, "delay": 1.0}, "stream_mode": "updates"}
    comments = 0
    with httpx.stream("POST", f"{server.url}/runs/stream", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith(":"):
                comments += 1
    assert comments >= 3  # a 3 s run with nothing but an update a second
