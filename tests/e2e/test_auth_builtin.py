"""The built-in auth (``TREADLE_AUTH=builtin``) through the real server and the official SDK.

Two tenants, acme and beta, with API keys of every role (``treadle keys create``'s store
calls) and a JWT signed with ``TREADLE_JWT_SECRET``: a tenant never reaches the other's
threads, runs, assistants, crons or store items (404, or a search that does not show them);
each role does what it may and no more (403); resuming an interrupt needs an approver; a
revoked key stops working at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import jwt
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from processes import SERVER_GRAPHS, ServerProcess, subprocess_env
from treadle.store import open_store

pytestmark = pytest.mark.timeout(240)

SECRET = "e2e-shared-secret-of-at-least-32-bytes"
ROLES = ("viewer", "runner", "approver", "admin")


@dataclass
class World:
    server: ServerProcess
    keys: dict[str, str]  # "acme:runner" -> key
    revoked: str
    url: str

    def client(self, who: str) -> LangGraphClient:
        """A client as ``who``: a key's name ("acme:runner"), a key, a JWT or "nobody"."""
        return client(self.server, self.keys.get(who, who))


def client(server: ServerProcess, credential: str) -> LangGraphClient:
    if credential.startswith("tdl_"):  # the SDK sends it as x-api-key
        return get_client(url=server.url, api_key=credential)
    headers = {"Authorization": f"Bearer {credential}"} if credential != "nobody" else {}
    return get_client(url=server.url, api_key=None, headers=headers)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("builtin-auth")
    url = f"sqlite:///{tmp / 'auth.db'}"
    store = open_store(url)
    try:
        keys = {f"{t}:{r}": store.create_api_key(t, r, f"{t} {r}")[1]
                for t in ("acme", "beta") for r in ROLES}
        gone, revoked = store.create_api_key("acme", "admin", "gone")
        store.revoke_api_key(gone.key_id)
    finally:
        store.close()
    server = ServerProcess("dev", url, tmp / "server.log", [], subprocess_env(
        TREADLE_LEASE_TTL="3", TREADLE_AUTH="builtin", TREADLE_JWT_SECRET=SECRET,
        TREADLE_JWT_ISSUER="https://idp.example"), SERVER_GRAPHS / "langgraph.json")
    try:
        server.wait_ready()
        yield World(server, keys, revoked, url)
    finally:
        server.stop(timeout=10)


def token(tenant: str, role: str, *, exp: float = 300, sub: str = "jwt-user") -> str:
    return jwt.encode({"sub": sub, "tenant": tenant, "role": role, "exp": time.time() + exp,
                       "iss": "https://idp.example"}, SECRET, algorithm="HS256")


async def status(call: Awaitable[Any]) -> int:
    try:
        await call
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code
    return 200


@dataclass
class Owned:
    thread: str
    run: str
    assistant: str
    cron: str


@pytest.fixture(scope="module")
def acme(world: World) -> Owned:
    async def make() -> Owned:
        runner, admin = world.client("acme:runner"), world.client("acme:admin")
        # the client's claim to another tenant is overwritten
        thread = await runner.threads.create(metadata={"tenant_id": "beta", "topic": "x"})
        run = await runner.runs.create(thread["thread_id"], "chain", input={"n": 0})
        joined = await runner.runs.join(thread["thread_id"], run["run_id"])
        assert joined == {"n": 10}
        assistant = await admin.assistants.create("chain", name="acme's",
                                                  metadata={"created_by": "system"})
        cron = cast(dict[str, Any], await runner.crons.create_for_thread(
            thread["thread_id"], "chain", schedule="0 0 1 1 *", input={"n": 0}))
        await runner.store.put_item(["notes"], "k", {"secret": "acme's"})
        return Owned(thread["thread_id"], run["run_id"], assistant["assistant_id"],
                     cron["cron_id"])

    return asyncio.run(make())


async def test_credentials_are_required_and_checked(world: World, acme: Owned) -> None:
    for who in ("nobody", world.revoked, token("acme", "admin", exp=-10),
                jwt.encode({"sub": "x", "tenant": "acme", "role": "admin",
                            "exp": time.time() + 60, "iss": "https://idp.example"},
                           "another-secret-of-at-least-32-bytes!!", algorithm="HS256")):
        c = client(world.server, who)
        assert await status(c.threads.search()) == 401, who[:12]
    with httpx.Client(base_url=world.server.url, timeout=30) as http:
        assert http.get("/ok").status_code == 200
        refused = http.get("/threads/" + acme.thread)
        assert refused.status_code == 401
        for sent in world.keys.values():
            assert sent not in refused.text


async def test_resources_are_stamped_with_the_tenant(world: World, acme: Owned) -> None:
    c = world.client("acme:viewer")
    thread = cast(dict[str, Any], await c.threads.get(acme.thread))
    assert thread["metadata"]["tenant_id"] == "acme" and thread["metadata"]["topic"] == "x"
    assistant = cast(dict[str, Any], await c.assistants.get(acme.assistant))
    assert assistant["metadata"]["tenant_id"] == "acme"
    assert "created_by" not in assistant["metadata"]  # no tenant makes the system's
    runner = world.client("acme:runner")
    moved = cast(dict[str, Any], await runner.threads.update(
        acme.thread, metadata={"tenant_id": "beta"}))
    assert moved["metadata"]["tenant_id"] == "acme"


