"""The ``/store/*`` routes served over real HTTP (uvicorn), driven by the official
``langgraph-sdk`` client, async and sync."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import UnprocessableEntityError

from treadle.config import get_settings
from treadle.server.context import Ctx
from treadle.server.routes.store import router
from treadle.store import Store, open_store
from treadle.store.items import NamespaceQuery
from treadle.store.memory import TreadleStore


@contextmanager
def _serve(store: Store) -> Iterator[str]:
    """The base URL of the store routes over ``store``, served on a free port."""
    app = FastAPI()
    app.include_router(router)
    app.state.ctx = Ctx(settings=get_settings(), store=store, graphs=None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    """(base URL, store) of the store routes over a SQLite store."""
    store = open_store(f"sqlite:///{tmp_path}/server.db")
    try:
        with _serve(store) as url:
            yield url, store
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def served_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The base URL of the store routes over a SQLite store, then a PostgreSQL one."""
    url = (f"sqlite:///{tmp_path}/server.db" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    store = open_store(url)
    try:
        with _serve(store) as base:
            yield base
    finally:
        store.close()


def test_async_client_round_trip(served: tuple[str, Store]) -> None:
    url, store = served

    async def scenario() -> None:
        client = get_client(url=url, api_key=None)
        await client.store.put_item(["users", "ada"], "prefs", {"theme": "dark", "size": 3})
        await client.store.put_item(["users", "bob"], "prefs", {"theme": "light", "size": 5},
                                    ttl=60)
        await client.store.put_item(["teams", "x"], "info", {"name": "x"})

        item = await client.store.get_item(["users", "ada"], "prefs")
        assert item["namespace"] == ["users", "ada"] and item["key"] == "prefs"
        assert item["value"] == {"theme": "dark", "size": 3}
        created = datetime.fromisoformat(str(item["created_at"]))
        assert created.tzinfo is not None
        assert datetime.fromisoformat(str(item["updated_at"])) == created

        found = await client.store.search_items(["users"], filter={"size": {"$gt": 4}})
        assert [i["key"] for i in found["items"]] == ["prefs"]
        assert found["items"][0]["namespace"] == ["users", "bob"]
        everything = await client.store.search_items([], limit=10, offset=0, query="ignored")
        assert len(everything["items"]) == 3
        paged = await client.store.search_items(["users"], limit=1, offset=1)
        assert len(paged["items"]) == 1

        listed = await client.store.list_namespaces(prefix=["users"])
        assert listed == {"namespaces": [["users", "ada"], ["users", "bob"]]}
        listed = await client.store.list_namespaces(suffix=["*"], max_depth=1)
        assert listed == {"namespaces": [["teams"], ["users"]]}
        listed = await client.store.list_namespaces(prefix=["*", "x"], limit=5, offset=0)
        assert listed == {"namespaces": [["teams", "x"]]}

        await client.store.delete_item(["users", "ada"], "prefs")
        assert await client.store.get_item(["users", "ada"], "prefs") is None

    asyncio.run(scenario())
    # The server wrote to the treadle store: graphs sharing it see the same items.
    item = TreadleStore(store).get(("users", "bob"), "prefs")
    assert item is not None and item.value["theme"] == "light"


def test_sync_client_round_trip(served: tuple[str, Store]) -> None:
    url, store = served
    client = get_sync_client(url=url, api_key=None)
    TreadleStore(store).put(("from", "graph"), "k", {"v": 1})
    assert client.store.get_item(["from", "graph"], "k")["value"] == {"v": 1}
    client.store.put_item(["from", "graph"], "k", {"v": 2}, index=False)
    assert client.store.get_item(["from", "graph"], "k", refresh_ttl=False)["value"] == {"v": 2}
    assert client.store.search_items(["from"], filter={"v": 2})["items"][0]["key"] == "k"
    assert client.store.list_namespaces() == {"namespaces": [["from", "graph"]]}
    client.store.delete_item(["from", "graph"], "k")
    client.store.delete_item(["from", "graph"], "k")  # deleting a missing item is fine
    assert client.store.get_item(["from", "graph"], "k") is None


def test_ttl_over_http(served: tuple[str, Store]) -> None:
    url, store = served
    client = get_sync_client(url=url, api_key=None)
    client.store.put_item(["t"], "k", {"v": 1}, ttl=0.005)  # type: ignore[arg-type]
    (row,) = store.get_items([(("t",), "k")], refresh_ttl=False)
    assert row is not None and row.ttl_minutes == 0.005
    time.sleep(0.6)
    assert client.store.get_item(["t"], "k") is None
    assert client.store.search_items(["t"]) == {"items": []}


def test_a_missing_item_is_null_not_404(served_any: str) -> None:
    # As LangGraph Platform answers: 200 with `null`; the SDK's get_item returns None.
    client = get_sync_client(url=served_any, api_key=None)
    assert client.store.get_item(["never"], "written") is None
    client.store.put_item(["once"], "k", {"v": 1})
    assert client.store.get_item(["once"], "other") is None
    assert client.store.get_item(["once", "deeper"], "k") is None
    r = httpx.get(served_any + "/store/items", params={"namespace": "once", "key": "gone"})
    assert (r.status_code, r.content) == (200, b"null")
    client.store.delete_item(["once"], "k")

    async def scenario() -> None:
        assert await get_client(url=served_any, api_key=None).store.get_item(["once"], "k") is None

    asyncio.run(scenario())


@pytest.mark.parametrize("method, path, body, field", [
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": [1]}, "value"),
    ("PUT", "/store/items", {"namespace": ["a.b"], "key": "k", "value": {}}, "namespace"),
    ("PUT", "/store/items", {"namespace": ["a", ""], "key": "k", "value": {}}, "namespace"),
    ("PUT", "/store/items", {"namespace": [], "key": "k", "value": {}}, "namespace"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "", "value": {}}, "key"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": 0}, "ttl"),
    ("PUT", "/store/items", {"namespace": ["a"], "value": {}}, "key"),
    ("DELETE", "/store/items", {"namespace": ["a.b"], "key": "k"}, "namespace"),
    ("POST", "/store/items/search", {"namespace_prefix": ["a.b"]}, "namespace_prefix"),
    ("POST", "/store/items/search", {"limit": -1}, "limit"),
    ("POST", "/store/items/search", {"filter": [1]}, "filter"),
    ("POST", "/store/namespaces", {"prefix": ["a."]}, "prefix"),
    ("POST", "/store/namespaces", {"max_depth": 0}, "max_depth"),
])
def test_malformed_requests_are_422_naming_the_field(
    served: tuple[str, Store], method: str, path: str, body: dict[str, object], field: str
) -> None:
    url, _ = served
    r = httpx.request(method, url + path, json=body)
    assert r.status_code == 422, r.text
    assert field in [str(part) for e in r.json()["detail"] for part in e["loc"]], r.text


def test_input_the_store_refuses_is_422_with_its_reason(served: tuple[str, Store]) -> None:
    url, store = served
    client = get_sync_client(url=url, api_key=None)
    with pytest.raises(UnprocessableEntityError, match=r"\$regex"):
        client.store.search_items(["a"], filter={"v": {"$regex": "x"}})
    with pytest.raises(UnprocessableEntityError, match="langgraph"):
        client.store.put_item(["langgraph"], "k", {"v": 1})
    r = httpx.put(url + "/store/items", content=b'{"namespace": ["a"], "key": "k", "value": {"v": NaN}}',
                  headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not JSON" in r.json()["detail"]
    r = httpx.get(url + "/store/items", params={"namespace": "a..b", "key": "k"})
    assert r.status_code == 422 and "none of them empty" in r.json()["detail"]
    r = httpx.get(url + "/store/items", params={"namespace": "a"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "key"]
    assert store.list_item_namespaces(NamespaceQuery()) == []  # nothing was written


def test_the_routes_are_documented(served: tuple[str, Store]) -> None:
    url, _ = served
    spec = httpx.get(url + "/openapi.json").json()
    assert set(spec["paths"]) == {"/store/items", "/store/items/search", "/store/namespaces"}
    assert set(spec["paths"]["/store/items"]) == {"put", "get", "delete"}
    schemas = spec["components"]["schemas"]
    assert {"PutItem", "SearchItems", "ListNamespaces", "StoreItem"} <= set(schemas)
    assert set(schemas["PutItem"]["required"]) == {"namespace", "key", "value"}
