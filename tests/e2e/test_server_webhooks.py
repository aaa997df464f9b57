"""Webhooks through the real server and the official SDK: the langgraph.json policy refuses
loopback, link-local and (when asked) private targets when the run is created, and an
allowed receiver gets a body it can verify with the shared secret."""

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

from processes import SERVER_GRAPHS, StartServer
from treadle.server import webhook_signature

SECRET = "e2e-webhook-secret"


def _config(tmp_path: Path, webhooks: dict[str, Any] | None) -> Path:
    doc: dict[str, Any] = {"dependencies": [str(SERVER_GRAPHS)],
                           "graphs": {"chain": f"{SERVER_GRAPHS / 'graphs.py'}:chain"}}
    if webhooks is not None:
        doc["webhooks"] = webhooks
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append((dict(self.headers.items()),
                             self.rfile.read(int(self.headers["content-length"]))))
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


def _refused(call: Any) -> str:
    with pytest.raises(httpx.HTTPStatusError) as err:  # the SDK's errors derive from it
        call()
    assert err.value.response.status_code == 422
    detail: str = err.value.response.json()["detail"]
    return detail


def test_loopback_targets_are_refused_by_default(start_server: StartServer, tmp_path: Path,
                                                 receiver: tuple[int, list[Any]]) -> None:
    port, received = receiver
    server = start_server(config=_config(tmp_path, None))
    client = get_sync_client(url=server.url)
    thread = client.threads.create()
    detail = _refused(lambda: client.runs.create(
        thread["thread_id"], "chain", input={"n": 0}, webhook=f"http://localhost:{port}/hook"))
    assert "webhook host localhost resolves to" in detail and "loopback" in detail
    assert "disable_loopback" in detail
    detail = _refused(lambda: client.runs.wait(
        None, "chain", input={"n": 0}, webhook="http://169.254.169.254/latest/meta-data/"))
    assert detail == ("webhook host 169.254.169.254 is a link-local address: webhooks may "
                      "not go there")
    detail = _refused(lambda: client.crons.create(
        "chain", schedule="0 0 * * *", input={"n": 0}, webhook=f"http://127.0.0.1:{port}/"))
    assert "loopback" in detail
    assert client.runs.list(thread["thread_id"]) == []  # nothing was queued
    assert received == []


def test_an_allowed_receiver_gets_a_signed_body(start_server: StartServer, tmp_path: Path,
                                                receiver: tuple[int, list[Any]]) -> None:
    port, received = receiver
    # The receiver is on loopback: this deployment allows loopback, and refuses private.
    config = _config(tmp_path, {
        "url": {"disable_loopback": False, "disable_private": True,
                "allowed_ports": [port, 443]},
        "headers": {"Authorization": "Bearer ${{ env.LG_WEBHOOK_TOKEN }}"}})
    server = start_server(config=config, env={"TREADLE_WEBHOOK_SECRET": SECRET,
                                              "LG_WEBHOOK_TOKEN": "receiver-token"})
    client = get_sync_client(url=server.url)
    thread = client.threads.create()
    detail = _refused(lambda: client.runs.create(
        thread["thread_id"], "chain", input={"n": 0}, webhook="https://10.1.2.3/hook"))
    assert detail.startswith("webhook host 10.1.2.3 is a private address")
    detail = _refused(lambda: client.runs.create(
        thread["thread_id"], "chain", input={"n": 0}, webhook=f"http://127.0.0.1:{port + 1}/"))
    assert "is not allowed (webhooks.url.allowed_ports" in detail
    run = client.runs.create(thread["thread_id"], "chain", input={"n": 0},
                             webhook=f"http://localhost:{port}/hook")
    deadline = time.monotonic() + 30
    while not received and time.monotonic() < deadline:
        time.sleep(0.1)
    [(headers, body)] = received
    assert webhook_signature.verify(SECRET.encode(), body, headers[webhook_signature.HEADER])
    assert not webhook_signature.verify(b"wrong", body, headers[webhook_signature.HEADER])
    assert headers["Authorization"] == "Bearer receiver-token"
    sent = json.loads(body)
    assert sent["run_id"] == run["run_id"] and sent["values"] == {"n": 10}
    assert "receiver-token" not in server.log() and SECRET not in server.log()


def test_a_policy_error_stops_start_up_in_one_line(start_server: StartServer,
                                                   tmp_path: Path) -> None:
    config = _config(tmp_path, {"headers": {"X-Home": "${{ env.HOME }}"}})
    server = start_server(config=config, ready=False)
    assert server.proc.wait(60) != 0
    errors = [line for line in server.log().splitlines() if "X-Home" in line]
    assert errors and errors[-1].endswith(
        'webhooks.headers["X-Home"] reads ${{ env.HOME }}: only variables starting with '
        '"LG_WEBHOOK_" (webhooks.env_prefix) may be used')
    assert "Traceback" not in server.log()
