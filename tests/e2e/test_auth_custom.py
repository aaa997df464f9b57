"""A custom ``langgraph_sdk.Auth`` (langgraph.json ``"auth"``), through the official SDK.

``auth_graphs/owner_auth.py`` is written as the LangGraph docs show: bearer tokens from a
table, every resource gets ``metadata.owner`` and is filtered to it, store namespaces are
per user. Alice owns a thread (with a finished run), an assistant and a cron; every
endpoint is called with no credentials (401), as Alice (success) and as Bob (404, or a
search that does not see them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from processes import ServerProcess, StartServer, subprocess_env

pytestmark = pytest.mark.timeout(180)

GRAPHS = Path(__file__).resolve().parent / "auth_graphs"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
NOBODY: dict[str, str] = {}
WHO = {"nobody": NOBODY, "alice": ALICE, "bob": BOB}


@dataclass
class Owned:
    """What Alice made."""

    thread: str
    run: str
    assistant: str
    cron: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("auth-server")
    s = ServerProcess("dev", f"sqlite:///{tmp / 'auth.db'}", tmp / "server.log", [],
                      subprocess_env(TREADLE_LEASE_TTL="3"), GRAPHS / "langgraph.json")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop(timeout=10)


def _client(server: ServerProcess, who: str) -> LangGraphClient:
    return get_client(url=server.url, api_key=None, headers=WHO[who])


@pytest.fixture(scope="module")
def owned(server: ServerProcess) -> Owned:
    async def make() -> Owned:
        alice = _client(server, "alice")
        thread = await alice.threads.create(metadata={"topic": "x"})
        run = await alice.runs.create(thread["thread_id"], "whoami", input={"n": 1})
        await alice.runs.join(thread["thread_id"], run["run_id"])
        assistant = await alice.assistants.create("whoami", name="alice's")
        cron = cast(dict[str, Any], await alice.crons.create("whoami", schedule="0 0 1 1 *",
                                                             input={"n": 1}))
        await alice.store.put_item(["notes"], "k", {"secret": "alice's"})
        return Owned(thread["thread_id"], run["run_id"], assistant["assistant_id"],
                     cron["cron_id"])

    return asyncio.run(make())


async def _status(call: Awaitable[Any]) -> int:
    try:
        await call
    except httpx.HTTPStatusError as exc:  # (the SDK raises APIStatusError, or this)
        return exc.response.status_code
    return 200


async def _drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [part async for part in stream]


Op = Callable[[LangGraphClient, Owned], Awaitable[Any]]

# Reaching Alice's resources by id: 401 / 200 / 404.
BY_ID: dict[str, Op] = {
    "threads.get": lambda c, o: c.threads.get(o.thread),
    "threads.update": lambda c, o: c.threads.update(o.thread, metadata={"k": 1}),
    "threads.get_state": lambda c, o: c.threads.get_state(o.thread),
    "threads.get_history": lambda c, o: c.threads.get_history(o.thread),
    "threads.update_state": lambda c, o: c.threads.update_state(o.thread, {"n": 5}),
    "threads.copy": lambda c, o: c.threads.copy(o.thread),
    "runs.get": lambda c, o: c.runs.get(o.thread, o.run),
    "runs.list": lambda c, o: c.runs.list(o.thread),
    "runs.join": lambda c, o: c.runs.join(o.thread, o.run),
    "runs.join_stream": lambda c, o: _drain(c.runs.join_stream(o.thread, o.run)),
    "runs.cancel": lambda c, o: c.runs.cancel(o.thread, o.run),
    "runs.create": lambda c, o: c.runs.create(o.thread, "whoami", input={"n": 1}),
    "runs.wait": lambda c, o: c.runs.wait(o.thread, "whoami", input={"n": 1}),
    "runs.stream": lambda c, o: _drain(c.runs.stream(o.thread, "whoami", input={"n": 1})),
    "assistants.get": lambda c, o: c.assistants.get(o.assistant),
    "assistants.update": lambda c, o: c.assistants.update(o.assistant, name="renamed"),
    "assistants.get_graph": lambda c, o: c.assistants.get_graph(o.assistant),
    "assistants.get_schemas": lambda c, o: c.assistants.get_schemas(o.assistant),
    "assistants.get_versions": lambda c, o: c.assistants.get_versions(o.assistant),
    "crons.update": lambda c, o: c.crons.update(o.cron, schedule="0 0 2 1 *"),
}


@pytest.mark.parametrize("name", list(BY_ID))
@pytest.mark.parametrize("who", ["nobody", "bob", "alice"])
async def test_resources_by_id(server: ServerProcess, owned: Owned, name: str, who: str) -> None:
    status = await _status(BY_ID[name](_client(server, who), owned))
    assert status == {"nobody": 401, "bob": 404, "alice": 200}[who], (name, who)


# Creating and searching: 401 without credentials; a search never shows another's.
async def test_searches_see_only_the_users_own(server: ServerProcess, owned: Owned) -> None:
    for who, sees in (("alice", True), ("bob", False)):
        c = _client(server, who)
        threads = [t["thread_id"] for t in await c.threads.search(limit=1000)]
        assert (owned.thread in threads) is sees, who
        assert await c.threads.count() == len(threads), who  # counted under the same filter
        assistants = [a["assistant_id"] for a in await c.assistants.search(limit=100)]
        assert (owned.assistant in assistants) is sees, who
        assert any((a["metadata"] or {}).get("created_by") == "system"
                   for a in await c.assistants.search(limit=100)), who
        crons = [x["cron_id"] for x in await c.crons.search(limit=100)]
        assert (owned.cron in crons) is sees, who
        item = await c.store.get_item(["notes"], "k")
        assert (item is not None) is sees, who
        found = await c.store.search_items(["notes"])
        assert (len(found["items"]) == 1) is sees, who
        namespaces = await c.store.list_namespaces()
        assert (["notes"] in namespaces["namespaces"]) is sees, who
    mine = cast(Any, await _client(server, "alice").store.get_item(["notes"], "k"))
    assert mine["namespace"] == ["notes"]  # the user's prefix stripped


CREATE: dict[str, Op] = {
    "threads.create": lambda c, o: c.threads.create(),
    "threads.search": lambda c, o: c.threads.search(),
    "threads.count": lambda c, o: c.threads.count(),
    "runs.wait_stateless": lambda c, o: c.runs.wait(None, "whoami", input={"n": 1}),
    "runs.create_batch": lambda c, o: c.runs.create_batch(cast(Any, [
        {"assistant_id": "whoami", "input": {"n": 1}}])),
    "assistants.create": lambda c, o: c.assistants.create("whoami"),
    "assistants.search": lambda c, o: c.assistants.search(),
    "crons.create": lambda c, o: c.crons.create("whoami", schedule="0 0 1 1 *"),
    "crons.search": lambda c, o: c.crons.search(),
    "store.put_item": lambda c, o: c.store.put_item(["n"], "k", {"v": 1}),
    "store.search_items": lambda c, o: c.store.search_items(["n"]),
}


@pytest.mark.parametrize("name", list(CREATE))
@pytest.mark.parametrize("who", ["nobody", "bob"])
async def test_creates_and_searches_need_credentials(server: ServerProcess, owned: Owned,
                                                     name: str, who: str) -> None:
    status = await _status(CREATE[name](_client(server, who), owned))
    assert status == {"nobody": 401, "bob": 200}[who], (name, who)


async def test_runs_receive_the_user_and_not_what_the_client_sent(server: ServerProcess) -> None:
    bob = _client(server, "bob")
    forged: Any = {"configurable": {"langgraph_auth_user_id": "alice",
                               "langgraph_auth_permissions": ["write"]}}
    out = await bob.runs.wait(None, "whoami", input={"n": 1}, config=forged)
    assert out == {"n": 2, "who": "bob", "permissions": []}
    thread = await bob.threads.create()
    out = await bob.runs.wait(thread["thread_id"], "whoami", input={"n": 1}, config=forged)
    assert out == {"n": 2, "who": "bob", "permissions": []}
    alice = _client(server, "alice")
    out = await alice.runs.wait(None, "whoami", input={"n": 1})
    assert out == {"n": 2, "who": "alice", "permissions": ["write"]}


def _owner(thread: Any) -> Any:
    return (thread["metadata"] or {}).get("owner")


async def test_the_owner_is_recorded_and_cannot_be_taken(server: ServerProcess, owned: Owned) -> None:
    alice, bob = _client(server, "alice"), _client(server, "bob")
    assert _owner(await alice.threads.get(owned.thread)) == "alice"
    # Bob's create with Alice's id and if_exists=do_nothing must not hand him her thread.
    assert await _status(bob.threads.create(thread_id=owned.thread,
                                            if_exists="do_nothing")) == 409
    with httpx.Client(base_url=server.url, timeout=30, headers=ALICE) as http:
        copy = http.post(f"/threads/{owned.thread}/copy").json()  # the SDK types it None
    assert _owner(copy) == "alice"
    # a thread Bob's run creates (if_not_exists) is Bob's
    made = "00000000-0000-4000-8000-00000000b0b0"
    await bob.runs.wait(made, "whoami", input={"n": 1}, if_not_exists="create")
    assert _owner(await bob.threads.get(made)) == "bob"
    assert await _status(alice.threads.get(made)) == 404


async def test_other_users_cannot_delete(server: ServerProcess) -> None:
    alice, bob = _client(server, "alice"), _client(server, "bob")
    thread = await alice.threads.create()
    assistant = await alice.assistants.create("whoami")
    cron = cast(dict[str, Any], await alice.crons.create("whoami", schedule="0 0 1 1 *"))
    for call in (bob.threads.delete(thread["thread_id"]),
                 bob.assistants.delete(assistant["assistant_id"]),
                 bob.crons.delete(cron["cron_id"])):
        assert await _status(call) == 404
    pruned = await bob.threads.prune([thread["thread_id"]])
    assert pruned["pruned_count"] == 0
    assert await _status(alice.threads.get(thread["thread_id"])) == 200
    for call in (alice.threads.delete(thread["thread_id"]),
                 alice.assistants.delete(assistant["assistant_id"]),
                 alice.crons.delete(cron["cron_id"])):
        assert await _status(call) == 200


def test_public_paths_and_streams_without_credentials(server: ServerProcess, owned: Owned) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/ok").status_code == 200
        assert http.get("/info").status_code == 200
        assert http.get("/metrics").status_code == 200
        for path in ("/docs", "/openapi.json"):
            assert http.get(path).status_code == 401, path
        body = {"channels": ["values"]}
        assert http.post(f"/threads/{owned.thread}/stream/events", json=body).status_code == 401
        assert http.post(f"/threads/{owned.thread}/stream/events", json=body,
                         headers=BOB).status_code == 404
        command = {"id": 1, "method": "run.start", "params": {"assistant_id": "whoami",
                                                               "input": {"n": 1}}}
        assert http.post(f"/threads/{owned.thread}/commands", json=command).status_code == 401
        assert http.post(f"/threads/{owned.thread}/commands", json=command,
                         headers=BOB).status_code == 404
        for headers, status in ((NOBODY, 401), (BOB, 404), (ALICE, 200)):  # a thread's stream
            with http.stream("GET", f"/threads/{owned.thread}/stream", headers=headers) as r:
                assert r.status_code == status
        runs_before = len(http.get(f"/threads/{owned.thread}/runs", headers=ALICE).json())
    url = server.url.replace("http://", "ws://") + f"/threads/{owned.thread}/stream/events"
    for headers in (NOBODY, BOB):
        with pytest.raises(InvalidStatus):
            with connect(url, open_timeout=30, additional_headers=headers) as socket:
                socket.send(json.dumps(command))
                socket.recv(timeout=10)
    with connect(url, open_timeout=30, additional_headers=ALICE) as socket:
        socket.send(json.dumps({"id": 1, "method": "state.get", "params": {}}))
        answer = json.loads(socket.recv(timeout=30))
        assert answer["type"] == "success", answer
    with httpx.Client(base_url=server.url, timeout=30) as http:
        runs = http.get(f"/threads/{owned.thread}/runs", headers=ALICE).json()
        assert len(runs) == runs_before  # nothing started by the refused connections


def test_a_handler_exception_is_401_without_its_message(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.get("/threads/x", headers={"Authorization": "Bearer wrong"})
        assert (r.status_code, r.json()) == (401, {"detail": "Invalid token"})
        r = http.get("/threads/x", headers={"Authorization": "notbearer"})
        assert (r.status_code, r.json()) == (401, {"detail": "Unauthorized"})
    assert "notbearer" not in server.log()


@pytest.mark.parametrize("deny", [True, False])
def test_default_deny(start_server: StartServer, deny: bool) -> None:
    """Only threads have a handler: the rest is refused with default deny, allowed without."""
    server = start_server("dev", config=GRAPHS / "langgraph_threads_only.json",
                          args=["--auth-default-deny" if deny else "--no-auth-default-deny"])
    key = {"x-api-key": "secret-key"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/threads", json={}, headers=key).status_code == 200
        assert http.post("/assistants/search", json={}, headers=key).status_code == \
            (403 if deny else 200)
        assert http.get("/assistants/whoami", headers=key).status_code == (404 if deny else 200)
        assert http.put("/store/items", json={"namespace": ["a"], "key": "k", "value": {}},
                        headers=key).status_code == (403 if deny else 204)
        assert http.post("/runs/crons/search", json={}, headers=key).status_code == \
            (403 if deny else 200)
        assert http.post("/threads", json={}).status_code == 401


def test_serve_denies_by_default(start_server: StartServer) -> None:
    server = start_server("serve", config=GRAPHS / "langgraph_threads_only.json",
                          args=["--workers", "0"])
    with httpx.Client(base_url=server.url, timeout=30) as http:
        key = {"x-api-key": "secret-key"}
        assert http.post("/threads", json={}, headers=key).status_code == 200
        assert http.post("/assistants/search", json={}, headers=key).status_code == 403


async def test_a_crons_runs_are_its_creators(server: ServerProcess) -> None:
    """Each tick runs as the user who made the cron, on a thread that is theirs."""
    alice, bob = _client(server, "alice"), _client(server, "bob")
    cron = cast(dict[str, Any], await alice.crons.create(
        "whoami", schedule="* * * * * */1", input={"n": 10}, on_run_completed="keep",
        metadata={"cron": "ticks"}))
    try:
        found: list[Any] = []
        for _ in range(300):
            found = [t for t in await alice.threads.search(limit=1000)
                     if isinstance(t["values"], dict) and t["values"].get("n") == 11]
            if found:
                break
            await asyncio.sleep(0.1)
    finally:
        await alice.crons.delete(cron["cron_id"])
    assert found, "the cron never ran"
    thread = found[0]
    assert _owner(thread) == "alice"
    assert cast(dict[str, Any], thread["values"])["who"] == "alice"
    assert await _status(bob.threads.get(thread["thread_id"])) == 404


@pytest.mark.postgres
async def test_owner_isolation_on_postgres(start_server: StartServer, pg_url: str) -> None:
    """The same filters, compiled for PostgreSQL, inside a real server's queries."""
    server = start_server("dev", store=pg_url, config=GRAPHS / "langgraph.json")
    alice, bob = _client(server, "alice"), _client(server, "bob")
    thread = await alice.threads.create(metadata={"tags": ["a"]})
    out = await alice.runs.wait(thread["thread_id"], "whoami", input={"n": 1})
    assert out == {"n": 2, "who": "alice", "permissions": ["write"]}
    assistant = await alice.assistants.create("whoami")
    await bob.threads.create()
    for call in (bob.threads.get(thread["thread_id"]),
                 bob.runs.wait(thread["thread_id"], "whoami", input={"n": 1}),
                 bob.assistants.get(assistant["assistant_id"]),
                 bob.threads.update(thread["thread_id"], metadata={"x": 1})):
        assert await _status(call) == 404
    mine = [t["thread_id"] for t in await alice.threads.search()]
    theirs = [t["thread_id"] for t in await bob.threads.search()]
    assert thread["thread_id"] in mine and thread["thread_id"] not in theirs
    assert (await alice.threads.count(), await bob.threads.count()) == (len(mine), len(theirs))
    assert [a["assistant_id"] for a in await bob.assistants.search(metadata={"owner": "alice"})
            ] == []
