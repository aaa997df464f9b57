"""The authentication middleware (treadle.auth.authenticate) and loading an Auth
(treadle.auth.loading), over a small real Starlette app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import Auth
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from treadle.auth.authenticate import Authenticate, public_paths
from treadle.auth.loading import check_auth, load_auth
from treadle.errors import ConfigError

SEEN: dict[str, Any] = {}


def _auth() -> Auth:
    auth = Auth()

    @auth.authenticate
    async def authenticate(request: Request, headers: dict[bytes, bytes], authorization: str | None,
                           path: str, method: str, path_params: dict[str, str],
                           query_params: dict[str, str]) -> dict[str, Any]:
        SEEN.update(path=path, method=method, path_params=path_params, query=query_params,
                    header=headers.get(b"x-h"), url=str(request.url.path))
        if authorization == "Bearer raise":
            raise Auth.exceptions.HTTPException(403, "go away", headers={"x-why": "test"})
        if authorization != "Bearer good":
            raise ValueError(f"bad token {authorization}")  # may hold the secret
        return {"identity": "u", "tenant_id": "acme"}

    return auth


async def whoami(request: Request) -> JSONResponse:
    state = request.scope.get("state", {})
    user = state.get("auth_user")
    return JSONResponse({"user": user and user.identity, "tenant": state.get("auth_tenant")})


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(websocket.scope["state"]["auth_user"].identity)
    await websocket.close()


def _client(auth: Auth | None) -> TestClient:
    app = Starlette(routes=[Route("/things/{thing_id}", whoami), Route("/ok", whoami),
                            WebSocketRoute("/ws/{x}", socket)])
    app.add_middleware(Authenticate, auth_of=lambda: auth,
                       public=public_paths(info=True, metrics=False))
    return TestClient(app)


def test_the_handler_gets_its_parameters_by_name_and_sets_the_user() -> None:
    r = _client(_auth()).get("/things/t1?a=b", headers={"Authorization": "Bearer good",
                                                        "X-H": "v"})
    assert (r.status_code, r.json()) == (200, {"user": "u", "tenant": "acme"})
    assert SEEN == {"path": "/things/t1", "method": "GET", "path_params": {"thing_id": "t1"},
                    "query": {"a": "b"}, "header": b"v", "url": "/things/t1"}


def test_refusals(caplog: pytest.LogCaptureFixture) -> None:
    client = _client(_auth())
    r = client.get("/things/t1", headers={"Authorization": "Bearer raise"})
    assert (r.status_code, r.json(), r.headers["x-why"]) == (403, {"detail": "go away"}, "test")
    r = client.get("/things/t1", headers={"Authorization": "Bearer s3cret"})
    assert (r.status_code, r.json()) == (401, {"detail": "Unauthorized"})
    assert "s3cret" not in caplog.text
    assert client.get("/ok").json() == {"user": None, "tenant": None}  # public: no user


def test_public_paths() -> None:
    assert public_paths(info=True, metrics=False) == {"/ok", "/healthz", "/readyz", "/info"}
    assert "/metrics" in public_paths(info=False, metrics=True)


def test_auth_not_ready_is_503() -> None:
    assert _client(None).get("/things/t1").status_code == 503


def test_websockets_are_refused_before_accept() -> None:
    client = _client(_auth())
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("/ws/1", headers={"Authorization": "Bearer nope"}):
            pass
    assert closed.value.code == 4401
    with client.websocket_connect("/ws/1", headers={"Authorization": "Bearer good"}) as ws:
        assert ws.receive_text() == "u"


def test_loading_checks_what_it_finds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a int, not a langgraph_sdk.Auth"):
        check_auth(3, "x")
    with pytest.raises(ConfigError, match="has no @auth.authenticate handler"):
        check_auth(Auth(), "x")
    auth = Auth()

    @auth.authenticate
    async def needs_body(body: dict[str, Any]) -> str:
        return "x"

    with pytest.raises(ConfigError, match="asks for 'body' \\(treadle does not pass the request"):
        check_auth(auth, "x")
    file = tmp_path / "my_auth.py"
    file.write_text("from langgraph_sdk import Auth\nauth = Auth()\n\n"
                    "@auth.authenticate\nasync def a(headers, user_agent=None):\n    return 'u'\n")
    assert isinstance(load_auth(f"{file}:auth"), Auth)
    with pytest.raises(ConfigError) as err:
        load_auth(f"{file}:missing", "lg.json")
    assert str(err.value).startswith(f"lg.json: \"auth.path\" '{file}:missing' cannot be loaded")
    assert "\n" not in str(err.value)
