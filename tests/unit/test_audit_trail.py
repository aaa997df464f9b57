"""The audit trail middleware: which calls it records, as what, with which ids, request ids
and principal; the admin check of ``GET /audit``. The real app (no graphs) on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fake_auth import FakeAuth
from treadle.config import get_settings
from treadle.server.app import create_app
from treadle.server.audit_actions import MUTATING, READ_ONLY, ROUTES, classify, command_action

READ_ONLY_POSTS = ["/threads/search", "/threads/count", "/assistants/search",
                   "/assistants/count", "/runs/crons/search", "/runs/crons/count",
                   "/store/items/search", "/store/namespaces", "/threads/t1/history",
                   "/threads/t1/state/checkpoint", "/assistants/a1/versions",
                   "/threads/t1/stream/events"]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = get_settings(store=f"sqlite:///{tmp_path}/s.db")
    with TestClient(create_app(settings, {})) as http:
        yield http


def records(http: TestClient, **params: Any) -> list[dict[str, Any]]:
    found = http.get("/audit", params={"limit": 1000, **params})
    assert found.status_code == 200, found.text
    out: list[dict[str, Any]] = found.json()["records"]
    return out


# --- classification (no server) ---------------------------------------------------------
def test_every_mutating_route_of_the_app_has_a_row(tmp_path: Path) -> None:
    """A new route must be added to audit_actions.ROUTES (recorded or read-only)."""
    app = create_app(get_settings(store=f"sqlite:///{tmp_path}/s.db"), {})
    rows: set[int] = set()
    for template, operations in app.openapi()["paths"].items():
        for method in {m.upper() for m in operations} & MUTATING:
            path = template.replace("{", "").replace("}", "")  # any value for a parameter
            action = classify(method, path)
            assert action is not None and not action.action.startswith("http."), (method, path)
            rows.add(next(i for i, (m, p, _) in enumerate(ROUTES) if m == method and p.match(path)))
    stale = [(m, p.pattern) for i, (m, p, _) in enumerate(ROUTES) if i not in rows]
    assert stale == [], "rows for routes the app does not have"


def test_classification() -> None:
    for path in READ_ONLY_POSTS:
        action = classify("POST", path)
        assert action is not None and not action.recorded and action.action == READ_ONLY, path
    mcp = classify("POST", "/mcp")  # MCP and A2A requests: recorded
    assert mcp is not None and mcp.action == "mcp.request"
    a2a = classify("POST", "/a2a/a-1")
    assert a2a is not None and (a2a.action, a2a.resource_id) == ("a2a.request", "a-1")
    assert classify("GET", "/threads/t1") is None
    assert classify("HEAD", "/threads") is None
    a = classify("POST", "/threads")
    assert a is not None and (a.action, a.resource, a.id_field) == ("threads.create", "threads",
                                                                     "thread_id")
    a = classify("PATCH", "/threads/t-9/")
    assert a is not None and (a.action, a.resource_id) == ("threads.update", "t-9")
    a = classify("POST", "/threads/t1/runs/r1/cancel")
    assert a is not None and (a.action, a.resource_id, a.param("thread_id")) == (
        "runs.cancel", "r1", "t1")
    a = classify("POST", "/runs/crons")
    assert a is not None and a.action == "crons.create"
    a = classify("DELETE", "/runs/crons/c1")
    assert a is not None and (a.action, a.resource_id) == ("crons.delete", "c1")
    a = classify("PUT", "/store/items")
    assert a is not None and (a.action, a.id_from) == ("store.put", "store_item")
    a = classify("POST", "/nope/x")
    assert a is not None and a.recorded and (a.action, a.resource) == ("http.post", None)
    assert len({(m, p.pattern) for m, p, _ in ROUTES}) == len(ROUTES)  # no row twice
    assert command_action("run.start") == "threads.command.run.start"
    assert command_action("input.respond") == "threads.command.input.respond"
    assert command_action("state.get") is None and command_action(None) is None


# --- the middleware, in the real app ------------------------------------------------------
def test_mutating_calls_are_recorded_once_reads_are_not(client: TestClient) -> None:
    created = client.post("/threads", json={"metadata": {"secret_word": "swordfish"}})
    assert created.status_code == 200
    thread_id = created.json()["thread_id"]
    assert client.patch(f"/threads/{thread_id}", json={"metadata": {"a": 1}}).status_code == 200
    assert client.post("/threads/search", json={}).status_code == 200
    assert client.post("/threads/count", json={}).status_code == 200
    assert client.get(f"/threads/{thread_id}").status_code == 200
    assert client.put("/store/items", json={"namespace": ["a", "b"], "key": "k",
                                            "value": {"v": "swordfish"}}).status_code == 204
    assert client.post("/store/items/search", json={"namespace_prefix": ["a"]}).status_code == 200
    assert client.request("DELETE", "/store/items",
                          json={"namespace": ["a", "b"], "key": "k"}).status_code == 204
    assert client.delete("/threads/nope").status_code == 404
    assert client.post("/nowhere", json={}).status_code in (404, 405)
    assert client.delete(f"/threads/{thread_id}").status_code == 204
    got = records(client)
    assert [(r["action"], r["resource"], r["resource_id"], r["outcome"]) for r in got] == [
        ("threads.create", "threads", thread_id, "200"),
        ("threads.update", "threads", thread_id, "200"),
        ("store.put", "store", "a.b/k", "204"),
        ("store.delete", "store", "a.b/k", "204"),
        ("threads.delete", "threads", "nope", "404"),
        ("http.post", None, None, "404"),
        ("threads.delete", "threads", thread_id, "204"),
    ]
    assert {r["actor"] for r in got} == {"anonymous"} and {r["tenant"] for r in got} == {None}
    assert got[0]["detail"] == {"method": "POST", "path": "/threads"}
    assert "swordfish" not in client.get("/audit").text  # no bodies
    assert client.get("/audit/verify").json()["ok"] is True


def test_request_ids(client: TestClient) -> None:
    given = client.post("/threads", json={}, headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.post("/threads", json={})
    bad = client.post("/threads", json={}, headers={"X-Request-Id": "no spaces\tplease"})
    assert len(made.headers["x-request-id"]) == 32
    assert bad.headers["x-request-id"] != "no spaces\tplease"
    assert client.get("/ok").headers["x-request-id"]  # every call gets one
    assert [r["request_id"] for r in records(client)] == [
        "abc-123", made.headers["x-request-id"], bad.headers["x-request-id"]]


def test_actor_and_tenant_come_from_the_authenticated_user(tmp_path: Path) -> None:
    settings = get_settings(store=f"sqlite:///{tmp_path}/s.db")
    app = create_app(settings, {})
    app.add_middleware(FakeAuth)  # outermost: sets the principal before the audit trail
    with TestClient(app) as http:
        http.post("/threads", json={}, headers={"x-user": "alice:runner:acme"})
        http.post("/threads", json={})
        assert http.get("/audit", headers={"x-user": "alice:runner"}).status_code == 403
        assert http.get("/audit/verify", headers={"x-user": "bob:viewer"}).status_code == 403
        got = http.get("/audit", headers={"x-user": "root:admin"})
        assert got.status_code == 200
        assert [(r["actor"], r["tenant"]) for r in got.json()["records"]] == [
            ("alice", "acme"), ("anonymous", None)]
        # An admin of a tenant reads its tenant's records only, whatever it asks for.
        http.post("/threads", json={}, headers={"x-user": "carol:admin:acme"})
        own = http.get("/audit", headers={"x-user": "carol:admin:acme"}).json()["records"]
        assert [(r["actor"], r["tenant"]) for r in own] == [("alice", "acme"), ("carol", "acme")]
        other = http.get("/audit", params={"tenant": "globex"},
                         headers={"x-user": "carol:admin:acme"}).json()["records"]
        assert other == []
        assert http.get("/audit/verify", headers={"x-user": "root:admin"}).json()["ok"]


def test_list_filters_and_pages(client: TestClient) -> None:
    ids = [client.post("/threads", json={}).json()["thread_id"] for _ in range(3)]
    client.delete(f"/threads/{ids[1]}")
    assert [r["resource_id"] for r in records(client, action="threads.delete")] == [ids[1]]
    assert [r["seq"] for r in records(client, resource_id=ids[1])] == [2, 4]
    page = client.get("/audit", params={"limit": 2}).json()
    assert [r["seq"] for r in page["records"]] == [1, 2] and page["next_after_seq"] == 2
    rest = client.get("/audit", params={"after_seq": 2}).json()
    assert [r["seq"] for r in rest["records"]] == [3, 4] and rest["next_after_seq"] is None
    assert client.get("/audit", params={"limit": 0}).status_code == 422


def test_thread_stream_commands(client: TestClient) -> None:
    thread_id = client.post("/threads", json={}).json()["thread_id"]
    read = client.post(f"/threads/{thread_id}/commands", json={"id": 1, "method": "state.get"})
    assert read.json()["type"] == "success"
    start = client.post(f"/threads/{thread_id}/commands",
                        json={"id": 2, "method": "run.start", "params": {"assistant_id": "x"}})
    assert start.json()["type"] == "error"
    bad = client.post(f"/threads/{thread_id}/commands", content=b"not json",
                      headers={"content-type": "application/json"})
    assert bad.status_code == 422
    with client.websocket_connect(f"/threads/{thread_id}/stream/events") as ws:
        ws.send_json({"id": 3, "method": "state.get"})
        assert ws.receive_json()["id"] == 3
        ws.send_json({"id": 4, "method": "run.start", "params": {"assistant_id": "x"}})
        assert ws.receive_json()["type"] == "error"
    got = [(r["action"], r["resource_id"], r["outcome"]) for r in records(client)]
    assert got == [
        ("threads.create", thread_id, "200"),
        ("threads.command.run.start", thread_id, "error:invalid_argument"),
        ("threads.command", thread_id, "422"),
        ("threads.command.run.start", thread_id, "error:invalid_argument"),
    ]
    ws_record = records(client)[-1]
    assert ws_record["request_id"].endswith(":4") and ws_record["detail"]["command_id"] == 4
