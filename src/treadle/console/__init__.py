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
import mimetypes
from collections.abc import Iterable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Route

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
    "cache-control": "no-cache",  # revalidated: a new treadle's files are seen at once
}


async def _file(request: Request) -> Response:
    """A file under ASSETS (a Route, not a Mount: it works the same under http.mount_prefix)."""
    full = (ASSETS / request.path_params["name"]).resolve()
    if not full.is_relative_to(_ROOT) or not full.is_file():
        return PlainTextResponse("Not Found", status_code=404)
    kind = _TYPES.get(full.suffix) or mimetypes.guess_type(full.name)[0] or "text/plain"
    return FileResponse(full, media_type=kind, headers=SECURITY_HEADERS)


_ROOT = ASSETS.resolve()
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".html": "text/html", ".png": "image/png", ".md": "text/plain"}


def _paths(routes: Iterable[object]) -> list[str]:
    """The paths of ``routes``, those of included routers too."""
    out: list[str] = []
    for route in routes:
        if path := getattr(route, "path", None):
            out.append(path)
        inner = getattr(route, "original_router", None)  # FastAPI's included router
        if inner is not None:
            out.extend(_paths(inner.routes))
    return out


def check_console_path(path: str, routes: Iterable[object]) -> None:
    """A ConfigError when the console's path would hide part of the API (``routes``)."""
    for api in _paths(routes):
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
        return HTMLResponse(page.replace("__TREADLE_API_BASE__", base), headers=SECURITY_HEADERS)

    async def slash(request: Request) -> Response:
        return RedirectResponse(request.scope.get("root_path", "") + path + "/", status_code=307)

    return [Route(path, slash, methods=["GET", "HEAD"], include_in_schema=False),
            Route(path + "/", index, methods=["GET", "HEAD"], include_in_schema=False),
            Route(path + "/assets/{name:path}", _file, methods=["GET", "HEAD"],
                  include_in_schema=False)]
