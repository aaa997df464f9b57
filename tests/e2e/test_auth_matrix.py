"""The security matrix: every endpoint × every principal × every auth flavour, one table.

Flavours: a custom ``langgraph_sdk.Auth`` written as the LangGraph docs show (owner metadata
and a filter; ``auth_graphs/owner_auth.py``), the built-in auth with API keys, and the
built-in auth with HS256 JWTs. Principals: nobody, the owner of the resources, another user
of the owner's tenant and a user of another tenant. One server per flavour (SQLite); the
owner makes a thread (with a finished run), an assistant, a cron and a store item, and every
endpoint is called as each principal. The expected outcome of each cell comes from
:func:`expected`, written from the documented semantics (docs: authz, builtin).

``test_the_matrix_lists_every_route`` fails when the app has a route the table misses.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
import pytest
import websockets
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from processes import SERVER_GRAPHS, ServerProcess, subprocess_env
from treadle.store import open_store

pytestmark = pytest.mark.timeout(240)

AUTH_GRAPHS = Path(__file__).resolve().parent / "auth_graphs"
SECRET = "matrix-shared-secret-of-at-least-32-bytes"
PRINCIPALS = ("nobody", "owner", "same_tenant", "other_tenant")
FLAVOURS = ("custom", "keys", "jwt")


@dataclass(frozen=True)
class Endpoint:
    """One route: how to call it and what kind of access it is.

    kind: ``public`` (no credentials needed), ``id`` (reaches the owner's resource by id),
    ``open`` (creates the caller's own, or runs statelessly), ``search`` (lists; the owner's
    rows must not show to those who may not read them), ``bulk`` (names the owner's by id
    in a body: what the caller may not touch is skipped, unseen), ``admin`` (admin only),
    ``cluster_admin`` (an admin of no tenant only: none here, every built-in user has one),
    ``write`` (as ``id``, but the built-in auth needs admin: assistants' writes).
    ``fresh``: the call destroys what it names, so the owner makes a new one for the cell.
    """

    method: str
    route: str
    path: str
    kind: str
    body: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    fresh: bool = False
    sse: bool = False
    ws: bool = False
    headers: dict[str, str] = field(default_factory=dict)


T, R, A, C = "{thread}", "{run}", "{assistant}", "{cron}"
G = "{graph}"
E = Endpoint
RUN_BODY = {"assistant_id": G, "input": "{input}"}
ENDPOINTS: dict[str, Endpoint] = {
    # meta
    "ok": E("GET", "/ok", "/ok", "public"),
    "healthz": E("GET", "/healthz", "/healthz", "public"),
    "readyz": E("GET", "/readyz", "/readyz", "public"),
    "info": E("GET", "/info", "/info", "public"),
    "metrics": E("GET", "/metrics", "/metrics", "public"),
    # the web console's files: public (they hold no data; its API calls are authenticated)
    "console.moved": E("GET", "/console", "/console", "redirect"),
    "console.page": E("GET", "/console/", "/console/", "public"),
    "console.file": E("GET", "/console/assets/{name:path}", "/console/assets/js/api.js", "public"),
    # assistants
    "assistants.create": E("POST", "/assistants", "/assistants", "open_admin",
                           {"graph_id": G, "name": "made in a cell"}),
    "assistants.search": E("POST", "/assistants/search", "/assistants/search", "search",
                           {"limit": 1000}),
    "assistants.count": E("POST", "/assistants/count", "/assistants/count", "count", {}),
    "assistants.get": E("GET", "/assistants/{assistant_id}", f"/assistants/{A}", "id"),
    "assistants.update": E("PATCH", "/assistants/{assistant_id}", f"/assistants/{A}", "write",
                           {"name": "renamed"}),
    "assistants.delete": E("DELETE", "/assistants/{assistant_id}", f"/assistants/{A}", "write",
                           fresh=True),
    "assistants.graph": E("GET", "/assistants/{assistant_id}/graph", f"/assistants/{A}/graph",
                          "id"),
    "assistants.schemas": E("GET", "/assistants/{assistant_id}/schemas",
                            f"/assistants/{A}/schemas", "id"),
    "assistants.subgraphs": E("GET", "/assistants/{assistant_id}/subgraphs",
                              f"/assistants/{A}/subgraphs", "id"),
    "assistants.subgraphs_ns": E("GET", "/assistants/{assistant_id}/subgraphs/{namespace}",
                                 f"/assistants/{A}/subgraphs/none", "id"),
    "assistants.versions": E("POST", "/assistants/{assistant_id}/versions",
                             f"/assistants/{A}/versions", "id", {}),
    "assistants.latest": E("POST", "/assistants/{assistant_id}/latest",
                           f"/assistants/{A}/latest", "write", {"version": 1}),
    # threads
    "threads.create": E("POST", "/threads", "/threads", "open", {}),
    "threads.search": E("POST", "/threads/search", "/threads/search", "search", {"limit": 1000}),
    "threads.count": E("POST", "/threads/count", "/threads/count", "count", {}),
    "threads.prune": E("POST", "/threads/prune", "/threads/prune", "bulk",
                       {"thread_ids": [T]}, fresh=True),
    "threads.get": E("GET", "/threads/{thread_id}", f"/threads/{T}", "id"),
    "threads.patch": E("PATCH", "/threads/{thread_id}", f"/threads/{T}", "id",
                       {"metadata": {"k": 1}}),
    "threads.delete": E("DELETE", "/threads/{thread_id}", f"/threads/{T}", "id", fresh=True),
    "threads.copy": E("POST", "/threads/{thread_id}/copy", f"/threads/{T}/copy", "id"),
    "threads.storage": E("GET", "/threads/{thread_id}/storage", f"/threads/{T}/storage", "id"),
    "threads.state": E("GET", "/threads/{thread_id}/state", f"/threads/{T}/state", "id"),
    "threads.state_at": E("GET", "/threads/{thread_id}/state/{checkpoint_id}",
                          f"/threads/{T}/state/{{checkpoint}}", "id"),
    "threads.state_checkpoint": E("POST", "/threads/{thread_id}/state/checkpoint",
                                  f"/threads/{T}/state/checkpoint", "id",
                                  {"checkpoint": {"checkpoint_id": "{checkpoint}"}}),
    "threads.update_state": E("POST", "/threads/{thread_id}/state", f"/threads/{T}/state", "id",
                              {"values": {"n": 5}}),
    "threads.history_post": E("POST", "/threads/{thread_id}/history",
                              f"/threads/{T}/history", "id", {}),
    "threads.history_get": E("GET", "/threads/{thread_id}/history", f"/threads/{T}/history",
                             "id"),
    # runs on a thread
    "runs.create": E("POST", "/threads/{thread_id}/runs", f"/threads/{T}/runs", "id", RUN_BODY),
    "runs.stream": E("POST", "/threads/{thread_id}/runs/stream", f"/threads/{T}/runs/stream",
                     "id", RUN_BODY),
    "runs.wait": E("POST", "/threads/{thread_id}/runs/wait", f"/threads/{T}/runs/wait", "id",
                   RUN_BODY),
    "runs.list": E("GET", "/threads/{thread_id}/runs", f"/threads/{T}/runs", "id"),
    "runs.get": E("GET", "/threads/{thread_id}/runs/{run_id}", f"/threads/{T}/runs/{R}", "id"),
    "runs.delete": E("DELETE", "/threads/{thread_id}/runs/{run_id}", f"/threads/{T}/runs/{R}",
                     "id", fresh=True),
    "runs.join": E("GET", "/threads/{thread_id}/runs/{run_id}/join",
                   f"/threads/{T}/runs/{R}/join", "id"),
    "runs.join_stream": E("GET", "/threads/{thread_id}/runs/{run_id}/stream",
                          f"/threads/{T}/runs/{R}/stream", "id"),
    "runs.cancel": E("POST", "/threads/{thread_id}/runs/{run_id}/cancel",
                     f"/threads/{T}/runs/{R}/cancel", "id", fresh=True),
    # stateless runs
    "runs.create_stateless": E("POST", "/runs", "/runs", "open", RUN_BODY),
    "runs.stream_stateless": E("POST", "/runs/stream", "/runs/stream", "open", RUN_BODY),
    "runs.wait_stateless": E("POST", "/runs/wait", "/runs/wait", "open", RUN_BODY),
    "runs.batch": E("POST", "/runs/batch", "/runs/batch", "open", [RUN_BODY]),
    "runs.cancel_many": E("POST", "/runs/cancel", "/runs/cancel", "bulk",
                          {"thread_id": T, "run_ids": [R]}, fresh=True),
    # crons
    "crons.create_for_thread": E("POST", "/threads/{thread_id}/runs/crons",
                                 f"/threads/{T}/runs/crons", "id",
                                 {"assistant_id": G, "schedule": "0 0 1 1 *"}),
    "crons.create": E("POST", "/runs/crons", "/runs/crons", "open",
                      {"assistant_id": G, "schedule": "0 0 1 1 *"}),
    "crons.delete": E("DELETE", "/runs/crons/{cron_id}", f"/runs/crons/{C}", "id", fresh=True),
    "crons.update": E("PATCH", "/runs/crons/{cron_id}", f"/runs/crons/{C}", "id",
                      {"schedule": "0 0 2 1 *"}),
    "crons.search": E("POST", "/runs/crons/search", "/runs/crons/search", "search",
                      {"limit": 1000}),
    "crons.count": E("POST", "/runs/crons/count", "/runs/crons/count", "count", {}),
    # store (per user / per tenant namespaces: another's item is simply not there)
    "store.put": E("PUT", "/store/items", "/store/items", "open",
                   {"namespace": ["cell"], "key": "k", "value": {"v": 1}}),
    "store.get": E("GET", "/store/items", "/store/items", "store_get",
                   params={"namespace": "notes", "key": "k"}),
    "store.delete": E("DELETE", "/store/items", "/store/items", "store_delete",
                      {"namespace": ["notes"], "key": "{key}"}, fresh=True),
    "store.search": E("POST", "/store/items/search", "/store/items/search", "store_search",
                      {"namespace_prefix": ["notes"]}),
    "store.namespaces": E("POST", "/store/namespaces", "/store/namespaces", "store_search", {}),
    # the thread stream protocol
    "thread_stream.get": E("GET", "/threads/{thread_id}/stream", f"/threads/{T}/stream", "id",
                           sse=True),
    "thread_stream.commands": E("POST", "/threads/{thread_id}/commands",
                                f"/threads/{T}/commands", "id",
                                {"id": 1, "method": "run.start",
                                 "params": {"assistant_id": G, "input": "{input}"}}),
    "thread_stream.events": E("POST", "/threads/{thread_id}/stream/events",
                              f"/threads/{T}/stream/events", "id", {"channels": ["values"]},
                              sse=True),
    "thread_stream.events_ws": E("WS", "/threads/{thread_id}/stream/events",
                                 f"/threads/{T}/stream/events", "id", ws=True),
    # the assistants as MCP tools (a tools/list shows only the assistants one may read) and
    # as A2A agents (another's assistant is not found)
    "mcp": E("POST", "/mcp", "/mcp", "search", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
             headers={"Accept": "application/json"}),
    "a2a.card": E("GET", "/.well-known/agent-card.json", "/.well-known/agent-card.json", "id",
                  params={"assistant_id": A}),
    "a2a.send": E("POST", "/a2a/{assistant_id}", f"/a2a/{A}", "id", {
        "jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
            "role": "user", "messageId": "m-1", "kind": "message",
            "parts": [{"kind": "data", "data": "{input}"}]}}}),
    # audit (admin only)
    "audit": E("GET", "/audit", "/audit", "admin"),
    "audit.verify": E("GET", "/audit/verify", "/audit/verify", "admin"),
    # the operations view (admins of no tenant only)
    "operations": E("GET", "/operations", "/operations", "cluster_admin"),
}


async def _drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [part async for part in stream]


Sdk = Callable[[LangGraphClient, dict[str, Any]], Awaitable[Any]]
# The endpoints the official SDK has a method for are called through it (the rest: httpx).
SDK: dict[str, Sdk] = {
    "assistants.create": lambda c, n: c.assistants.create(n["graph"], name="made in a cell"),
    "assistants.search": lambda c, n: c.assistants.search(limit=1000),
    "assistants.count": lambda c, n: c.assistants.count(),
    "assistants.get": lambda c, n: c.assistants.get(n["assistant"]),
    "assistants.update": lambda c, n: c.assistants.update(n["assistant"], name="renamed"),
    "assistants.delete": lambda c, n: c.assistants.delete(n["assistant"]),
    "assistants.graph": lambda c, n: c.assistants.get_graph(n["assistant"]),
    "assistants.schemas": lambda c, n: c.assistants.get_schemas(n["assistant"]),
    "assistants.subgraphs": lambda c, n: c.assistants.get_subgraphs(n["assistant"]),
    "assistants.subgraphs_ns": lambda c, n: c.assistants.get_subgraphs(n["assistant"],
                                                                       namespace="none"),
    "assistants.versions": lambda c, n: c.assistants.get_versions(n["assistant"]),
    "assistants.latest": lambda c, n: c.assistants.set_latest(n["assistant"], 1),
    "threads.create": lambda c, n: c.threads.create(),
    "threads.search": lambda c, n: c.threads.search(limit=1000),
    "threads.count": lambda c, n: c.threads.count(),
    "threads.prune": lambda c, n: c.threads.prune([n["thread"]]),
    "threads.get": lambda c, n: c.threads.get(n["thread"]),
    "threads.patch": lambda c, n: c.threads.update(n["thread"], metadata={"k": 1}),
    "threads.delete": lambda c, n: c.threads.delete(n["thread"]),
    "threads.copy": lambda c, n: c.threads.copy(n["thread"]),
    "threads.state": lambda c, n: c.threads.get_state(n["thread"]),
    "threads.state_at": lambda c, n: c.threads.get_state(n["thread"],
                                                         checkpoint_id=n["checkpoint"]),
    "threads.state_checkpoint": lambda c, n: c.threads.get_state(
        n["thread"], checkpoint=cast(Any, {"checkpoint_id": n["checkpoint"]})),
    "threads.update_state": lambda c, n: c.threads.update_state(n["thread"], {"n": 5}),
    "threads.history_post": lambda c, n: c.threads.get_history(n["thread"]),
    "runs.create": lambda c, n: c.runs.create(n["thread"], n["graph"], input=n["input"]),
    "runs.stream": lambda c, n: _drain(c.runs.stream(n["thread"], n["graph"],
                                                     input=n["input"])),
    "runs.wait": lambda c, n: c.runs.wait(n["thread"], n["graph"], input=n["input"]),
    "runs.list": lambda c, n: c.runs.list(n["thread"]),
    "runs.get": lambda c, n: c.runs.get(n["thread"], n["run"]),
    "runs.delete": lambda c, n: c.runs.delete(n["thread"], n["run"]),
    "runs.join": lambda c, n: c.runs.join(n["thread"], n["run"]),
    "runs.join_stream": lambda c, n: _drain(c.runs.join_stream(n["thread"], n["run"])),
    "runs.cancel": lambda c, n: c.runs.cancel(n["thread"], n["run"]),
    "runs.create_stateless": lambda c, n: c.runs.create(None, n["graph"], input=n["input"]),
    "runs.stream_stateless": lambda c, n: _drain(c.runs.stream(None, n["graph"],
                                                               input=n["input"])),
    "runs.wait_stateless": lambda c, n: c.runs.wait(None, n["graph"], input=n["input"]),
    "runs.batch": lambda c, n: c.runs.create_batch(
        cast(Any, [{"assistant_id": n["graph"], "input": n["input"]}])),
    "runs.cancel_many": lambda c, n: c.runs.cancel_many(thread_id=n["thread"],
                                                        run_ids=[n["run"]]),
    "crons.create_for_thread": lambda c, n: c.crons.create_for_thread(
        n["thread"], n["graph"], schedule="0 0 1 1 *"),
    "crons.create": lambda c, n: c.crons.create(n["graph"], schedule="0 0 1 1 *"),
    "crons.delete": lambda c, n: c.crons.delete(n["cron"]),
    "crons.update": lambda c, n: c.crons.update(n["cron"], schedule="0 0 2 1 *"),
    "crons.search": lambda c, n: c.crons.search(limit=1000),
    "crons.count": lambda c, n: c.crons.count(),
    "store.put": lambda c, n: c.store.put_item(["cell"], "k", {"v": 1}),
    "store.get": lambda c, n: c.store.get_item(["notes"], "k"),
    "store.delete": lambda c, n: c.store.delete_item(["notes"], n["key"]),
    "store.search": lambda c, n: c.store.search_items(["notes"]),
    "store.namespaces": lambda c, n: c.store.list_namespaces(),
}


def expected(flavour: str, who: str, ep: Endpoint) -> str:
    """The outcome the documented semantics give: a status, "2xx", or "2xx-hidden" (a
    search or read that succeeds without showing the owner's rows)."""
    if ep.kind == "public":
        return "2xx"
    if ep.kind == "redirect":  # to a public page, for anyone
        return "307"
    if ep.ws and who != "owner" and not (flavour != "custom" and who == "same_tenant"):
        return "403"  # refused before the handshake: every refusal is an HTTP 403
    if who == "nobody":
        return "401"
    custom = flavour == "custom"
    # who may read the owner's: the owner; in the built-in auth, the owner's tenant too
    sees = who == "owner" or (not custom and who == "same_tenant")
    if ep.kind == "cluster_admin":  # custom users are no admins; built-in ones have tenants
        return "403"
    if ep.kind == "admin":  # custom users carry no admin permission; built-in: role admin
        return "403" if custom or who == "same_tenant" else "2xx"
    if ep.kind in ("open", "count"):
        return "2xx"
    if ep.kind == "bulk":  # what the caller may not touch is skipped: the owner's stays
        return "2xx" if sees else "2xx-hidden"
    if ep.kind == "open_admin":  # creating assistants: admin in the built-in auth
        return "403" if not custom and who == "same_tenant" else "2xx"
    if ep.kind in ("search", "store_search", "store_get"):
        return "2xx" if sees else "2xx-hidden"
    if ep.kind == "store_delete":  # deleting in one's own namespace: the owner's item stays
        return "2xx" if sees else "2xx-hidden"
    if ep.kind == "write" and not custom and who == "same_tenant":
        return "404"  # a runner may not write assistants: denied by id is not found
    return "2xx" if sees else "404"


# --- servers --------------------------------------------------------------------------------


@dataclass
class World:
    flavour: str
    server: ServerProcess
    headers: dict[str, dict[str, str]]
    graph: str
    input: dict[str, Any]
    owned: dict[str, str] = field(default_factory=dict)


def _token(tenant: str, role: str, sub: str) -> str:
    return jwt.encode({"sub": sub, "tenant": tenant, "role": role, "exp": time.time() + 3600},
                      SECRET, algorithm="HS256")


def _start(tmp: Path, flavour: str) -> World:
    url = f"sqlite:///{tmp / 'matrix.db'}"
    if flavour == "custom":
        server = ServerProcess("dev", url, tmp / "server.log", [],
                               subprocess_env(TREADLE_LEASE_TTL="3"),
                               AUTH_GRAPHS / "langgraph.json")
        headers = {"owner": {"Authorization": "Bearer alice-token"},
                   "same_tenant": {"Authorization": "Bearer bob-token"},
                   "other_tenant": {"Authorization": "Bearer carol-token"}}
        world = World(flavour, server, headers, "whoami", {"n": 1})
    else:
        store = open_store(url)
        try:
            keys = {f"{t}:{r}": store.create_api_key(t, r, f"{t} {r}")[1]
                    for t, r in (("acme", "admin"), ("acme", "runner"), ("beta", "admin"))}
        finally:
            store.close()
        server = ServerProcess("dev", url, tmp / "server.log", [], subprocess_env(
            TREADLE_LEASE_TTL="3", TREADLE_AUTH="builtin", TREADLE_JWT_SECRET=SECRET),
            SERVER_GRAPHS / "langgraph.json")
        if flavour == "keys":
            headers = {"owner": {"x-api-key": keys["acme:admin"]},
                       "same_tenant": {"x-api-key": keys["acme:runner"]},
                       "other_tenant": {"x-api-key": keys["beta:admin"]}}
        else:
            headers = {w: {"Authorization": f"Bearer {_token(t, r, s)}"}
                       for w, t, r, s in (("owner", "acme", "admin", "ann"),
                                          ("same_tenant", "acme", "runner", "sam"),
                                          ("other_tenant", "beta", "admin", "ola"))}
        world = World(flavour, server, headers, "chain", {"n": 0})
    world.headers["nobody"] = {}
    return world


def _http(world: World, who: str) -> httpx.Client:
    return httpx.Client(base_url=world.server.url, headers=world.headers[who], timeout=60)


def _make(world: World, owned: dict[str, str], *, key: str = "k") -> dict[str, str]:
    """The owner's thread (with a finished run), assistant, cron and store item."""
    with _http(world, "owner") as http:
        def ok(r: httpx.Response) -> Any:
            assert r.status_code < 300, (r.request.url, r.status_code, r.text)
            return r.json() if r.content else None

        thread = ok(http.post("/threads", json={"metadata": {"topic": "x"}}))["thread_id"]
        ok(http.post(f"/threads/{thread}/runs/wait",
                     json={"assistant_id": world.graph, "input": world.input}))
        run = ok(http.get(f"/threads/{thread}/runs"))[0]["run_id"]
        state = ok(http.get(f"/threads/{thread}/state"))
        assistant = ok(http.post("/assistants", json={"graph_id": world.graph,
                                                      "name": "the owner's"}))["assistant_id"]
        cron = ok(http.post("/runs/crons", json={"assistant_id": world.graph,
                                                 "schedule": "0 0 1 1 *"}))["cron_id"]
        ok(http.put("/store/items", json={"namespace": ["notes"], "key": key,
                                          "value": {"secret": "the owner's"}}))
    return {**owned, "thread": thread, "run": run, "assistant": assistant, "cron": cron,
            "checkpoint": state["checkpoint"]["checkpoint_id"], "key": key}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, World]]:
    made: dict[str, World] = {}
    try:
        for flavour in FLAVOURS:
            made[flavour] = _start(tmp_path_factory.mktemp(f"matrix-{flavour}"), flavour)
        for world in made.values():
            world.server.wait_ready()
            world.owned = _make(world, {})
        yield made
    finally:
        for world in made.values():
            world.server.stop(timeout=10)


# --- one cell -------------------------------------------------------------------------------


def _fill(value: Any, names: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in names \
                and not isinstance(names[value[1:-1]], str):
            return names[value[1:-1]]
        for name, got in names.items():
            if isinstance(got, str):
                value = value.replace("{" + name + "}", got)
        return value
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


async def _ws_status(world: World, who: str, path: str) -> int:
    url = world.server.url.replace("http://", "ws://") + path
    try:
        async with websockets.connect(url, additional_headers=world.headers[who],
                                      open_timeout=30) as ws:
            await ws.send('{"channels": ["values"]}')
            return 200
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code
    except websockets.exceptions.ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code - 4000


async def _sdk(world: World, who: str, call: Sdk, names: dict[str, Any]) -> tuple[int, Any]:
    headers = dict(world.headers[who])
    key = headers.pop("x-api-key", None)  # the SDK sends its api_key as x-api-key
    client = get_client(url=world.server.url, api_key=key, headers=headers)
    try:
        return 200, await call(client, names)
    except httpx.HTTPStatusError as exc:  # (the SDK raises its APIStatusError, or this)
        return exc.response.status_code, None


def _call(world: World, who: str, name: str, names: dict[str, Any]) -> tuple[int, Any]:
    """The status and the (JSON) answer of endpoint ``name`` called as ``who``."""
    ep = ENDPOINTS[name]
    if name in SDK:
        return asyncio.run(_sdk(world, who, SDK[name], names))
    path = _fill(ep.path, names)
    if ep.ws:
        return asyncio.run(_ws_status(world, who, path)), None
    body = _fill(ep.body, names) if ep.body is not None else None
    with _http(world, who) as http:
        request = http.build_request(ep.method, path, json=body,
                                     params=_fill(ep.params, names), headers=ep.headers)
        response = http.send(request, stream=ep.sse)
        if ep.sse:
            response.close()  # the status is what matters; the stream does not end
            return response.status_code, None
        response.read()
        json_body = response.headers.get("content-type", "").startswith("application/json")
        return response.status_code, response.json() if json_body else response.text


def _hidden(world: World, ep: Endpoint, answer: Any) -> bool:
    """Whether a 2xx answer keeps the owner's rows out of sight."""
    if ep.kind == "store_get":
        return answer is None
    if ep.kind == "bulk":
        return answer is None or answer == {"pruned_count": 0}
    text = json.dumps(answer, default=str)
    if ep.kind == "store_search":
        return "notes" not in text
    return not any(world.owned[n] in text for n in ("thread", "assistant", "cron"))


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("name", list(ENDPOINTS))
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cell(worlds: dict[str, World], flavour: str, name: str, who: str) -> None:
    world, ep = worlds[flavour], ENDPOINTS[name]
    names: dict[str, Any] = {**world.owned, "graph": world.graph, "input": world.input}
    if ep.fresh:
        names.update(_make(world, {}, key=f"k-{uuid.uuid4().hex[:8]}"))
    want = expected(flavour, who, ep)
    status, answer = _call(world, who, name, names)
    cell = (flavour, name, who, want, status)
    if want in ("2xx", "2xx-hidden"):
        assert 200 <= status < 300, cell
        if want == "2xx-hidden" and ep.kind != "store_delete":
            assert _hidden(world, ep, answer), (cell, str(answer)[:300])
        if name == "audit" and who == "other_tenant":
            tenants = {r.get("tenant") for r in answer["records"]}
            assert tenants <= {"beta"}, (cell, "another tenant's audit records", tenants)
    else:
        assert status == int(want), cell
    if ep.fresh and want != "2xx":  # a refused (or elsewhere-aimed) delete left it there
        with _http(world, "owner") as http:
            if ep.kind == "store_delete":
                item = http.get("/store/items", params={"namespace": "notes",
                                                        "key": names["key"]})
                assert item.status_code == 200 and item.json() is not None, cell
            else:
                assert http.get(f"/threads/{names['thread']}").status_code == 200, cell
                assert http.get(f"/assistants/{names['assistant']}").status_code == 200, cell
                assert http.get(f"/threads/{names['thread']}/runs/{names['run']}"
                                ).status_code == 200, cell


def test_the_matrix_lists_every_route() -> None:
    """A route the app serves and the table does not list fails here."""
    from treadle.config import Settings
    from treadle.server.app import create_app

    def walk(routes: list[Any]) -> Iterator[Any]:
        for route in routes:
            inner = getattr(route, "original_router", None)  # an included router
            yield from walk(inner.routes) if inner is not None else (route,)

    app = create_app(Settings(), {})
    served = set()
    for route in walk(list(app.routes)):
        path = route.path
        methods = getattr(route, "methods", None) or {"WS"}
        for method in methods - {"HEAD", "OPTIONS"}:
            if not path.startswith(("/docs", "/redoc", "/openapi")):
                served.add((method, path))
    listed = {(ep.method, ep.route) for ep in ENDPOINTS.values()}
    assert served - listed == set(), "routes the auth matrix does not cover"
    assert listed - served == set(), "the matrix lists routes the app does not serve"

