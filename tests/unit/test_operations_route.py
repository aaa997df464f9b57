"""``GET /operations`` through the real app (no graphs) on SQLite: the document's shape and
figures, the limit's validation, and who may read it (tests/fake_auth.py's stand-in
authentication sets the principal)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fake_auth import FakeAuth
from queue_contract import EXPIRE, TTL, new_run, worker_info
from treadle.config import get_settings
from treadle.server.app import create_app
from treadle.store import Store, open_store
from treadle.store.queue import RUN_STATUSES

WORKER_FIELDS = {"name", "graphs", "allow_pickled", "slots", "running", "started_at",
                 "heartbeat_at", "expires_at"}
FAILOVER_FIELDS = {"run_id", "thread_id", "graph_id", "status", "lost", "worker", "error",
                   "created_at", "started_at", "ended_at"}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/s.db"


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = open_store(url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def client(url: str) -> Iterator[TestClient]:
    with TestClient(create_app(get_settings(store=url), {})) as http:
        yield http


@pytest.fixture
def authed(url: str) -> Iterator[TestClient]:
    """The app with authentication configured (any Auth: the stand-in decides who calls)."""
    app = create_app(get_settings(store=url, operator_tenants="ops, sre"), {})
    app.add_middleware(FakeAuth)
    app.state.auth = object()  # what _install_auth leaves when langgraph.json has "auth"
    with TestClient(app) as http:
        yield http


def read(http: TestClient, **params: Any) -> dict[str, Any]:
    got = http.get("/operations", params=params)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def test_an_idle_server(client: TestClient, store: Store) -> None:
    before = store.now()
    body = read(client)
    assert set(body) == {"generated_at", "queue", "runs_by_status", "workers", "failovers",
                         "failovers_total"}
    assert before <= body["generated_at"] <= store.now()
    assert body["queue"] == {"pending": 0, "running": 0, "oldest_pending_age": None}
    assert body["runs_by_status"] == dict.fromkeys(RUN_STATUSES, 0)
    assert (body["workers"], body["failovers"], body["failovers_total"]) == ([], [], 0)


def test_queue_runs_workers_and_failovers(client: TestClient, store: Store) -> None:
    store.register_worker(worker_info("a", ("ref:chain", "ref:other"), slots=3, running=1), 30)
    store.register_worker(worker_info("b", pickled=True, slots=1), 30)
    for i in range(3):
        store.enqueue_run(new_run(f"lost{i}", f"t{i}", graph_id="ref:chain"))
        row = store.claim_run("w1", ["ref:chain"], False, TTL)
        assert row is not None
        time.sleep(EXPIRE)
        assert store.sweep() == [(f"lost{i}", "pending")]
        row = store.claim_run("w2", ["ref:chain"], False, 60)
        assert row is not None and store.finish_run(row.run_id, row.epoch, "success")
    store.enqueue_run(new_run("waiting", "t9"))
    body = read(client, failovers_limit=2)
    assert body["queue"]["pending"] == 1 and body["queue"]["running"] == 0
    assert body["queue"]["oldest_pending_age"] >= 0
    assert body["runs_by_status"] == {**dict.fromkeys(RUN_STATUSES, 0), "pending": 1,
                                      "success": 3}
    workers = {w["name"]: w for w in body["workers"]}
    assert all(set(w) == WORKER_FIELDS for w in workers.values())
    a, b = workers["host:1:a"], workers["host:1:b"]
    assert (a["graphs"], a["allow_pickled"], a["slots"], a["running"]) == (
        ["chain", "other"], False, 3, 1)
    assert (b["graphs"], b["allow_pickled"], b["slots"]) == (["g"], True, 1)
    assert a["started_at"] <= a["heartbeat_at"] < a["expires_at"]
    assert body["failovers_total"] == 3
    assert [f["run_id"] for f in body["failovers"]] == ["lost2", "lost1"]
    first = body["failovers"][0]
    assert set(first) == FAILOVER_FIELDS
    assert (first["thread_id"], first["graph_id"], first["status"], first["lost"],
            first["worker"]) == ("t2", "chain", "success", 1, None)
    assert first["error"] is None  # the success cleared the sweeper's note
    assert first["ended_at"] >= first["started_at"] >= first["created_at"]
    assert [f["run_id"] for f in read(client)["failovers"]] == ["lost2", "lost1", "lost0"]


@pytest.mark.parametrize("limit", ["0", "201", "-1", "many"])
def test_the_limit_is_checked(client: TestClient, limit: str) -> None:
    got = client.get("/operations", params={"failovers_limit": limit})
    assert got.status_code == 422, got.text


@pytest.mark.parametrize("limit", ["1", "200"])
def test_the_limit_bounds_are_accepted(client: TestClient, limit: str) -> None:
    assert client.get("/operations", params={"failovers_limit": limit}).status_code == 200


def test_without_authentication_anyone_reads_it(client: TestClient) -> None:
    assert client.get("/operations").status_code == 200


def test_with_authentication_only_an_admin_of_no_tenant(authed: TestClient) -> None:
    def status(user: str | None, **params: Any) -> int:
        headers = {} if user is None else {"x-user": user}
        return authed.get("/operations", headers=headers, params=params).status_code

    assert status(None) == 403  # anonymous (the stand-in lets it through unauthenticated)
    refused = authed.get("/operations", headers={"x-user": "bob:runner,viewer"})
    assert refused.status_code == 403
    assert refused.json()["detail"] == "reading /operations needs the admin permission"
    assert status("bob:runner", failovers_limit=0) == 403  # refused before validation
    assert status("root:admin") == 200
    assert status("root:admin", failovers_limit=0) == 422
    tenant = authed.get("/operations", headers={"x-user": "carol:admin:acme"})
    assert tenant.status_code == 403
    assert "TREADLE_OPERATOR_TENANTS" in tenant.json()["detail"]
    # the admins of an operator tenant (TREADLE_OPERATOR_TENANTS) read it; their runners not
    assert status("dave:admin:ops") == 200 and status("erin:admin:sre") == 200
    assert status("fay:runner:ops") == 403
    audit = authed.get("/audit", headers={"x-user": "bob:runner"})  # the same check, named
    assert audit.json()["detail"] == "reading the audit log needs the admin permission"
