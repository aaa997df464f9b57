"""``GET /operations`` of a real ``treadle serve --workers 1`` on SQLite: the worker it started
is listed with the slots it advertises, and a run it executed is counted."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from processes import StartServer

pytestmark = pytest.mark.timeout(180)


def operations(base: str) -> dict[str, Any]:
    got = httpx.get(f"{base}/operations", timeout=10)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def test_serve_lists_its_worker_and_counts_its_runs(start_server: StartServer) -> None:
    api = start_server("serve", args=["--workers", "1", "--concurrency", "7"])
    deadline = time.monotonic() + 60
    while not (workers := operations(api.url)["workers"]):  # it registers once it is up
        assert time.monotonic() < deadline, f"no worker listed; server log:\n{api.log()}"
        time.sleep(0.2)
    (worker,) = workers
    assert worker["slots"] == 7 and worker["running"] == 0
    assert {"chain", "slow", "approval"} <= set(worker["graphs"])
    assert worker["heartbeat_at"] < worker["expires_at"]
    client = get_sync_client(url=api.url)
    thread = client.threads.create()
    client.runs.wait(thread["thread_id"], "chain", input={"n": 0})
    body = operations(api.url)
    assert body["runs_by_status"]["success"] == 1
    assert sum(body["runs_by_status"].values()) == 1
    assert body["queue"] == {"pending": 0, "running": 0, "oldest_pending_age": None}
    assert (body["failovers"], body["failovers_total"]) == ([], 0)
    assert body["generated_at"] >= worker["started_at"]
    assert httpx.get(f"{api.url}/operations", params={"failovers_limit": 201},
                     timeout=10).status_code == 422


def test_serve_serves_the_console_where_told(start_server: StartServer) -> None:
    api = start_server("serve", args=["--workers", "0", "--console-path", "/ops/console"])
    page = httpx.get(f"{api.url}/ops/console/", timeout=10)
    assert page.status_code == 200 and "treadle console" in page.text
    assert httpx.get(f"{api.url}/console/", timeout=10).status_code == 404
    assert "console: http://127.0.0.1:" in api.log() and "/ops/console/" in api.log()
    off = start_server("serve", args=["--workers", "0", "--no-console"])
    assert httpx.get(f"{off.url}/console/", timeout=10).status_code == 404
    assert "console:" not in off.log()
