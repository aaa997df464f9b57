"""What a web page can make the API do, through real servers: WebSocket and SSE (and every
other route) refuse a browser Origin that is neither the server's own nor allowed by
http.cors; `treadle dev` answers loopback Host names only (DNS rebinding); CORS stays
closed unless http.cors opens it; `treadle serve` answers any Host unless told."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from processes import SERVER_GRAPHS, ServerProcess, StartServer

EVIL = "https://evil.example"


def _ws_url(server: ServerProcess, thread_id: str) -> str:
    return f"ws://127.0.0.1:{server.port}/threads/{thread_id}/stream/events"


async def _start_run_over_ws(url: str, **kwargs: Any) -> dict[str, Any]:
    """Open the thread-stream WebSocket and start a run of ``chain`` over it."""
    async with connect(url, open_timeout=10, **kwargs) as ws:
        await ws.send(json.dumps({"id": 1, "method": "run.start",
                                  "params": {"assistant_id": "chain", "input": {"n": 0}}}))
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return answer


def _ws_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as err:
        asyncio.run(_start_run_over_ws(url, **kwargs))
    return err.value.response.status_code


def _runs(server: ServerProcess, thread_id: str) -> list[Any]:
    runs: list[Any] = httpx.get(f"{server.url}/threads/{thread_id}/runs").json()
    return runs


def test_a_foreign_origin_cannot_start_a_run(dev_server: ServerProcess) -> None:
    thread_id = httpx.post(f"{dev_server.url}/threads", json={}).json()["thread_id"]
    url = _ws_url(dev_server, thread_id)
    # A page on another site: refused before the socket opens, nothing runs.
    assert _ws_status(url, origin=EVIL) == 403  # type: ignore[arg-type]
    assert _ws_status(url, origin="null") == 403  # type: ignore[arg-type]
    stream = f"{dev_server.url}/threads/{thread_id}/runs/stream"
    r = httpx.post(stream, json={"assistant_id": "chain", "input": {"n": 0}},
                   headers={"Origin": EVIL})
    assert r.status_code == 403 and "http.cors.allow_origins" in r.json()["detail"]
    r = httpx.get(f"{dev_server.url}/threads/{thread_id}/stream", headers={"Origin": EVIL})
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers
    assert _runs(dev_server, thread_id) == []
    # The server's own origin (its UI) and clients that are not browsers may.
    own = f"http://127.0.0.1:{dev_server.port}"
    answer = asyncio.run(_start_run_over_ws(url, origin=own))  # type: ignore[arg-type]
    assert answer["type"] == "success" and answer["result"]["run_id"]
    answer = asyncio.run(_start_run_over_ws(url))
    assert answer["type"] == "success"
    assert len(_runs(dev_server, thread_id)) == 2


def test_cors_is_closed_by_default(dev_server: ServerProcess) -> None:
    r = httpx.options(f"{dev_server.url}/threads", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = httpx.post(f"{dev_server.url}/threads/search", json={}, headers={"Origin": EVIL})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_dev_answers_loopback_host_names_only(dev_server: ServerProcess) -> None:
    for host in ("localhost", f"localhost:{dev_server.port}", f"127.0.0.1:{dev_server.port}",
                 f"[::1]:{dev_server.port}", "LOCALHOST:1"):
        r = httpx.get(f"{dev_server.url}/info", headers={"Host": host})
        assert r.status_code == 200, host
    r = httpx.get(f"{dev_server.url}/info", headers={"Host": f"rebound.example:{dev_server.port}"})
    assert r.status_code == 400
    assert r.json()["detail"] == ("Host rebound.example is not allowed: start the server with "
                                  "--allowed-hosts rebound.example (TREADLE_ALLOWED_HOSTS)")
    thread_id = httpx.post(f"{dev_server.url}/threads", json={}).json()["thread_id"]
    # A DNS-rebinding page is same-origin by construction: its Host gives it away.
    rebound = f"http://rebound.example:{dev_server.port}"
    status = _ws_status(_ws_url(dev_server, thread_id), origin=rebound,  # type: ignore[arg-type]
                        additional_headers={"Host": f"rebound.example:{dev_server.port}"})
    assert status == 403 and _runs(dev_server, thread_id) == []


def test_http_cors_and_allowed_hosts_open_what_they_name(start_server: StartServer,
                                                         tmp_path: Path) -> None:
    app = "https://app.example.com"
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({
        "dependencies": [str(SERVER_GRAPHS)],
        "graphs": {"chain": f"{SERVER_GRAPHS / 'graphs.py'}:chain"},
        "http": {"cors": {"allow_origins": [app], "allow_methods": ["*"],
                          "allow_origin_regex": r"https://.*\.corp\.example"}},
    }))
    server = start_server(config=config, args=["--allowed-hosts", "127.0.0.1,*.example.com"])
    r = httpx.post(f"{server.url}/threads", json={}, headers={"Origin": app})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == app
    thread_id = r.json()["thread_id"]
    r = httpx.options(f"{server.url}/threads", headers={
        "Origin": app, "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == app
    answer = asyncio.run(_start_run_over_ws(_ws_url(server, thread_id),
                                            origin="https://ui.corp.example"))  # type: ignore[arg-type]
    assert answer["type"] == "success"
    assert _ws_status(_ws_url(server, thread_id), origin=EVIL) == 403  # type: ignore[arg-type]
    assert httpx.get(f"{server.url}/ok", headers={"Host": "api.example.com"}).status_code == 200
    assert httpx.get(f"{server.url}/ok", headers={"Host": "localhost"}).status_code == 400


def test_serve_answers_any_host_unless_told(start_server: StartServer) -> None:
    server = start_server("serve", args=["--workers", "0"])
    r = httpx.get(f"{server.url}/info", headers={"Host": "treadle.internal.example:443"})
    assert r.status_code == 200
    # ... but not a foreign Origin.
    r = httpx.get(f"{server.url}/info", headers={"Origin": EVIL})
    assert r.status_code == 403
    same = httpx.get(f"{server.url}/info", headers={"Origin": "https://api.example.com",
                                                     "Host": "api.example.com"})
    assert same.status_code == 200  # behind a TLS ingress: the page's origin is the API's
