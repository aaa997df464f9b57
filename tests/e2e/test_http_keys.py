"""langgraph.json's ``http`` keys through the real `treadle dev` and the official SDK
(docs/api.md, "langgraph.json"): ``disable_*`` remove their routes, ``disable_webhooks``
sends none, ``configurable_headers`` copies request headers into a run's ``configurable``,
``mount_prefix`` serves the API under a path."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from processes import ServerProcess, StartServer, StartWorker

HERE = Path(__file__).resolve().parent / "http_app"


def _config(tmp_path: Path, **keys: Any) -> Path:
    doc = {"graphs": {"headers": f"{HERE / 'graphs.py'}:headers"}, **keys}
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(doc))
    return path


def _seen(result: Any) -> dict[str, Any]:
    assert isinstance(result, dict), result
    seen: dict[str, Any] = result["seen"]
    return seen


# Each route group, as (method, path) of one of its routes; what a disabled group answers.
GROUPS: dict[str, list[tuple[str, str]]] = {
    "assistants": [("POST", "/assistants/search")],
    "store": [("POST", "/store/items/search")],
    "meta": [("GET", "/info"), ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/redoc"),
             ("GET", "/openapi.json")],
    "crons": [("POST", "/runs/crons/search")],
    "runs": [("POST", "/runs/wait"), ("GET", "/threads/{thread}/runs"),
             ("POST", "/threads/{thread}/commands")],
    "threads": [("POST", "/threads/search"), ("GET", "/threads/{thread}")],
}


def _statuses(server: ServerProcess, thread: str, groups: list[str]) -> dict[str, int]:
    out = {}
    for group in groups:
        for method, path in GROUPS[group]:
            url = f"{server.url}{path.format(thread=thread)}"
            body = {"assistant_id": "headers"} if path == "/runs/wait" else \
                {"id": "1", "method": "run.input", "params": {}} if "commands" in path else {}
            r = httpx.request(method, url, json=body if method == "POST" else None)
            out[f"{method} {path}"] = r.status_code
    return out


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[bytes]]]:
    received: list[bytes] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_port, received
    finally:
        srv.shutdown()
        srv.server_close()


def test_disabled_groups_answer_404_and_the_rest_is_served(start_server: StartServer,
                                                           tmp_path: Path) -> None:
    server = start_server(config=_config(tmp_path, http={
        "disable_assistants": True, "disable_store": True, "disable_meta": True,
        "disable_crons": True, "disable_ui": True}))
    client = get_sync_client(url=server.url)
    thread = client.threads.create()["thread_id"]
    gone = _statuses(server, thread, ["assistants", "store", "meta", "crons"])
    assert set(gone.values()) == {404}, gone
    # the probes stay; runs (of a graph's default assistant) and threads are served
    assert httpx.get(f"{server.url}/ok").json() == {"ok": True}
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert _seen(client.runs.wait(thread, "headers", input={}))["graph_id"] == "headers"
    assert client.threads.get(thread)["status"] == "idle"
    kept = _statuses(server, thread, ["runs", "threads"])
    assert 404 not in kept.values() and 405 not in kept.values(), kept


def test_disable_runs_and_threads(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(config=_config(tmp_path, http={"disable_runs": True,
                                                         "disable_threads": True}))
    gone = _statuses(server, "00000000-0000-0000-0000-000000000000",
                     ["runs", "threads", "crons"])
    assert set(gone.values()) == {404}, gone
    kept = _statuses(server, "x", ["assistants", "store", "meta"])
    assert set(kept.values()) == {200}, kept


def test_disable_webhooks_runs_the_run_but_sends_nothing(
        start_server: StartServer, tmp_path: Path, receiver: tuple[int, list[bytes]]) -> None:
    port, received = receiver
    server = start_server(config=_config(
        tmp_path, http={"disable_webhooks": True},
        webhooks={"url": {"disable_loopback": False}}))
    client = get_sync_client(url=server.url)
    run = client.runs.create(None, "headers", input={}, webhook=f"http://127.0.0.1:{port}/h")
    client.runs.join(run["thread_id"], run["run_id"])
    deadline = time.monotonic() + 30
    while "its webhook is not sent" not in server.log():  # the hook ran, and said so
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    assert received == []
    # the URL is still checked when the run is created (as langgraph-api does)
    with pytest.raises(httpx.HTTPStatusError) as err:
        client.runs.create(None, "headers", input={}, webhook="http://169.254.169.254/")
    assert err.value.response.status_code == 422


def test_a_treadle_worker_reading_the_file_sends_no_webhook_either(
        start_server: StartServer, start_worker: StartWorker, tmp_path: Path,
        receiver: tuple[int, list[bytes]]) -> None:
    port, received = receiver
    config = _config(tmp_path, http={"disable_webhooks": True},
                     webhooks={"url": {"disable_loopback": False}})
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    server = start_server("serve", store=store, args=["--no-workers"], config=config)
    worker = start_worker(store, args=["--config", str(config)])
    client = get_sync_client(url=server.url)
    run = client.runs.create(None, "headers", input={}, webhook=f"http://127.0.0.1:{port}/h")
    client.runs.join(run["thread_id"], run["run_id"])
    deadline = time.monotonic() + 30
    while "its webhook is not sent" not in worker.log():
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.1)
    assert received == []


def test_configurable_headers_reach_the_graph(start_server: StartServer,
                                              tmp_path: Path) -> None:
    server = start_server(config=_config(tmp_path, http={"configurable_headers": {
        "includes": ["x-user-*", "user-agent", "authorization", "x-api-key", "cookie",
                     "__treadle_*"],
        "excludes": ["x-user-secret"]}}))
    client = get_sync_client(url=server.url, headers={"User-Agent": "e2e-agent"})
    thread = client.threads.create()["thread_id"]
    sent = {"X-User-Id": "u-1", "x-user-role": "admin", "x-user-secret": "s3cret",
            "x-other": "o", "Authorization": "Bearer t0k3n", "x-api-key": "k3y",
            "Cookie": "session=c00kie", "__treadle_steer": "p"}
    for seen in (_seen(client.runs.wait(thread, "headers", input={}, headers=sent)),
                 _seen(client.runs.wait(None, "headers", input={}, headers=sent))):
        copied = {k: v for k, v in seen.items() if k.startswith(("x-", "user-agent"))
                  or k in ("authorization", "cookie")}
        assert copied == {"x-user-id": "u-1", "x-user-role": "admin",
                          "user-agent": "e2e-agent"}
        assert "__treadle_steer" not in seen  # a key the API refuses in a client's config
    # the header wins over the client's own configurable (as in langgraph-api)
    seen = _seen(client.runs.wait(None, "headers", input={}, headers={"x-user-id": "h"},
                                  config={"configurable": {"x-user-id": "body"}}))
    assert seen["x-user-id"] == "h"
    # a background run too (what the worker runs)
    run = client.runs.create(thread, "headers", input={}, headers={"x-user-id": "bg"})
    assert _seen(client.runs.join(thread, run["run_id"]))["x-user-id"] == "bg"


def test_without_configurable_headers_none_are_copied_and_the_prefix_serves_the_api(
        start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(config=_config(tmp_path, http={
        "mount_prefix": "/my-api/", "app": f"{HERE / 'webapp.py'}:app"}))
    base = f"{server.url}/my-api"
    client = get_sync_client(url=base)
    seen = _seen(client.runs.wait(None, "headers", input={}, headers={"x-user-id": "u-1"}))
    assert "x-user-id" not in seen and seen["graph_id"] == "headers"
    thread = client.threads.create()["thread_id"]
    run = client.runs.create(thread, "headers", input={})
    assert client.runs.join(thread, run["run_id"]) is not None
    chunks = list(client.runs.stream(thread, "headers", input={}))
    assert chunks[-1].event == "values"
    # the whole API is under the prefix; the probes (and /metrics) also at the root
    assert httpx.post(f"{server.url}/threads/search", json={}).status_code == 404
    assert httpx.get(f"{server.url}/assistants/search").status_code == 404
    for probe in ("/ok", "/readyz", "/metrics"):
        assert httpx.get(f"{server.url}{probe}").status_code == 200, probe
        assert httpx.get(f"{base}{probe}").status_code == 200, probe
    docs = httpx.get(f"{base}/docs")
    assert docs.status_code == 200 and "/my-api/openapi.json" in docs.text
    spec = httpx.get(f"{base}/openapi.json").json()
    assert "/threads/search" in spec["paths"]
    assert httpx.get(f"{server.url}/my-apix/info").status_code == 404
    # http.app's routes are under the prefix too
    assert httpx.get(f"{base}/custom/hello").json()["calls"] == 1
    assert httpx.get(f"{server.url}/custom/hello").status_code == 404
