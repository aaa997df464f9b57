"""Idempotent run creation: the ``Idempotency-Key`` header, through the official langgraph-sdk
against a real `treadle dev`.

A create retried with the same key and request returns the first run (``/wait`` and
``/stream`` join it); the same key with another request is a 422; concurrent creates with
one key queue one run. (A retry after the API process was kill -9'ed:
tests/chaos/test_idempotent_create.py.)
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import UnprocessableEntityError

from processes import ServerProcess

pytestmark = pytest.mark.timeout(120)


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


@pytest.fixture
def client(dev_server: ServerProcess) -> LangGraphClient:
    return get_client(url=dev_server.url)


async def _runs(client: Any, thread_id: str) -> list[str]:
    return [r["run_id"] for r in await client.runs.list(thread_id, limit=100)]


async def test_a_retried_create_returns_the_first_run(client: LangGraphClient) -> None:
    t = await client.threads.create()
    key = _key()
    first = await client.runs.create(t["thread_id"], "chain", input={"n": 0}, headers=key)
    await client.runs.join(t["thread_id"], first["run_id"])
    again = await client.runs.create(t["thread_id"], "chain", input={"n": 0}, headers=key)
    assert again["run_id"] == first["run_id"] and again["status"] == "success"
    assert await _runs(client, t["thread_id"]) == [first["run_id"]]
    # Without a key, or with another one, the same request queues another run.
    other = await client.runs.create(t["thread_id"], "chain", input={"n": 0})
    keyed = await client.runs.create(t["thread_id"], "chain", input={"n": 0}, headers=_key())
    assert len({first["run_id"], other["run_id"], keyed["run_id"]}) == 3


async def test_a_retried_wait_and_stream_join_the_first_run(client: LangGraphClient) -> None:
    t = await client.threads.create()
    key = _key()
    out = [await client.runs.wait(t["thread_id"], "chain", input={"n": 5}, headers=key)
           for _ in range(2)]
    assert out == [{"n": 15}, {"n": 15}]
    assert len(await _runs(client, t["thread_id"])) == 1

    t2 = await client.threads.create()
    key = _key()
    streams = []
    for _ in range(2):
        parts = [p async for p in client.runs.stream(t2["thread_id"], "chain", input={"n": 1},
                                                     stream_mode="values", headers=key)]
        streams.append([(p.event, p.data) for p in parts if p.event == "values"])
    assert streams[0] == streams[1] and streams[0][-1] == ("values", {"n": 11})
    assert len(await _runs(client, t2["thread_id"])) == 1
    # The thread's state was advanced once, not twice.
    assert (await client.threads.get_state(t2["thread_id"]))["values"] == {"n": 11}


async def test_stateless_and_batch_retries_return_the_first_runs(client: LangGraphClient, dev_server: ServerProcess) -> None:
    key = _key()
    first = await client.runs.create(None, "chain", input={"n": 0}, headers=key)
    again = await client.runs.create(None, "chain", input={"n": 0}, headers=key)
    assert again["run_id"] == first["run_id"] and again["thread_id"] == first["thread_id"]
    batch = [{"assistant_id": "chain", "input": {"n": i}} for i in range(3)]
    key = _key()
    made = [httpx.post(f"{dev_server.url}/runs/batch", json=batch, headers=key, timeout=30)
            for _ in range(2)]
    ids = [[r["run_id"] for r in m.json()] for m in made]
    assert ids[0] == ids[1] and len(set(ids[0])) == 3


async def test_the_same_key_with_another_request_is_a_422(client: LangGraphClient, dev_server: ServerProcess) -> None:
    t = await client.threads.create()
    key = _key()
    first = await client.runs.create(t["thread_id"], "chain", input={"n": 0}, headers=key)
    with pytest.raises(UnprocessableEntityError) as info:
        await client.runs.create(t["thread_id"], "chain", input={"n": 1}, headers=key)
    assert info.value.response.json()["detail"].startswith(
        f"Idempotency-Key {key['Idempotency-Key']!r} was used for a different request "
        f"(run {first['run_id']})")
    # A wait is another request than a create (the SDK's wait raises httpx's error).
    with pytest.raises(httpx.HTTPStatusError) as failed:
        await client.runs.wait(t["thread_id"], "chain", input={"n": 0}, headers=key)
    assert failed.value.response.status_code == 422
    assert await _runs(client, t["thread_id"]) == [first["run_id"]]
    # Keys are scoped per thread: the key names a run of its own on another thread.
    t2 = await client.threads.create()
    elsewhere = await client.runs.create(t2["thread_id"], "chain", input={"n": 1}, headers=key)
    assert elsewhere["run_id"] != first["run_id"]
    r = httpx.post(f"{dev_server.url}/threads/{t['thread_id']}/runs",
                   json={"assistant_id": "chain"}, headers={"Idempotency-Key": "x" * 256})
    assert r.status_code == 422 and "Idempotency-Key" in r.text


@pytest.mark.parametrize("stateless", [False, True])
async def test_concurrent_creates_with_one_key_queue_one_run(client: LangGraphClient,
                                                            stateless: bool) -> None:
    t = None if stateless else (await client.threads.create())["thread_id"]
    key = _key()
    made = await asyncio.gather(*[
        client.runs.create(t, "chain", input={"n": 0}, headers=key) for _ in range(8)])
    assert len({m["run_id"] for m in made}) == 1
    thread_id = made[0]["thread_id"]
    await client.runs.join(thread_id, made[0]["run_id"])
    if not stateless:
        assert await _runs(client, thread_id) == [made[0]["run_id"]]


async def test_a_retried_create_gives_the_thread_the_graph_of_its_run(client: LangGraphClient) -> None:
    """The process that queued a keyed run can die before it gave the thread the run's graph
    (state reads use it: tests/chaos/test_idempotent_create.py); the retry finishes that."""
    t = (await client.threads.create())["thread_id"]
    key = _key()
    first = await client.runs.create(t, "chain", input={"n": 0}, headers=key)
    out = await client.runs.join(t, first["run_id"])
    await client.threads.update(t, metadata={"graph_id": None})  # as if it died right there
    assert (await client.threads.get_state(t))["values"] == {}
    again = await client.runs.create(t, "chain", input={"n": 0}, headers=key)
    assert again["run_id"] == first["run_id"]
    metadata = (await client.threads.get(t))["metadata"]
    assert metadata is not None and metadata["graph_id"] == "chain"
    assert (await client.threads.get_state(t))["values"] == out
