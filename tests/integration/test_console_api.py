"""The API calls the web console makes (src/treadle/console/assets/js/api.js).

Every call in api.js names a route the server has (a renamed or removed route fails
here, not in a user's browser); then each call is made as the console makes it, through
the real app with an in-process worker, on the console's test graph (draft, a subgraph,
an interrupting review, publish), on SQLite and on PostgreSQL, and its answer has what the
page reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Match

from treadle.config import Settings
from treadle.console import ASSETS

API_JS = ASSETS / "js" / "api.js"
GRAPH = Path(__file__).parents[1] / "e2e" / "console_graphs" / "approval.py"
STREAM_MODES = ["values", "updates", "messages-tuple", "custom", "tasks"]


def console_calls() -> list[tuple[str, str]]:
    """(method, path) of every call in api.js, ids as "{x}"."""
    text = API_JS.read_text()
    found = re.findall(r'(?:call|stream)\("([A-Z]+)", [`"]([^`"]+)[`"]', text)
    return [(m, re.sub(r"\$\{enc\((\w+)\)\}", r"{\1}", p)) for m, p in found]


def test_api_js_lists_its_calls() -> None:
    calls = console_calls()
    assert len(calls) >= 18, calls
    assert ("POST", "/threads/{id}/history") in calls
    modes = re.search(r"STREAM_MODES = (\[.*?\]);", API_JS.read_text())
    assert modes is not None and json.loads(modes.group(1)) == STREAM_MODES


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The app on each store (its own SQLite file, or a fresh PostgreSQL database)."""
    from treadle.server.app import create_app

    store = (f"sqlite:///{tmp_path}/console.db" if request.param == "sqlite"
             else request.getfixturevalue("pg_url"))
    settings = Settings(store=store, retry_initial_interval=0.01)
    app = create_app(settings, {"approval": f"{GRAPH}:graph"}, in_process_worker=True)
    with TestClient(app) as http:
        yield http


def test_every_call_names_a_route(client: TestClient) -> None:
    routes = client.app.router.routes  # type: ignore[attr-defined]
    for method, template in console_calls():
        path = re.sub(r"\{\w+\}", "x1", template)
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        matched = [r for r in routes if r.matches(scope)[0] == Match.FULL]
        assert matched, f"api.js calls {method} {template}: the server has no such route"


def sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields.get("data", "null"))))
    return events


