"""Where the web console is served, and how: its path, its off switch, its headers, its
place under http.mount_prefix and beside authentication."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from treadle.config import Settings, get_settings
from treadle.console import ASSETS, SECURITY_HEADERS
from treadle.errors import ConfigError
from treadle.langgraph_http import HttpOptions
from treadle.langgraph_json import Loaded
from treadle.server.app import create_app


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(store=f"sqlite:///{tmp_path}/c.db", **kw)  # type: ignore[arg-type]


def test_served_at_console_with_its_files_and_headers(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path), {})) as client:
        moved = client.get("/console", follow_redirects=False)
        assert moved.status_code == 307 and moved.headers["location"] == "/console/"
        page = client.get("/console/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<meta name="treadle-api-base" content="">' in page.text
        for name, value in SECURITY_HEADERS.items():
            assert page.headers[name] == value
        # every file the page and its modules name is served (none from elsewhere)
        names = re.findall(r'(?:src|href)="assets/([^"]+)"', page.text)
        for module in (ASSETS / "js").rglob("*.js"):
            names.append(str(module.relative_to(ASSETS)))
        for name in names:
            answer = client.get(f"/console/assets/{name}")
            assert answer.status_code == 200, name
            assert answer.headers["content-security-policy"] == SECURITY_HEADERS[
                "content-security-policy"]
        assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text)  # no CDN
        assert "/console" not in client.get("/openapi.json").text


def test_imports_between_modules_resolve(tmp_path: Path) -> None:
    """Every relative import in the console's modules names a file that exists."""
    for module in (ASSETS / "js").rglob("*.js"):
        for target in re.findall(r'from "(\.{1,2}/[^"]+)"', module.read_text()):
            assert (module.parent / target).resolve().is_file(), f"{module.name}: {target}"


def test_path_setting_and_off_switch(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path, console_path="/ops/ui"), {})) as client:
        assert client.get("/ops/ui/").status_code == 200
        assert client.get("/ops/ui/assets/js/app.js").status_code == 200
        assert client.get("/console/").status_code == 404
    with TestClient(create_app(settings(tmp_path, console=False), {})) as client:
        assert client.get("/console/").status_code == 404
        assert client.get("/console/assets/js/app.js").status_code == 404


@pytest.mark.parametrize("path", ["/threads", "/threads/x", "/assistants", "/ok", "/docs"])
def test_a_path_that_hides_the_api_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(ConfigError, match="console_path .* collides with the API"):
        create_app(settings(tmp_path, console_path=path), {})


@pytest.mark.parametrize("bad", ["console", "/console/", "/a b", "/"])
def test_a_malformed_path_is_one_line(bad: str) -> None:
    with pytest.raises(ConfigError, match="console_path"):
        get_settings(console_path=bad)


def test_under_mount_prefix_the_page_knows_where_the_api_is(tmp_path: Path) -> None:
    loaded = Loaded({}, http=HttpOptions(mount_prefix="/my-api"))
    with TestClient(create_app(settings(tmp_path), {}, langgraph=loaded)) as client:
        moved = client.get("/my-api/console", follow_redirects=False)
        assert moved.headers["location"] == "/my-api/console/"
        page = client.get("/my-api/console/")
        assert '<meta name="treadle-api-base" content="/my-api">' in page.text
        assert client.get("/my-api/console/assets/js/api.js").status_code == 200


def test_the_files_are_public_the_api_is_not(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path, auth="builtin", jwt_secret="s" * 32), {})) as c:
        assert c.get("/console/").status_code == 200
        assert c.get("/console/assets/js/app.js").status_code == 200
        assert c.head("/console/assets/js/app.js").status_code == 200
        assert c.post("/threads/search", json={}).status_code == 401
        assert c.post("/console/", json={}).status_code == 401  # only GET and HEAD are public


def test_nothing_outside_the_assets_is_served(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path), {})) as client:
        for sneaky in ("..%2F__init__.py", "..%2F..%2Fconfig.py", "%2E%2E/__init__.py",
                       "js/..%2F..%2F__init__.py", "js", "nothing.js"):
            assert client.get(f"/console/assets/{sneaky}").status_code == 404, sneaky


def test_a_malformed_path_says_what_a_path_is() -> None:
    with pytest.raises(ConfigError) as caught:
        get_settings(as_flags=True, console_path="console")
    assert str(caught.value) == (
        "invalid setting --console-path / TREADLE_CONSOLE_PATH: must be a path such as "
        "/console or /ops/console (letters, digits and . _ ~ - between slashes, no trailing "
        "slash) (got 'console')")


def test_a_path_over_custom_routes_is_refused() -> None:
    """http.app's routes under the console's path would be served without credentials."""
    from starlette.routing import Route

    from treadle.console import check_console_path

    async def page(request: object) -> None:  # pragma: no cover - never called
        return None

    with pytest.raises(ConfigError, match="collides with the API's /console/admin"):
        check_console_path("/console", [Route("/console/admin", page)])
    check_console_path("/console", [Route("/consoles", page), Route("/admin", page)])
