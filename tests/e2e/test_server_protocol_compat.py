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
ASK = [{"role": "user", "content": "find treadle"}]


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
