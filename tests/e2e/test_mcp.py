"""``POST /mcp`` through a real `treadle dev` and the official ``mcp`` client: every assistant
is a tool, a call runs it and answers its output, bad arguments, failed runs and unknown
tools are error results (the server goes on), auth decides which tools a user sees and may
call, and langgraph.json's ``http.disable_mcp`` / ``http.disable_a2a`` remove the routes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from processes import ServerProcess, running_server

pytestmark = pytest.mark.timeout(180)

AGENT_GRAPHS = Path(__file__).resolve().parent / "agent_graphs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("mcp"), AGENT_GRAPHS / "langgraph.json",
                        TREADLE_LEASE_TTL="3") as s:
        yield s


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("mcp-auth"),
                        AGENT_GRAPHS / "langgraph_auth.json", TREADLE_LEASE_TTL="3") as s:
        yield s


async def _tools(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(headers=headers, timeout=60) as http, \
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, _), \
            ClientSession(read, write) as session:
        await session.initialize()
        return {t.name: t for t in (await session.list_tools()).tools}


async def _call(url: str, name: str, arguments: dict[str, Any],
                headers: dict[str, str] | None = None) -> Any:
    async with httpx.AsyncClient(headers=headers, timeout=60) as http, \
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, _), \
            ClientSession(read, write) as session:
        await session.initialize()
        return await session.call_tool(name, arguments)


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def test_every_assistant_is_a_tool_with_the_graphs_input_schema(server: ServerProcess) -> None:
    tools = await _tools(server.url)
    assert set(tools) == {"echo", "questions", "broken", "asks"}
    assert tools["echo"].description == "Echoes the last message"  # langgraph.json's
    schema = tools["questions"].inputSchema
    assert schema["type"] == "object" and schema["required"] == ["question"]
    assert schema["properties"]["question"]["type"] == "string"
    assert "messages" in tools["echo"].inputSchema["properties"]
    defaults = await get_client(url=server.url).assistants.search(graph_id="questions")
    assert tools["questions"].meta == {"assistant_id": defaults[0]["assistant_id"],
                                       "graph_id": "questions"}


async def test_a_call_runs_the_assistant_and_answers_its_output(server: ServerProcess) -> None:
    result = await _call(server.url, "questions", {"question": "why"})
    assert not result.isError
    assert result.structuredContent == {"answer": "WHY"}
    assert json.loads(_text(result)) == {"answer": "WHY"}
    chat = await _call(server.url, "echo", {"messages": [{"type": "human", "content": "hi"}]})
    assert not chat.isError
    assert chat.structuredContent["messages"][-1]["content"] == "echo: hi (1 seen)"


async def test_answers_are_json_and_there_is_no_session(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        listed = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
                                 headers={"Accept": "application/json, text/event-stream"})
        stream = await http.get("/mcp", headers={"Accept": "text/event-stream"})
    assert listed.status_code == 200
    assert listed.headers["content-type"].startswith("application/json")
    assert "mcp-session-id" not in listed.headers
    assert listed.json()["id"] == 7 and listed.json()["result"]["tools"]
    assert stream.status_code == 405  # no GET event stream (stateless)


async def test_a_call_is_a_stateless_run(server: ServerProcess) -> None:
    client = get_client(url=server.url)
    before = await client.threads.count()
    assert not (await _call(server.url, "questions", {"question": "x"})).isError
    assert await client.threads.count() == before  # its thread went with it


@pytest.mark.parametrize(("name", "arguments", "says"), [
    ("questions", {"question": 5}, "Input validation error"),
    ("questions", {}, "'question' is a required property"),
    ("echo", {"messages": "not a list"}, "Input validation error"),
    ("broken", {"question": "x"}, "the run failed: ValueError: cannot answer 'x'"),
    ("nope", {}, "unknown tool 'nope'"),
])
async def test_bad_calls_are_error_results(server: ServerProcess, name: str,
                                     arguments: dict[str, Any], says: str) -> None:
    result = await _call(server.url, name, arguments)
    assert result.isError, result
    assert says in _text(result)
    # and the server goes on
    again = await _call(server.url, "questions", {"question": "ok"})
    assert again.structuredContent == {"answer": "OK"}


async def test_created_assistants_are_tools_too(server: ServerProcess) -> None:
    client = get_client(url=server.url)
    first = await client.assistants.create("questions", name="My Bot",
                                           description="asks nothing")
    second = await client.assistants.create("questions", name="My Bot")
    tools = await _tools(server.url)
    assert tools["My_Bot"].meta["assistant_id"] == first["assistant_id"]
    assert tools["My_Bot"].description == "asks nothing"
    assert tools[f"My_Bot-{second['assistant_id']}"].meta["assistant_id"] == \
        second["assistant_id"]
    result = await _call(server.url, f"My_Bot-{second['assistant_id']}", {"question": "b"})
    assert result.structuredContent == {"answer": "B"}


# --- auth --------------------------------------------------------------------------------

ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}


async def test_unauthenticated_calls_are_refused(auth_server: ServerProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    assert httpx.post(f"{auth_server.url}/mcp", json=body, headers=headers).status_code == 401
    wrong = {**headers, "Authorization": "Bearer nobody"}
    assert httpx.post(f"{auth_server.url}/mcp", json=body, headers=wrong).status_code == 401
    with pytest.raises(BaseException) as refused:  # the client's error (in a group) for a 401
        await _tools(auth_server.url)
    assert "401 Unauthorized" in repr(refused.value.exceptions if isinstance(
        refused.value, BaseExceptionGroup) else refused.value)


async def test_a_user_sees_and_calls_only_the_assistants_they_may_read(
        auth_server: ServerProcess) -> None:
    alice = get_client(url=auth_server.url, headers=ALICE)
    mine = await alice.assistants.create("questions", name="alice-bot")
    assert "alice-bot" in await _tools(auth_server.url, ALICE)
    bobs = await _tools(auth_server.url, BOB)
    assert "alice-bot" not in bobs and {"echo", "questions"} <= set(bobs)
    assert mine["assistant_id"] not in json.dumps([t.meta for t in bobs.values()])
    refused = await _call(auth_server.url, "alice-bot", {"question": "q"}, BOB)
    assert refused.isError and "unknown tool 'alice-bot'" in _text(refused)
    ok = await _call(auth_server.url, "alice-bot", {"question": "q"}, ALICE)
    assert ok.structuredContent == {"answer": "Q"}
    # a call is a run as the caller: its thread was made (and deleted) as the caller's
    bobs_call = await _call(auth_server.url, "questions", {"question": "b"}, BOB)
    assert bobs_call.structuredContent == {"answer": "B"}


# --- langgraph.json's switches ------------------------------------------------------------

def test_disable_mcp_and_disable_a2a_remove_the_routes(tmp_path: Path) -> None:
    with running_server(tmp_path, AGENT_GRAPHS / "langgraph_disabled.json") as server:
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            accept = {"Accept": "application/json, text/event-stream"}
            assert http.post("/mcp", json=rpc, headers=accept).status_code == 404
            assert http.post("/a2a/echo", json=rpc).status_code == 404
            assert http.get("/.well-known/agent-card.json",
                            params={"assistant_id": "echo"}).status_code == 404
            assert http.post("/assistants/search", json={}).status_code == 200  # the rest stays
            assert "/mcp" not in http.get("/openapi.json").json()["paths"]


def _readme_mcp_example() -> str:
    """README's "MCP, A2A and your own routes" example (its Python)."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("**MCP, A2A and your own routes.**"):]
    code = section[section.index("```python\n") + 10:]
    return code[:code.index("```")]


async def test_the_readme_mcp_example_runs_the_examples_graph(tmp_path: Path) -> None:
    import textwrap

    examples = Path(__file__).resolve().parents[2] / "examples" / "langgraph.json"
    with running_server(tmp_path, examples) as server:
        code = _readme_mcp_example().replace("http://127.0.0.1:8123", server.url)
        scope: dict[str, Any] = {}
        exec("async def example():\n" + textwrap.indent(code, "    ")  # noqa: S102
             + "\n    return tools, result", scope)
        tools, result = await scope["example"]()
    assert [t.name for t in tools] == ["pipeline"]
    assert not result.isError, result
    assert isinstance(result.structuredContent, dict) and result.structuredContent
