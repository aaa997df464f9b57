"""Thread streams through the official langgraph-sdk, against a real `treadle dev` process.

``client.threads.join_stream`` (every run of a thread, resumable across runs) and the v3
thread protocol of ``client.threads.stream(...)`` over SSE and WebSocket, async and sync:
runs started by ``run.start``, the values / messages / subgraphs projections, interrupts
answered with ``run.respond``, and ``since`` resuming after any event of any run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import httpx
import pytest
from langchain_protocol import Event
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError
from langgraph_sdk.stream.transport import ProtocolSseTransport

from processes import ServerProcess

pytestmark = pytest.mark.timeout(120)

Transport = Literal["sse", "websocket"]
TRANSPORTS: list[Transport] = ["sse", "websocket"]


@pytest.fixture
def client(dev_server: ServerProcess) -> LangGraphClient:
    return get_client(url=dev_server.url)


async def _within(awaitable: Any, seconds: float = 30) -> Any:
    return await asyncio.wait_for(awaitable, seconds)


# --- GET /threads/{id}/stream --------------------------------------------------------------
async def _join(client: LangGraphClient, thread_id: str, runs: int, started: asyncio.Event | None = None,
                **kwargs: Any) -> list[Any]:
    parts = []
    async for part in await client.threads.join_stream(thread_id, **kwargs):
        parts.append(part)
        if started is not None:
            started.set()
        if sum(p.event == "run_done" for p in parts) == runs:
            return parts
    raise AssertionError(f"thread stream ended early: {parts}")


async def test_join_stream_follows_every_run_and_resumes_across_runs(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    started = asyncio.Event()
    joined = asyncio.create_task(_within(_join(client, tid, 2, started)))
    first = await client.runs.create(tid, "slow", input={"n": 0, "delay": 0.3},
                                     stream_mode="values")
    await _within(started.wait())  # the stream is open: the next run starts after it
    second = await client.runs.create(tid, "chain", input={"n": 100}, stream_mode="updates")
    parts = await joined

    r1, r2 = first["run_id"], second["run_id"]
    assert [(p.event, p.data["run_id"]) for p in parts if p.event in ("metadata", "run_done")] \
        == [("metadata", r1), ("run_done", r1), ("metadata", r2), ("run_done", r2)]
    assert [p.data["status"] for p in parts if p.event == "run_done"] == ["success", "success"]
    assert [p.data["n"] for p in parts if p.event == "values"] == [0, 1, 2, 3]
    assert [list(p.data) for p in parts if p.event == "updates"] == [[f"s{i}"] for i in range(10)]
    assert [p.id.split(":")[0] for p in parts] == [r1] * 6 + [r2] * 12

    # Resuming after the first run's end: the second run, whole.
    done1 = next(p.id for p in parts if p.event == "run_done")
    after_first = await _within(_join(client, tid, 1, last_event_id=done1))
    assert [(p.event, p.id) for p in after_first] == [(p.event, p.id) for p in parts[6:]]
    # Resuming inside the second run: what came after that event.
    third_update = [p for p in parts if p.event == "updates"][2]
    rest = await _within(_join(client, tid, 1, last_event_id=third_update.id))
    assert [list(p.data) for p in rest if p.event == "updates"] == [[f"s{i}"] for i in range(3, 10)]
    assert rest[0].event == "updates"
    # "-": from the thread's first run.
    replay = await _within(_join(client, tid, 2, last_event_id="-"))
    assert [(p.event, p.id, p.data) for p in replay] == [(p.event, p.id, p.data) for p in parts]

    lifecycle = await _within(_join(client, tid, 2, last_event_id="-", stream_mode="lifecycle"))
    assert [(p.event, p.data["run_id"]) for p in lifecycle] \
        == [("metadata", r1), ("run_done", r1), ("metadata", r2), ("run_done", r2)]
    states = []
    async for part in await client.threads.join_stream(tid, last_event_id="-",
                                                       stream_mode="state_update"):
        states.append(part.data["n"])
        if part.data["n"] == 110:
            break
    assert states == [0, 1, 2, 3, *range(100, 111)]


async def test_join_stream_of_an_unknown_thread_is_404(client: LangGraphClient) -> None:
    with pytest.raises(NotFoundError):
        async for _part in await client.threads.join_stream("no-such-thread"):
            pass


# --- v3 protocol: client.threads.stream -----------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_v3_messages_and_values_of_a_run(client: LangGraphClient, transport: Transport) -> None:
    async with client.threads.stream(assistant_id="chat", transport=transport) as thread:
        started = await thread.run.start(
            input={"messages": [{"role": "user", "content": "hello there"}]})
        assert started["run_id"]
        # Drain the projection first: a message's text fills as the projection advances.
        streams = await _within(_collect(thread.messages))
        assert len(streams) == 1
        assert [t async for t in streams[0].text] == ["echo:", " ", "hello", " ", "there"]
        assert (await streams[0].output).text == "echo: hello there"
        final = await _within(thread.output)
    assert final["hops"] == 1
    assert [m["content"] for m in final["messages"]] == ["hello there", "echo: hello there"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_v3_interrupt_and_respond(client: LangGraphClient, transport: Transport) -> None:
    async with client.threads.stream(assistant_id="approval", transport=transport) as thread:
        await thread.run.start(input={"request": "post"})
        snapshots = await _within(_collect(thread.values))  # ends at the interrupt
        assert thread.interrupted
        [asked] = thread.interrupts
        assert asked["value"] == {"question": "approve post?"} and asked["namespace"] == []
        # Every snapshot is a real state of the run. The SDK's values projection starts
        # with the state it fetches (any point of the run) and then follows the stream,
        # which it may rotate while the run ends, so which snapshots arrive varies.
        states = [{}, {"log": []}, {"request": "post", "log": []},
                  {"request": "post", "log": ["drafted post"]}]
        assert snapshots and all(snap in states for snap in snapshots)
        paused = await client.threads.get_state(thread.thread_id)
        assert paused["values"] == states[-1] and paused["next"] == ["review"]
        assert await thread.run.respond("yes") == {}
        final = await _within(thread.output)
    assert final == {"request": "post", "decision": "yes",
                     "log": ["drafted post", "reviewed", "published (yes)"]}
    state = await client.threads.get_state(thread.thread_id)
    assert state["next"] == [] and state["values"] == final


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_v3_sync_client(dev_server: ServerProcess, transport: Transport) -> None:
    client = get_sync_client(url=dev_server.url)
    with client.threads.stream(assistant_id="approval", transport=transport) as thread:
        thread.run.start(input={"request": "sync"})
        snapshots = list(thread.values)
        assert thread.interrupted and snapshots
        thread.run.respond("fine")
        assert thread.output["log"] == ["drafted sync", "reviewed", "published (fine)"]
    with client.threads.stream(assistant_id="chat", transport=transport) as thread:
        thread.run.start(input={"messages": [{"role": "user", "content": "hi"}]})
        streams = list(thread.messages)
        assert ["".join(s.text) for s in streams] == ["echo: hi"]
        assert thread.output["hops"] == 1


async def test_v3_subgraphs_and_custom_events(client: LangGraphClient) -> None:
    async with client.threads.stream(assistant_id="chat") as thread:
        await thread.run.start(input={"messages": [{"role": "user", "content": "x"}]})
        handles = await _within(_collect(thread.subgraphs))
    assert [(h.graph_name, h.status) for h in handles] == [("inner", "completed")]
    assert handles[0].path[0].startswith("inner:")

    async with client.threads.stream(assistant_id="chat") as thread:
        await thread.run.start(input={"messages": [{"role": "user", "content": "y"}]})
        custom = await _within(_collect(thread.subscribe(["custom"])))
    assert [(e["params"]["data"], len(e["params"]["namespace"])) for e in custom] \
        == [({"progress": "thinking"}, 0), ({"inner": "hop"}, 1)]


async def test_v3_reattach_to_an_interrupted_thread(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "approval", input={"request": "later"})
    await client.runs.join(tid, run["run_id"])
    # A new session on the thread learns of the pending interrupt from the thread's events.
    async with client.threads.stream(tid, assistant_id="approval") as thread:
        deadline = time.monotonic() + 30
        while not thread.interrupted and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        [asked] = thread.interrupts
        assert asked["value"] == {"question": "approve later?"}
        await thread.run.respond("ok")
        final = await _within(thread.output)
    assert final["log"][-1] == "published (ok)"


# --- the wire: seq / since across runs, commands ---------------------------------------------
async def _events(transport: ProtocolSseTransport, params: dict[str, Any], runs: int
                  ) -> list[Event]:
    handle = transport.open_event_stream(params)
    await _within(handle.ready)
    events: list[Event] = []
    try:
        async for event in handle.events:
            events.append(event)
            p = event["params"]
            if event["method"] == "lifecycle" and not p["namespace"] \
                    and p["data"]["event"] in ("completed", "failed"):
                runs -= 1
                if runs == 0:
                    return events
    finally:
        await handle.close()
    raise AssertionError(f"event stream ended early: {events}")


async def test_v3_seq_and_since_resume_across_runs(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    transport = ProtocolSseTransport(client=client.http.client, thread_id=tid)
    applied = []
    for ident, n in ((1, 0), (2, 100)):
        answer = await transport.send_command(
            {"id": ident, "method": "run.start",
             "params": {"assistant_id": "chain", "input": {"n": n}}})
        assert answer is not None and answer["type"] == "success" and answer["id"] == ident
        applied.append(answer["meta"]["applied_through_seq"])
        await client.runs.join(tid, answer["result"]["run_id"])

    events = await _within(_events(transport, {"channels": ["lifecycle", "values"]}, 2))
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert len({e["event_id"] for e in events}) == len(events)
    roots = [(e["params"]["data"]["event"], e["params"]["data"]["graph_name"])
             for e in events if e["method"] == "lifecycle"]
    assert roots == [("running", "chain"), ("completed", "chain")] * 2
    assert [e["params"]["data"]["n"] for e in events if e["method"] == "values"] \
        == [*range(0, 11), *range(100, 111)]
    end_of_first = next(i for i, e in enumerate(events) if e["method"] == "lifecycle"
                        and e["params"]["data"]["event"] == "completed")

    # `since` = the end of the first run, or what run.start answered for the second.
    for since in (events[end_of_first]["seq"], applied[1]):
        again = await _within(_events(transport, {"channels": ["lifecycle", "values"],
                                                  "since": since}, 1))
        assert again == [{**e, "params": {**e["params"], "timestamp": a["params"]["timestamp"]}}
                         for e, a in zip(events[end_of_first + 1:], again, strict=True)]
    # `since` inside a run: the events after it; channels filter, seqs stay absolute.
    middle = events[5]
    rest = await _within(_events(transport, {"channels": ["lifecycle", "values"],
                                             "since": middle["seq"]}, 2))
    assert [e["seq"] for e in rest] == seqs[6:]
    lifecycle_only = await _within(_events(transport, {"channels": ["lifecycle"]}, 2))
    assert [e["seq"] for e in lifecycle_only] == [e["seq"] for e in events
                                                 if e["method"] == "lifecycle"]
    await transport.close()


async def test_v3_command_errors(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    transport = ProtocolSseTransport(client=client.http.client, thread_id=tid)

    async def send(method: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = await transport.send_command({"id": 7, "method": method, "params": params})
        assert answer is not None and answer["type"] == "error" and answer["id"] == 7
        return answer

    assert (await send("run.start", {"assistant_id": "no-such-graph"}))["error"] \
        == "invalid_argument"
    assert (await send("run.start", {}))["error"] == "invalid_argument"
    assert (await send("input.respond", {"interrupt_id": "0" * 32, "namespace": [],
                                         "response": 1}))["error"] == "no_such_interrupt"
    assert (await send("no.such.command", {}))["error"] == "unknown_command"
    assert (await send("subscription.reconnect", {"run_id": "x"}))["error"] == "not_supported"
    handle = transport.open_event_stream({"channels": ["bogus"]})
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await _within(handle.ready)
    assert caught.value.response.status_code == 422
    await handle.close()
    await transport.close()

    async with client.threads.stream(assistant_id="no-such-graph") as thread:
        with pytest.raises(RuntimeError, match="invalid_argument"):
            await thread.run.start(input={})


async def _collect(source: Any) -> list[Any]:
    return [item async for item in source]
