"""The web console: graphs, threads, runs, approvals and operations in a browser.

A single page of plain JavaScript modules and CSS (``assets/``, shipped in the wheel: no
CDN, no build step), served by ``treadle dev`` and ``treadle serve`` at the
``console_path`` setting (``/console``; ``console=false`` turns it off). The page holds no
data: everything it shows comes from the HTTP API it is served beside, called from the
browser with the credentials its user types in, so authentication and authorization apply
to it as to any other client. :func:`console_routes` gives the routes;
docs/console.md describes the pages.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from treadle.errors import ConfigError

__all__ = ["ASSETS", "SECURITY_HEADERS", "check_console_path", "console_routes"]

ASSETS = Path(__file__).parent / "assets"

#: Sent with every file of the console: its scripts and styles come from this server only,
#: it calls only this server, and no other site may frame it.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",  # revalidated (ETag): a new treadle's files are seen at once
}


class _Files(StaticFiles):
    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def check_console_path(path: str, api_paths: list[str]) -> None:
    """A ConfigError when the console's path would hide part of the API."""
    for api in api_paths:
        head = "/" + api.strip("/").split("/", 1)[0]
        if path == head or path.startswith(head + "/") or api.startswith(path + "/"):
            raise ConfigError(f"console_path {path} collides with the API's {api}: choose "
                              "another path (--console-path / TREADLE_CONSOLE_PATH)")


def console_routes(path: str) -> list[BaseRoute]:
    """The console at ``path``: the page at ``path/`` (``path`` redirects there) and its
    files under ``path/assets/``."""
    page = (ASSETS / "index.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        # Where the API is, as the browser sees it (behind http.mount_prefix: the prefix).
        base = html.escape(request.scope.get("root_path", ""), quote=True)
        body = page.replace("__TREADLE_API_BASE__", base).replace(
            "__TREADLE_CONSOLE_PATH__", html.escape(path, quote=True))
        return HTMLResponse(body, headers=SECURITY_HEADERS)

    async def slash(request: Request) -> Response:
        return RedirectResponse(request.scope.get("root_path", "") + path + "/", status_code=307)

    return [Route(path, slash, methods=["GET", "HEAD"], include_in_schema=False),
            Route(path + "/", index, methods=["GET", "HEAD"], include_in_schema=False),
            Mount(path + "/assets", _Files(directory=ASSETS), name="console-assets")]