def start_and_join(client: TestClient, thread_id: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The console's way: queue the run (createRun), then follow it (joinRun)."""
    run = client.post(f"/threads/{thread_id}/runs", json=body)
    assert run.status_code == 200, run.text
    joined = client.get(f"/threads/{thread_id}/runs/{run.json()['run_id']}/stream",
                        headers={"accept": "text/event-stream"})
    assert joined.status_code == 200
    return sse(joined.text)


def test_a_run_from_the_form_to_the_approval(client: TestClient) -> None:
    assistants = client.post("/assistants/search", json={"limit": 100, "offset": 0}).json()
    assistant = next(a for a in assistants if a["graph_id"] == "approval")
    aid = assistant["assistant_id"]
    assert client.get(f"/assistants/{aid}").json()["graph_id"] == "approval"
    graph = client.get(f"/assistants/{aid}/graph", params={"xray": "true"}).json()
    ids = {n["id"] for n in graph["nodes"]}
    assert {"draft", "review", "publish", "checks:spelling"} <= ids  # the subgraph, with xray
    assert any(e.get("conditional") for e in graph["edges"])
    schemas = client.get(f"/assistants/{aid}/schemas").json()
    assert "topic" in schemas["input_schema"]["properties"]

    # graphs page: a new thread with its first run (if_not_exists), joined
    thread_id = "00000000-0000-4000-8000-000000000001"
    events = start_and_join(client, thread_id, {"assistant_id": aid, "input": {"topic": "otters"},
                                                "stream_mode": STREAM_MODES,
                                                "if_not_exists": "create"})
    kinds = [k.split("|")[0] for k, _ in events]
    assert kinds[0] == "metadata"
    assert {"values", "updates", "messages", "custom", "tasks"} <= set(kinds)
    started = [d["name"] for k, d in events if k == "tasks" and "result" not in d and "error" not in d]
    assert started[:2] == ["draft", "checks"] and "review" in started
    tokens = [d[0]["content"] for k, d in events if k == "messages"]
    assert len(tokens) > 1 and "".join(tokens).startswith("Five facts about otters")
    assert {"progress": "drafting", "topic": "otters"} in [d for k, d in events if k == "custom"]

    # threads page and approvals page
    found = client.post("/threads/search", json={"status": "interrupted", "metadata": {
        "graph_id": "approval"}, "limit": 25, "offset": 0, "sort_by": "updated_at",
        "sort_order": "desc"}).json()
    assert [t["thread_id"] for t in found] == [thread_id]
    assert client.post("/threads/count", json={"status": "interrupted"}).json() == 1
    pending = [i for group in found[0]["interrupts"].values() for i in group]
    assert pending[0]["value"]["question"] == "Publish this draft?"
    thread = client.get(f"/threads/{thread_id}").json()
    assert thread["metadata"]["assistant_id"] == aid  # the page finds the graph from it
    state = client.get(f"/threads/{thread_id}/state").json()
    assert state["next"] == ["review"]

    # approve: a resume command, as interrupts.js builds it
    events = start_and_join(client, thread_id, {"assistant_id": aid, "command": {"resume": True},
                                                "stream_mode": STREAM_MODES})
    assert [d for k, d in events if k == "values"][-1]["decision"] == "approved"
    state = client.get(f"/threads/{thread_id}/state").json()
    assert state["values"]["decision"] == "approved" and state["next"] == []
    assert client.get(f"/threads/{thread_id}").json()["status"] == "idle"
    runs = client.get(f"/threads/{thread_id}/runs", params={"limit": 20}).json()
    assert [r["status"] for r in runs] == ["success", "interrupted"]  # newest first
    storage = client.get(f"/threads/{thread_id}/storage").json()
    assert storage["bytes"] > 0 and storage["checkpoints"] >= 5 and storage["tables"]


def test_history_pages_fork_and_replay(client: TestClient) -> None:
    aid = "approval"
    thread_id = "00000000-0000-4000-8000-000000000002"
    start_and_join(client, thread_id, {"assistant_id": aid, "input": {"topic": "owls"},
                                       "stream_mode": ["values"], "if_not_exists": "create"})
    start_and_join(client, thread_id, {"assistant_id": aid, "command": {"resume": False},
                                       "stream_mode": ["values"]})
    everything = client.post(f"/threads/{thread_id}/history", json={"limit": 1000}).json()
    assert len(everything) >= 5  # input, draft, checks, review, and the end

    # timeline.js: PAGE+1 asked for; the first not shown is carried to the next page,
    # which asks for what is older than it
    page_size, seen = 2, list[dict[str, Any]]()
    cursor: str | None = None
    carry: dict[str, Any] | None = None
    while True:
        body: dict[str, Any] = {"limit": page_size + 1}
        if cursor:
            body["before"] = {"configurable": {"checkpoint_id": cursor}}
        page = client.post(f"/threads/{thread_id}/history", json=body).json()
        states = [carry, *page] if carry else page
        seen.extend(states[:page_size])
        carry = states[page_size] if len(states) > page_size else None
        if carry is None:
            break
        cursor = carry["checkpoint"]["checkpoint_id"]
    ids = [s["checkpoint"]["checkpoint_id"] for s in seen]
    assert ids == [s["checkpoint"]["checkpoint_id"] for s in everything]  # none lost, none twice

    # fork: the values of an older checkpoint, edited, written from it; then run from there
    drafted = next(s for s in everything if s["next"] == ["review"])
    edited = {**drafted["values"], "draft": "A better draft"}
    made = client.post(f"/threads/{thread_id}/state", json={
        "values": edited, "checkpoint_id": drafted["checkpoint"]["checkpoint_id"]}).json()
    fork_id = made["checkpoint"]["checkpoint_id"]
    events = start_and_join(client, thread_id, {"assistant_id": aid, "input": None,
                                                "checkpoint_id": fork_id,
                                                "stream_mode": ["values"]})
    assert events[0][0] == "metadata"
    state = client.get(f"/threads/{thread_id}/state").json()
    assert state["values"]["draft"] == "A better draft" and state["next"] == ["review"]
    assert state["checkpoint"]["checkpoint_id"] == fork_id  # review interrupted again, at the fork

    # replay: a run from a checkpoint with no input
    events = start_and_join(client, thread_id, {"assistant_id": aid, "input": None,
                                                "checkpoint_id": drafted["checkpoint"]["checkpoint_id"],
                                                "stream_mode": ["values"]})
    assert client.get(f"/threads/{thread_id}/state").json()["next"] == ["review"]

    copied = client.post(f"/threads/{thread_id}/copy")
    assert copied.status_code == 200 and copied.json()["thread_id"] != thread_id


def test_cancel_as_the_console_does(client: TestClient) -> None:
    thread_id = "00000000-0000-4000-8000-000000000003"
    start_and_join(client, thread_id, {"assistant_id": "approval", "input": {"topic": "x"},
                                       "stream_mode": ["values"], "if_not_exists": "create"})
    run = client.get(f"/threads/{thread_id}/runs", params={"limit": 20}).json()[0]
    answer = client.post(f"/threads/{thread_id}/runs/{run['run_id']}/cancel",
                         params={"action": "interrupt"})
    # the run had stopped at its interrupt: the cancel is accepted and changes nothing (a
    # running run's cancel is tested in the browser, tests/e2e/console)
    assert answer.status_code == 202, answer.text
    after = client.get(f"/threads/{thread_id}/runs/{run['run_id']}").json()
    assert after["status"] == run["status"] == "interrupted"
    assert client.get(f"/threads/{thread_id}/state").json()["next"] == ["review"]
