"""langgraph.json's ``http.app`` through the real `treadle dev` (docs/api.md, "Custom routes"):
the user's FastAPI app (tests/e2e/http_app/webapp.py) is served beside treadle's API, its
middleware wraps every route, its lifespan starts and stops with the server, and
``enable_custom_route_auth`` / ``middleware_order`` decide where authentication runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from processes import StartServer, subprocess_env

HERE = Path(__file__).resolve().parent / "http_app"
ALICE = {"Authorization": "Bearer alice-token"}


def _config(tmp_path: Path, http: dict[str, Any], *, auth: bool = False) -> Path:
    doc: dict[str, Any] = {"graphs": {"headers": f"{HERE / 'graphs.py'}:headers"}, "http": http}
    if auth:
        doc["auth"] = {"path": f"{HERE / 'auth.py'}:auth"}
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(doc))
    return path


def test_the_apps_routes_middleware_and_lifespan_are_served_with_the_api(
        start_server: StartServer, tmp_path: Path) -> None:
    events = tmp_path / "events"
    server = start_server(config=_config(tmp_path, {"app": f"{HERE / 'webapp.py'}:app"}),
                          env={"HTTP_APP_EVENTS": str(events)})
    assert events.read_text() == "started\n"  # before the server answered /ok
    first = httpx.get(f"{server.url}/custom/hello").json()
    second = httpx.get(f"{server.url}/custom/hello")
    # request.app is the user's app (state set by its lifespan); the lifespan's state is
    # request.state, shared by the requests
    assert first == {"greeting": "hello from the lifespan", "calls": 1}
    assert second.json() == {"greeting": "hello from the lifespan", "calls": 2}
    assert second.headers["x-custom-middleware"] == "yes"
    # its GET /info replaces treadle's; /ok is treadle's whatever the app says
    assert httpx.get(f"{server.url}/info").json() == {"custom": True}
    ok = httpx.get(f"{server.url}/ok")
    assert ok.json() == {"ok": True} and ok.headers["x-custom-middleware"] == "yes"
    # treadle's API still answers, through the SDK, wrapped by the app's middleware
    client = get_sync_client(url=server.url)
    result = client.runs.wait(None, "headers", input={})
    assert isinstance(result, dict) and result["seen"]["graph_id"] == "headers"
    found = httpx.post(f"{server.url}/assistants/search", json={})
    assert found.status_code == 200 and found.headers["x-custom-middleware"] == "yes"
    assert httpx.get(f"{server.url}/custom/nothing").status_code == 404
    teapot = httpx.get(f"{server.url}/custom/teapot")  # the app's exception handlers apply
    assert teapot.status_code == 418 and teapot.text == "short and stout"
    # treadle's browser guard applies to custom routes too (docs/security.md)
    foreign = httpx.get(f"{server.url}/custom/hello", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    server.stop()
    assert events.read_text() == "started\nstopped\n"


def test_without_http_app_there_are_no_custom_routes(start_server: StartServer,
                                                     tmp_path: Path) -> None:
    server = start_server(config=_config(tmp_path, {}))
    r = httpx.get(f"{server.url}/custom/hello")
    assert r.status_code == 404 and "x-custom-middleware" not in r.headers
    assert httpx.get(f"{server.url}/info").json()["server"] == "treadle"


def test_custom_routes_are_not_authenticated_by_default_and_middleware_runs_first(
        start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(config=_config(
        tmp_path, {"app": f"{HERE / 'webapp.py'}:app"}, auth=True))
    anonymous = httpx.get(f"{server.url}/custom/whoami")
    assert anonymous.status_code == 200 and anonymous.json() == {"user": None}
    # treadle's routes are authenticated as before...
    refused = httpx.post(f"{server.url}/threads/search", json={})
    assert refused.status_code == 401
    # ...after the app's middleware (middleware_first): it wraps the refusal too, and
    # never sees the user
    assert refused.headers["x-custom-middleware"] == "yes"
    allowed = httpx.post(f"{server.url}/threads/search", json={}, headers=ALICE)
    assert allowed.status_code == 200 and allowed.headers["x-saw-user"] == "no"


def test_enable_custom_route_auth_and_auth_first(start_server: StartServer,
                                                 tmp_path: Path) -> None:
    server = start_server(config=_config(
        tmp_path, {"app": f"{HERE / 'webapp.py'}:app", "enable_custom_route_auth": True,
                   "middleware_order": "auth_first"}, auth=True))
    refused = httpx.get(f"{server.url}/custom/whoami")
    assert refused.status_code == 401
    assert "x-custom-middleware" not in refused.headers  # authentication ran first
    me = httpx.get(f"{server.url}/custom/whoami", headers=ALICE)
    assert me.json() == {"user": "alice", "scopes": ["write"]}  # request.user, request.auth
    assert me.headers["x-saw-user"] == "yes"
    api = httpx.post(f"{server.url}/threads/search", json={}, headers=ALICE)
    assert api.status_code == 200 and api.headers["x-saw-user"] == "yes"
    assert httpx.get(f"{server.url}/ok").status_code == 200  # public, with or without it


def _treadle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treadle", *args], capture_output=True,
                          text=True, timeout=60, env=subprocess_env())


@pytest.mark.parametrize(("app", "message"), [
    ("./missing.py:app", "\"http.app\" '{tmp}/missing.py:app' cannot be loaded: no such file: "
                         "{tmp}/missing.py"),
    (f"{HERE / 'webapp.py'}:nope", "\"http.app\" '{here}/webapp.py:nope' cannot be loaded: "),
    (f"{HERE / 'graphs.py'}:headers", "\"http.app\" '{here}/graphs.py:headers' is a "
                                      "CompiledStateGraph, not a Starlette or FastAPI app"),
    ("webapp", '"http.app" must be "path/to/app.py:app" or "module:app" (got \'webapp\')'),
])
def test_an_app_that_cannot_be_served_stops_start_up_in_one_line(
        tmp_path: Path, app: str, message: str) -> None:
    config = _config(tmp_path, {"app": app})
    r = _treadle("dev", "--config", str(config), "--port", "0",
                 "--store", f"sqlite:///{tmp_path / 'x.db'}")
    assert r.returncode == 1, r.stderr
    expected = message.format(tmp=tmp_path.resolve(), here=HERE)
    assert r.stderr.startswith(f"error: {config}: {expected}"), r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "x.db").exists()  # refused before opening anything


@pytest.mark.parametrize("debug", [False, True])
def test_a_lifespan_that_fails_to_start_is_one_line_unless_debug(tmp_path: Path,
                                                                 debug: bool) -> None:
    config = _config(tmp_path, {"app": f"{HERE / 'webapp.py'}:failing"})
    r = _treadle(*(["--debug"] if debug else []), "dev", "--config", str(config), "--port", "0",
                 "--store", f"sqlite:///{tmp_path / 'x.db'}", "--log-format", "console")
    assert r.returncode != 0
    assert "RuntimeError: cannot reach the billing service" in r.stderr
    assert ("Traceback" in r.stderr) is debug, r.stderr
    if not debug:
        assert "the application failed to start: RuntimeError: cannot reach the billing " \
               "service (--debug shows the traceback)" in r.stderr