BY_ID = {
    "threads.get": lambda c, o: c.threads.get(o.thread),
    "threads.get_state": lambda c, o: c.threads.get_state(o.thread),
    "threads.get_history": lambda c, o: c.threads.get_history(o.thread),
    "threads.update": lambda c, o: c.threads.update(o.thread, metadata={"k": 1}),
    "runs.get": lambda c, o: c.runs.get(o.thread, o.run),
    "runs.list": lambda c, o: c.runs.list(o.thread),
    "runs.join": lambda c, o: c.runs.join(o.thread, o.run),
    "runs.create": lambda c, o: c.runs.create(o.thread, "chain", input={"n": 0}),
    "assistants.get": lambda c, o: c.assistants.get(o.assistant),
    "assistants.update": lambda c, o: c.assistants.update(o.assistant, name="mine now"),
    "crons.update": lambda c, o: c.crons.update(o.cron, schedule="0 0 2 1 *"),
    "threads.delete": lambda c, o: c.threads.delete(o.thread),
}


@pytest.mark.parametrize("name", list(BY_ID))
@pytest.mark.parametrize("who", ["beta:admin", "jwt:beta:admin"])
async def test_another_tenant_finds_nothing(world: World, acme: Owned, name: str,
                                            who: str) -> None:
    c = world.client(token("beta", "admin") if who.startswith("jwt") else who)
    assert await status(BY_ID[name](c, acme)) == 404, (name, who)


async def test_searches_show_only_the_tenants_own(world: World, acme: Owned) -> None:
    beta = world.client("beta:runner")
    mine = await beta.threads.create()
    for who, sees in (("acme:viewer", True), ("beta:viewer", False),
                      (token("beta", "viewer"), False), (token("acme", "viewer"), True)):
        c = world.client(who)
        threads = [t["thread_id"] for t in await c.threads.search(limit=1000)]
        assert (acme.thread in threads) is sees and (mine["thread_id"] in threads) is not sees
        assert await c.threads.count() == len(threads)
        assistants = await c.assistants.search(limit=100)
        assert (acme.assistant in [a["assistant_id"] for a in assistants]) is sees
        assert any((a["metadata"] or {}).get("created_by") == "system" for a in assistants)
        crons = [x["cron_id"] for x in await c.crons.search(limit=100)]
        assert (acme.cron in crons) is sees
        item = await c.store.get_item(["notes"], "k")
        assert (item is not None) is sees
        assert (len((await c.store.search_items(["notes"]))["items"]) == 1) is sees
    item = cast(Any, await world.client("acme:viewer").store.get_item(["notes"], "k"))
    assert item["namespace"] == ["notes"] and item["value"] == {"secret": "acme's"}
    spaces = await world.client("acme:viewer").store.list_namespaces()
    assert spaces["namespaces"] == [["notes"]]


async def test_another_tenants_thread_cannot_be_named_by_a_cron(world: World,
                                                                acme: Owned) -> None:
    beta = world.client("beta:runner")
    assert await status(beta.crons.create_for_thread(acme.thread, "chain",
                                                     schedule="0 0 1 1 *")) in (403, 404)
    assert await status(beta.runs.create(acme.thread, acme.assistant)) == 404


# --- roles -------------------------------------------------------------------------------------

WRITES: dict[str, tuple[str, Callable[[LangGraphClient], Awaitable[Any]]]] = {
    # the weakest role that may, and the call
    "threads.create": ("runner", lambda c: c.threads.create()),
    "runs.wait_stateless": ("runner", lambda c: c.runs.wait(None, "chain",
                                                            input={"n": 0})),
    "crons.create": ("runner", lambda c: c.crons.create("chain", schedule="0 0 1 1 *")),
    "store.put_item": ("runner", lambda c: c.store.put_item(["n"], "k", {"v": 1})),
    "assistants.create": ("admin", lambda c: c.assistants.create("chain")),
    "threads.search": ("viewer", lambda c: c.threads.search()),
    "assistants.search": ("viewer", lambda c: c.assistants.search()),
    "store.search_items": ("viewer", lambda c: c.store.search_items(["n"])),
}


@pytest.mark.parametrize("name", list(WRITES))
@pytest.mark.parametrize("role", ROLES)
async def test_each_role_does_what_it_may(world: World, name: str, role: str) -> None:
    weakest, call = WRITES[name]
    allowed = ROLES.index(role) >= ROLES.index(weakest)
    assert await status(call(world.client(f"acme:{role}"))) == (200 if allowed else 403)


async def test_only_an_approver_resumes_an_interrupt(world: World) -> None:
    runner, approver = world.client("acme:runner"), world.client("acme:approver")
    thread = (await runner.threads.create())["thread_id"]
    await runner.runs.wait(thread, "approval", input={"request": "deploy"})
    assert (await runner.threads.get(thread))["status"] == "interrupted"
    resume = {"resume": "yes"}
    assert await status(runner.runs.wait(thread, "approval", command=cast(Any, resume))) == 403
    assert await status(runner.threads.update_state(thread, {"decision": "forged"},
                                                    as_node="review")) in (403, 404)
    state = await runner.threads.get_state(thread)
    assert state["next"] == ["review"]  # still waiting
    done = cast(dict[str, Any], await approver.runs.wait(thread, "approval",
                                                         command=cast(Any, resume)))
    assert done["decision"] == "yes" and done["log"][-1] == "published (yes)"


async def test_a_key_revoked_while_the_server_runs_stops_at_once(world: World) -> None:
    store = open_store(world.url)
    try:
        record, key = store.create_api_key("acme", "viewer", "short-lived")
        c = client(world.server, key)
        assert await status(c.threads.search()) == 200
        store.revoke_api_key(record.key_id)
        assert await status(c.threads.search()) == 401
    finally:
        store.close()
