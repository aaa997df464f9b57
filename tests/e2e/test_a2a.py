"""``/a2a/{assistant_id}`` and the agent card through a real `treadle dev` and the official
``a2a-sdk`` client: message/send answers a completed task with the agent's reply,
message/stream its events, tasks/get the task, a ``contextId`` is a thread whose state the
next message sees, JSON-RPC mistakes are JSON-RPC errors, and auth decides whose assistants
and tasks a user reaches."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    AgentCard,
    DataPart,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskQueryParams,
    TaskStatusUpdateEvent,
    TextPart,
)
from langgraph_sdk import get_client

from processes import ServerProcess, running_server

pytestmark = pytest.mark.timeout(180)

AGENT_GRAPHS = Path(__file__).resolve().parent / "agent_graphs"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("a2a"), AGENT_GRAPHS / "langgraph.json",
                        TREADLE_LEASE_TTL="3") as s:
        yield s


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("a2a-auth"),
                        AGENT_GRAPHS / "langgraph_auth.json", TREADLE_LEASE_TTL="3") as s:
        yield s


async def _card(http: httpx.AsyncClient, url: str, assistant: str) -> AgentCard:
    resolver = A2ACardResolver(http, url,
                               agent_card_path=f"/.well-known/agent-card.json?assistant_id={assistant}")
    return await resolver.get_agent_card()


def _message(text: str, context_id: str | None = None, **extra: Any) -> Message:
    return Message(role=Role.user, parts=[Part(root=TextPart(text=text))],
                   message_id=str(uuid.uuid4()), context_id=context_id, **extra)


async def _send(url: str, assistant: str, message: Message, *, streaming: bool = False,
                headers: dict[str, str] | None = None) -> list[Any]:
    """Every event the client yields for ``message``."""
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        card = await _card(http, url, assistant)
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)
        return [event async for event in client.send_message(message)]


def _final(events: list[Any]) -> Task:
    last = events[-1]
    task = last[0] if isinstance(last, tuple) else last
    assert isinstance(task, Task), last
    return task


def _reply(task: Task) -> str:
    assert task.status.message is not None, task
    part = task.status.message.parts[0].root
    assert isinstance(part, TextPart), part
    return part.text


async def _rpc(url: str, assistant: str, body: Any,
               headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        return await http.post(f"{url}/a2a/{assistant}", json=body)


def _send_body(text: str, **config: Any) -> dict[str, Any]:
    message = {"role": "user", "parts": [{"kind": "text", "text": text}],
               "messageId": str(uuid.uuid4()), "kind": "message"}
    return {"jsonrpc": "2.0", "id": "1", "method": "message/send",
            "params": {"message": message, **({"configuration": config} if config else {})}}


async def test_the_agent_card_describes_the_assistant(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        card = await _card(http, server.url, "echo")
        missing = await http.get(f"{server.url}/.well-known/agent-card.json",
                                 params={"assistant_id": "nope"})
    default = (await get_client(url=server.url).assistants.search(graph_id="echo"))[0]
    assert card.name == "echo" and card.description == "Echoes the last message"
    assert card.url == f"{server.url}/a2a/{default['assistant_id']}"
    assert card.capabilities.streaming is True and card.protocol_version == "0.3.0"
    assert [s.id for s in card.skills] == ["echo-main"]
    assert missing.status_code == 404


async def test_send_answers_a_completed_task_with_the_reply(server: ServerProcess) -> None:
    task = _final(await _send(server.url, "echo", _message("hello")))
    assert task.status.state.value == "completed"
    assert _reply(task) == "echo: hello (1 seen)"
    assert task.artifacts is not None
    assert task.artifacts[0].parts[0].root == TextPart(text="echo: hello (1 seen)")
    assert task.history is not None and [m.role for m in task.history] == [Role.user, Role.agent]
    run = await get_client(url=server.url).runs.get(task.context_id, task.id)  # a run, a thread
    assert run["status"] == "success"


async def test_stream_sends_the_task_then_its_updates(server: ServerProcess) -> None:
    events = await _send(server.url, "echo", _message("streamed"), streaming=True)
    first = events[0]
    assert isinstance(first, tuple) and first[1] is None  # the task itself comes first
    updates = [e[1] for e in events[1:]]
    statuses = [u for u in updates if isinstance(u, TaskStatusUpdateEvent)]
    artifacts = [u for u in updates if isinstance(u, TaskArtifactUpdateEvent)]
    assert statuses[0].status.state.value == "working"
    assert any(u.status.message is not None and _texts(u.status.message) == "echo: streamed (1 seen)"
               for u in statuses[:-1])  # the reply as the graph wrote it
    assert statuses[-1].final and statuses[-1].status.state.value == "completed"
    assert [a.artifact.parts[0].root for a in artifacts] == [TextPart(text="echo: streamed (1 seen)")]
    assert _reply(_final(events)) == "echo: streamed (1 seen)"


async def test_the_stream_on_the_wire(server: ServerProcess) -> None:
    body = _send_body("raw")
    body["method"] = "message/stream"
    frames = []
    async with httpx.AsyncClient(timeout=60) as http, http.stream(
            "POST", f"{server.url}/a2a/echo", json=body,
            headers={"Accept": "text/event-stream"}) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        async for line in answer.aiter_lines():
            if line.startswith("data:"):
                frames.append(json.loads(line.removeprefix("data:")))
    assert all(f["jsonrpc"] == "2.0" and f["id"] == "1" for f in frames)
    results = [f["result"] for f in frames]
    assert results[0]["kind"] == "task" and results[0]["status"]["state"] == "submitted"
    assert [r["kind"] for r in results[1:]][-2:] == ["artifact-update", "status-update"]
    assert results[1]["status"]["state"] == "working" and not results[1]["final"]
    assert results[-1]["final"] and results[-1]["status"]["state"] == "completed"
    assert {r["taskId"] for r in results[1:]} == {results[0]["id"]}


def _texts(message: Message) -> str:
    return "".join(p.root.text for p in message.parts if isinstance(p.root, TextPart))


async def test_tasks_get_answers_the_task(server: ServerProcess) -> None:
    queued = (await _rpc(server.url, "echo", _send_body("later", blocking=False))).json()
    task_id = queued["result"]["id"]
    assert queued["result"]["status"]["state"] in ("submitted", "working", "completed")
    async with httpx.AsyncClient(timeout=60) as http:
        card = await _card(http, server.url, "echo")
        client = ClientFactory(ClientConfig(httpx_client=http)).create(card)
        for _ in range(600):
            task = await client.get_task(TaskQueryParams(id=task_id))
            if task.status.state.value == "completed":
                break
            await asyncio.sleep(0.05)
        assert _reply(task) == "echo: later (1 seen)"
        assert task.context_id == queued["result"]["contextId"]
        short = await client.get_task(TaskQueryParams(id=task_id, history_length=1))
        assert short.history is not None and [m.role for m in short.history] == [Role.agent]


async def test_a_context_is_a_thread_the_next_message_sees(server: ServerProcess) -> None:
    first = _final(await _send(server.url, "echo", _message("one")))
    second = _final(await _send(server.url, "echo", _message("two", first.context_id,
                                                             task_id=first.id)))
    assert second.context_id == first.context_id and second.id != first.id
    assert _reply(second) == "echo: two (3 seen)"  # one, its reply, two
    state = await get_client(url=server.url).threads.get_state(first.context_id)
    values = cast(dict[str, Any], state["values"])
    assert [m["content"] for m in values["messages"]] == [
        "one", "echo: one (1 seen)", "two", "echo: two (3 seen)"]
    chosen = str(uuid.uuid4())  # a context the client names is a new thread
    third = _final(await _send(server.url, "echo", _message("three", chosen), streaming=True))
    assert third.context_id == chosen and _reply(third) == "echo: three (1 seen)"


async def test_data_parts_are_input_keys(server: ServerProcess) -> None:
    message = Message(role=Role.user, parts=[Part(root=DataPart(data={"question": "why"}))],
                      message_id=str(uuid.uuid4()))
    task = _final(await _send(server.url, "questions", message))
    assert task.status.message is not None
    assert task.status.message.parts[0].root == DataPart(data={"answer": "WHY"})


async def test_a_failed_run_is_a_failed_task(server: ServerProcess) -> None:
    message = Message(role=Role.user, parts=[Part(root=DataPart(data={"question": "x"}))],
                      message_id=str(uuid.uuid4()))
    task = _final(await _send(server.url, "broken", message))
    assert task.status.state.value == "failed"
    assert "cannot answer 'x'" in _reply(task)


async def test_a_paused_run_is_an_input_required_task(server: ServerProcess) -> None:
    task = _final(await _send(server.url, "asks", _message("may I?")))
    assert task.status.state.value == "input-required"
    state = await get_client(url=server.url).threads.get_state(task.context_id)
    assert state["next"] == ["ask"]  # the thread waits for its answer


@pytest.mark.parametrize(("body", "code"), [
    ({"jsonrpc": "2.0", "id": 1, "method": "agents/dance", "params": {}}, -32601),
    ({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"nope": 1}}, -32602),
    ({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "missing"}}, -32001),
    ({"jsonrpc": "2.0", "id": 1, "method": "tasks/cancel", "params": {"id": "x"}}, -32004),
    ({"jsonrpc": "2.0", "id": 1, "method": 5}, -32600),
    ({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
        "role": "user", "messageId": "m", "kind": "message",
        "parts": [{"kind": "file", "file": {"uri": "https://example.com/a.txt"}}]}}}, -32602),
])
async def test_mistakes_are_json_rpc_errors(server: ServerProcess, body: Any, code: int) -> None:
    answer = await _rpc(server.url, "echo", body)
    assert answer.status_code == 200
    assert answer.json()["error"]["code"] == code, answer.json()
    assert answer.json()["id"] == body["id"]


async def test_a_refused_stream_is_an_error_event(server: ServerProcess) -> None:
    body = _send_body("x")
    body["method"] = "message/stream"
    body["params"]["message"]["role"] = "agent"
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(f"{server.url}/a2a/echo", json=body)
    assert answer.headers["content-type"].startswith("text/event-stream")
    frames = [json.loads(line.removeprefix("data:")) for line in answer.text.splitlines()
              if line.startswith("data:")]
    assert [f["error"]["code"] for f in frames] == [-32602]
    assert "role must be user" in frames[0]["error"]["message"]


async def test_unparsable_json_is_a_parse_error(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(f"{server.url}/a2a/echo", content=b"{not json",
                                 headers={"Content-Type": "application/json"})
    assert answer.status_code in (200, 422)  # treadle's JSON check may answer first
    if answer.status_code == 200:
        assert answer.json()["error"]["code"] == -32700


async def test_a_task_belongs_to_its_assistant(server: ServerProcess) -> None:
    task = _final(await _send(server.url, "echo", _message("mine")))
    body = {"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": task.id}}
    assert (await _rpc(server.url, "questions", body)).json()["error"]["code"] == -32001
    assert (await _rpc(server.url, "echo", body)).json()["result"]["id"] == task.id


# --- auth --------------------------------------------------------------------------------

async def test_unauthenticated_calls_are_refused(auth_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=auth_server.url, timeout=30) as http:
        card = await http.get("/.well-known/agent-card.json", params={"assistant_id": "echo"})
        sent = await http.post("/a2a/echo", json=_send_body("hi"))
        wrong = await http.post("/a2a/echo", json=_send_body("hi"),
                                headers={"Authorization": "Bearer nobody"})
    assert (card.status_code, sent.status_code, wrong.status_code) == (401, 401, 401)


async def test_a_user_reaches_only_what_they_may_read(auth_server: ServerProcess) -> None:
    url = auth_server.url
    alice = get_client(url=url, headers=ALICE)
    bot = (await alice.assistants.create("echo", name="alice-bot"))["assistant_id"]
    task = _final(await _send(url, bot, _message("secret"), headers=ALICE))
    assert _reply(task) == "echo: secret (1 seen)"
    # bob: not alice's assistant (404, as GET /assistants/{id}), not her task, not her thread
    async with httpx.AsyncClient(base_url=url, headers=BOB, timeout=30) as http:
        card = await http.get("/.well-known/agent-card.json", params={"assistant_id": bot})
        assert card.status_code == 404
    assert (await _rpc(url, bot, _send_body("hi"), BOB)).status_code == 404
    get = {"jsonrpc": "2.0", "id": 3, "method": "tasks/get", "params": {"id": task.id}}
    assert (await _rpc(url, bot, get, ALICE)).json()["result"]["id"] == task.id
    echo_task = _final(await _send(url, "echo", _message("also secret"), headers=ALICE))
    get["params"] = {"id": echo_task.id}
    assert (await _rpc(url, "echo", get, BOB)).json()["error"]["code"] == -32001
    into_alices = _send_body("let me in")
    into_alices["params"]["message"]["contextId"] = echo_task.context_id
    refused = (await _rpc(url, "echo", into_alices, BOB)).json()
    assert refused["error"]["code"] == -32602 and "not found" in refused["error"]["message"]
    state = await alice.threads.get_state(echo_task.context_id)
    assert len(cast(dict[str, Any], state["values"])["messages"]) == 2  # bob's never got there
    # bob's own conversation is his
    mine = _final(await _send(url, "echo", _message("bob here"), headers=BOB))
    assert _reply(mine) == "echo: bob here (1 seen)"
    thread = await get_client(url=url, headers=BOB).threads.get(mine.context_id)
    assert (thread["metadata"] or {})["owner"] == "bob"
