"""Streaming and resuming as LangGraph Platform does them, through the official
``langgraph-sdk`` and LangGraph's ``RemoteGraph``, against a real ``treadle dev`` serving
tests/e2e/graphs/protocol.py: the v3 ``messages`` channel carries chat-model tokens only,
stream mode ``tools`` reaches LangGraph, and input given to a thread stopped at an
interrupt resumes it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.pregel.remote import RemoteGraph
from langgraph.types import Command
from langgraph_sdk import get_client, get_sync_client

from processes import ServerProcess, subprocess_env

pytestmark = pytest.mark.timeout(120)

CONFIG = Path(__file__).resolve().parent / "graphs" / "protocol.json"
ASK: Any = [{"role": "user", "content": "find treadle"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("protocol-server")
    proc = ServerProcess("dev", f"sqlite:///{tmp / 'dev.db'}", tmp / "server.log", [],
                         subprocess_env(TREADLE_LEASE_TTL="3"), CONFIG)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop(timeout=10)


async def _within(awaitable: Any, seconds: float = 30) -> Any:
    return await asyncio.wait_for(awaitable, seconds)


async def _collect(source: Any) -> list[Any]:
    return [item async for item in source]


# --- the v3 messages channel: chat-model output only ----------------------------------------------
async def test_v3_messages_are_chat_model_tokens_not_state(server: ServerProcess) -> None:
    client = get_client(url=server.url)
    async with client.threads.stream(assistant_id="agent") as thread:
        await thread.run.start(input={"messages": ASK})
        events = await _within(_collect(thread.subscribe(["messages"])))
        final = await _within(thread.output)
    datas = [e["params"]["data"] for e in events]
    # Two messages: the streaming model's reply token by token, then the other model's
    # whole answer. The AI message the `plan` node wrote itself, the tool's result and the
    # user's message are state, not model output.
    block = ["content-block-start", "content-block-delta", "content-block-finish"]
    assert [d["event"] for d in datas] == [
        "message-start", "content-block-start", *["content-block-delta"] * 5,
        "content-block-finish", "message-finish", "message-start", *block, "message-finish"]
    starts = [d for d in datas if d["event"] == "message-start"]
    assert [(d["role"], d["metadata"]) for d in starts] == [
        ("ai", {"langgraph_node": "model"}), ("ai", {"langgraph_node": "answer"})]
    deltas = [d["delta"]["text"] for d in datas if d["event"] == "content-block-delta"]
    assert deltas == ["let", " ", "me", " ", "look", "all done"]
    finished = [d["content"] for d in datas if d["event"] == "content-block-finish"]
    assert finished == [{"type": "text", "text": "let me look"}, {"type": "text", "text": "all done"}]
    assert {d.get("message_id") for d in datas[1:9]} == {starts[0]["id"]}
    # ...while the state holds all of them.
    assert [m["content"] for m in final["messages"]] == [
        "find treadle", "let me look", "calling lookup", "found treadle", "all done"]

    async with client.threads.stream(assistant_id="agent") as thread:
        await thread.run.start(input={"messages": ASK})
        streams = await _within(_collect(thread.messages))
        assert [s.node for s in streams] == ["model", "answer"]
        assert [t async for t in streams[0].text] == ["let", " ", "me", " ", "look"]
        assert (await streams[1].output).text == "all done"


# --- stream mode "tools" ----------------------------------------------------------------------
def _tool_events(datas: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["event"], d["tool_call_id"]) for d in datas]


def test_runs_stream_tools_mode_streams_the_tool_calls(server: ServerProcess) -> None:
    client = get_sync_client(url=server.url)
    parts = list(client.runs.stream(None, "agent", input={"messages": ASK},
                                    stream_mode=["tools", "updates"]))
    tools = [p.data for p in parts if p.event == "tools"]
    assert _tool_events(tools) == [("tool-started", "call-1"), ("tool-finished", "call-1")]
    assert tools[0]["tool_name"] == "lookup" and tools[0]["input"] == {"query": "treadle"}
    assert "found treadle" in str(tools[1]["output"])
    # Without the mode, no tools events.
    parts = list(client.runs.stream(None, "agent", input={"messages": ASK}, stream_mode="updates"))
    assert [p for p in parts if p.event == "tools"] == []


async def test_v3_tools_channel_carries_the_tool_calls(server: ServerProcess) -> None:
    client = get_client(url=server.url)
    async with client.threads.stream(assistant_id="agent") as thread:
        await thread.run.start(input={"messages": ASK})
        events = await _within(_collect(thread.subscribe(["tools"])))
    datas = [e["params"]["data"] for e in events]
    assert _tool_events(datas) == [("tool-started", "call-1"), ("tool-finished", "call-1")]
    assert datas[0]["tool_name"] == "lookup"


# --- run.start on a thread stopped at an interrupt --------------------------------------------
async def test_v3_run_start_with_input_resumes_an_interrupted_thread(server: ServerProcess) -> None:
    client = get_client(url=server.url)
    async with client.threads.stream(assistant_id="review") as thread:
        await thread.run.start(input={"draft": "d1"})
        await _within(_collect(thread.values))  # ends at the interrupt
        assert thread.interrupted
        await thread.run.start(input="approved")  # plain input: the answer to the interrupt
        final = await _within(thread.output)
    assert final == {"draft": "d1", "verdict": "approved"}
    state: Any = await client.threads.get_state(thread.thread_id)
    assert state["next"] == [] and state["values"]["verdict"] == "approved"


async def test_v3_run_start_waits_for_the_interrupted_run_to_end(server: ServerProcess) -> None:
    # The second run.start comes before the first run has even started: it must decide
    # once that run has recorded its end, so the input answers the interrupt.
    client = get_client(url=server.url)
    async with client.threads.stream(assistant_id="review") as thread:
        first = await thread.run.start(input={"draft": "d2"})
        second = await thread.run.start(input={"ok": True})
        final = await _within(thread.output)
    assert final == {"draft": "d2", "verdict": {"ok": True}}
    runs = {r["run_id"]: r for r in await client.runs.list(thread.thread_id)}
    assert runs[first["run_id"]]["status"] == "interrupted"
    assert runs[second["run_id"]]["status"] == "success"


async def test_v3_run_start_on_a_thread_not_interrupted_is_new_input(server: ServerProcess) -> None:
    client = get_client(url=server.url)
    async with client.threads.stream(assistant_id="review") as thread:
        await thread.run.start(input={"draft": "d3"})
        await _within(_collect(thread.values))
        await thread.run.start(input="yes")
        await _within(thread.output)
        # Answered: the thread is idle, so new input starts the graph over (and asks again).
        await thread.run.start(input={"draft": "d4"})
        await _within(_collect(thread.values))
        assert thread.interrupted
        [asked] = thread.interrupts
        assert asked["value"] == {"draft": "d4"}
    state = await client.threads.get_state(thread.thread_id)
    assert state["values"] == {"draft": "d4", "verdict": "yes"} and state["next"] == ["ask"]


@pytest.mark.parametrize("answer", [Command(resume="lgtm"), "lgtm"])
def test_remote_graph_v3_resumes_with_the_answer(server: ServerProcess, answer: Any) -> None:
    remote = RemoteGraph("review", url=server.url)
    tid = get_sync_client(url=server.url).threads.create()["thread_id"]
    config: Any = {"configurable": {"thread_id": tid}}
    with remote.stream_events({"draft": "d5"}, config, version="v3") as run:
        # Drained once the run stops at the interrupt (the sync SDK's values projection may
        # end before the run's last values event arrives: only its end is relied on here).
        for _snapshot in run.values:
            pass
        assert run.interrupted
        assert [i["value"] for i in run.interrupts] == [{"draft": "d5"}]
    with remote.stream_events(answer, config, version="v3") as run:
        assert run.output == {"draft": "d5", "verdict": "lgtm"}
    assert remote.get_state(config).values == {"draft": "d5", "verdict": "lgtm"}


async def test_remote_graph_v3_async_resumes_with_the_answer(server: ServerProcess) -> None:
    remote = RemoteGraph("review", url=server.url)
    config: Any = {"configurable": {"thread_id": (
        await get_client(url=server.url).threads.create())["thread_id"]}}
    async with await remote.astream_events({"draft": "d6"}, config, version="v3") as run:
        await _within(_collect(run.values))  # ends at the interrupt
        assert await run.interrupted()
    async with await remote.astream_events(Command(resume="fine"), config, version="v3") as run:
        assert await _within(run.output()) == {"draft": "d6", "verdict": "fine"}


def test_remote_graph_invoke_resumes_with_a_command(server: ServerProcess) -> None:
    # RemoteGraph.invoke / stream use the run API: a Command travels as the run's `command`
    # (plain input there is new input, as on LangGraph Platform).
    remote = RemoteGraph("review", url=server.url)
    tid = get_sync_client(url=server.url).threads.create()["thread_id"]
    config: Any = {"configurable": {"thread_id": tid}}
    stopped = remote.invoke({"draft": "d7"}, config)
    assert stopped["draft"] == "d7"
    assert [i["value"] for i in stopped["__interrupt__"]] == [{"draft": "d7"}]
    assert remote.invoke(Command(resume="ship it"), config) == {"draft": "d7", "verdict": "ship it"}
    assert remote.get_state(config).next == ()
