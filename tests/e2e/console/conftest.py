"""Browser fixtures for the web console's tests: Debian's chromium driven by Playwright.

``browser`` (one per module) is chromium from ``/usr/bin/chromium`` (``TREADLE_TEST_CHROMIUM``
overrides the path), headless, through Playwright's sync API; no browser is ever downloaded.
Without chromium or the ``playwright`` module the tests skip, or fail under ``CI=true``.

``page`` is a fresh 1280x800 page. The JavaScript errors it logs (``console.error`` and
uncaught exceptions) are collected in ``js_errors`` and fail the test unless it is marked
``@pytest.mark.allow_js_errors``. A failing test leaves a screenshot, and ``shot(name)``
takes one on purpose: ``<test name>-<name>.png`` in ``$TREADLE_TEST_ARTEFACTS`` (default
``test-artefacts/console/`` at the repository root).

``static_server`` serves ``src/treadle/console/assets/`` over HTTP, plus test pages added
with ``add_page`` (``GRAPH_PAGE``, at ``/__test__/graph.html``, loads ``js/graph.js``).
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import re
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parents[3]
ASSETS = REPO / "src" / "treadle" / "console" / "assets"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}

# The page graph.js is tested on: the module alone, no app around it. window.drawGraph is
# graph.js's export; window.graphReady turns true once the module (and dagre) loaded.
GRAPH_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>graph.js test page</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/graph.css">
<style>body { margin: 16px; font-family: system-ui, sans-serif; }</style>
</head>
<body>
<main id="graph"></main>
<script type="module">
import { drawGraph } from "/js/graph.js";
window.drawGraph = drawGraph;
window.clicked = [];
window.graphReady = true;
</script>
</body>
</html>
"""

_failed_key = pytest.StashKey[bool]()
_errors_key = pytest.StashKey[list[str]]()


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, for one test module. Not for the session: Playwright's
    sync API keeps an event loop running in the main thread while it is started, which makes
    every later ``asyncio.run`` of the session fail."""
    chromium = Path(os.environ.get("TREADLE_TEST_CHROMIUM", "/usr/bin/chromium"))
    if importlib.util.find_spec("playwright") is None:
        _missing('the console browser tests need the playwright module: pip install ".[test]"')
    if not chromium.exists():
        _missing(f"the console browser tests need chromium at {chromium}: "
                 "apt-get install chromium (or set TREADLE_TEST_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


def artefacts_dir() -> Path:
    """Where screenshots go: $TREADLE_TEST_ARTEFACTS, else test-artefacts/console/ in the repo."""
    configured = os.environ.get("TREADLE_TEST_ARTEFACTS")
    folder = Path(configured) if configured else REPO / "test-artefacts" / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _screenshot_path(test_name: str, name: str) -> Path:
    def safe(part: str) -> str:
        return re.sub(r"[^\w.-]+", "-", part).strip("-")

    return artefacts_dir() / f"{safe(test_name)}-{safe(name)}.png"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fails a test whose page logged a JavaScript error (the test body passed otherwise)."""
    result = yield
    errors = item.stash.get(_errors_key, None)
    if errors and item.get_closest_marker("allow_js_errors") is None:
        reported = list(errors)
        errors.clear()  # reported here: the page's teardown reports only later ones
        pytest.fail("the page logged JavaScript errors (mark the test allow_js_errors if "
                    "expected):\n" + "\n".join(reported), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                               ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_failed_key] = True
    return report


@pytest.fixture
def js_errors(request: pytest.FixtureRequest) -> list[str]:
    """The JavaScript errors ``page`` logged so far (the test fails on them unless marked
    ``allow_js_errors``)."""
    errors: list[str] = []
    request.node.stash[_errors_key] = errors
    return errors


@pytest.fixture
def page(browser: Browser, js_errors: list[str], request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page in its own context, 1280x800, its JavaScript errors collected."""
    context = browser.new_context(viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]})
    tab = context.new_page()
    tab.on("console", lambda msg: js_errors.append(f"console.error: {msg.text} ({msg.location})")
           if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: js_errors.append(f"uncaught: {exc}"))
    try:
        yield tab
        if request.node.stash.get(_failed_key, False):
            try:
                tab.screenshot(path=_screenshot_path(request.node.name, "failure"), full_page=True)
            except Exception as exc:  # the page may be what broke; the failure says more
                print(f"no failure screenshot: {exc}")
    finally:
        context.close()
    # errors not reported by pytest_runtest_call: logged while the page closed, or the test
    # failed anyway (then they are only printed, with its report)
    if js_errors and request.node.get_closest_marker("allow_js_errors") is None:
        message = "the page logged JavaScript errors:\n" + "\n".join(js_errors)
        if request.node.stash.get(_failed_key, False):
            print(message)
        else:
            pytest.fail(message, pytrace=False)


@pytest.fixture
def shot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``shot(name)`` saves a full-page PNG of ``page`` as ``<test name>-<name>.png`` in the
    artefacts folder and returns its path."""

    def take(name: str) -> Path:
        path = _screenshot_path(request.node.name, name)
        page.screenshot(path=path, full_page=True)
        return path

    return take


@dataclass
class StaticServer:
    """The console's assets over HTTP at ``url``, plus the test pages in ``pages``."""

    url: str
    pages: dict[str, str] = field(default_factory=dict)

    def add_page(self, path: str, html: str) -> str:
        """Serves ``html`` at ``path`` (e.g. ``/__test__/x.html``) and returns its URL."""
        self.pages[path] = html
        return self.url + path


@pytest.fixture(scope="session")
def static_server() -> Iterator[StaticServer]:
    """src/treadle/console/assets/ served on 127.0.0.1 (a port the OS picks, so no race),
    with ``GRAPH_PAGE`` at ``/__test__/graph.html``."""
    pages: dict[str, str] = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(ASSETS), **kwargs)

        def do_GET(self) -> None:
            html = pages.get(self.path.split("?", 1)[0])
            if html is None:
                super().do_GET()
                return
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def end_headers(self) -> None:
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="console-static", daemon=True)
    thread.start()
    static = StaticServer(url=f"http://127.0.0.1:{server.server_address[1]}", pages=pages)
    static.add_page("/__test__/graph.html", GRAPH_PAGE)
    try:
        yield static
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
