"""langgraph.json's ``http`` section: each mistake is one ConfigError line; header patterns
copy what they name and never credentials or keys that steer treadle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from treadle.errors import ConfigError
from treadle.langgraph_http import NEVER_COPIED, HttpOptions, http_options
from treadle.langgraph_json import check, load
from treadle.server.run_config import run_headers

BASE = {"graphs": {"g": "./g.py:graph"}}


def _options(**http: Any) -> HttpOptions:
    return http_options({**BASE, "http": http}, "langgraph.json", lambda t: f"/abs/{t}")


def test_the_defaults() -> None:
    assert _options() == HttpOptions()
    assert http_options(BASE, "x", str) == HttpOptions()


def test_the_section_as_the_server_applies_it(tmp_path: Path) -> None:
    file = tmp_path / "langgraph.json"
    file.write_text(json.dumps({**BASE, "http": {
        "app": "./web/app.py:app", "mount_prefix": "/a/b/", "disable_runs": True,
        "disable_meta": True, "disable_store": False, "disable_webhooks": True,
        "middleware_order": "auth_first", "enable_custom_route_auth": True}}))
    http = load(file).http
    assert http.app == f"{tmp_path.resolve() / 'web' / 'app.py'}:app"
    assert http.mount_prefix == "/a/b"
    assert http.disabled == {"runs", "meta"}
    assert http.disable_webhooks and http.custom_route_auth
    assert http.middleware_order == "auth_first"
    assert _options(app="my_pkg.web:app").app == "my_pkg.web:app"  # a module: as given
    assert _options(mount_prefix="/").mount_prefix == ""  # no prefix, as in langgraph-api


@pytest.mark.parametrize(("http", "message"), [
    ({"app": "app.py"}, '"http.app" must be "path/to/app.py:app" or "module:app" '
                        "(got 'app.py')"),
    ({"app": ":app"}, '"http.app" must be'),
    ({"mount_prefix": "api"}, '"http.mount_prefix" must be a path such as "/my-api"'),
    ({"mount_prefix": "/a b"}, '"http.mount_prefix" must be a path'),
    ({"mount_prefix": "/a//b"}, '"http.mount_prefix" must be a path'),
    ({"mount_prefix": "/a?b"}, '"http.mount_prefix" must be a path'),
    ({"middleware_order": "first"}, '"http.middleware_order" must be "middleware_first" or '
                                    "\"auth_first\" (got 'first')"),
    ({"configurable_headers": {"includes": ["x-(.*)"]}},
     '"http.configurable_headers.includes": \'x-(.*)\' is not a header name pattern'),
    ({"configurable_headers": {"excludes": [""]}},
     '"http.configurable_headers.excludes": \'\' is not a header name pattern'),
    ({"configurable_headers": ["x-a"]}, '"http.configurable_headers" must be an object'),
    ({"disable_runs": "yes"}, '"http.disable_runs" must be a boolean'),
    ({"enable_custom_route_auth": 1}, '"http.enable_custom_route_auth" must be a boolean'),
])
def test_a_mistake_is_one_line(http: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check({**BASE, "http": http}, "langgraph.json")
    assert str(err.value).startswith(f"langgraph.json: {message}")
    assert "\n" not in str(err.value)


def test_header_patterns() -> None:
    patterns = _options(configurable_headers={"includes": ["x-user-*", "user-agent", "*id"],
                                              "excludes": ["x-user-secret*"]}).headers
    headers = {"X-User-Id": "1", "x-user-secret-token": "s", "User-Agent": "ua",
               "x-other": "o", "request-id": "r", "x-user": "no dash after"}
    assert patterns.copied(headers) == {"x-user-id": "1", "user-agent": "ua",
                                        "request-id": "r"}
    # "." in a pattern is a dot, not any character
    assert _options(configurable_headers={"include": ["a.b"]}).headers.copied(
        {"a.b": "1", "axb": "2"}) == {"a.b": "1"}
    assert _options().headers.copied(headers) == {}  # none without the key


def test_credentials_and_steering_keys_are_never_copied() -> None:
    everything = _options(configurable_headers={"includes": ["*"]}).headers
    headers = {name: "v" for name in NEVER_COPIED} | {
        "Authorization": "Bearer t", "__pregel_send": "x", "__treadle_store": "x",
        "checkpoint_store": "x", "runtime": "x", "x-ok": "1"}
    assert run_headers(everything, headers) == {"x-ok": "1"}
    assert everything.copied({"runtime": "local"}) == {"runtime": "local"}  # what it says
    assert {"authorization", "cookie", "x-api-key", "proxy-authorization"} <= NEVER_COPIED
