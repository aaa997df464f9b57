"""langgraph.json: every key of langgraph-cli's schema has a status, and treadle acts on it."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from treadle import langgraph_json
from treadle.errors import ConfigError
from treadle.langgraph_json import KEYS, Key, check, keys_markdown, load, read_langgraph_json

REPO = Path(__file__).resolve().parents[2]

# The keys langgraph-cli 0.4.40 knows (langgraph_cli/schemas.py `Config` and the TypedDicts it
# nests, plus config.py's _KNOWN_CONFIG_KEYS), written out so that a new one is noticed here.
SCHEMA_KEYS = {
    "python_version", "node_version", "api_version", "_INTERNAL_docker_tag", "base_image",
    "image_distro", "pip_config_file", "pip_installer", "source", "dockerfile_lines",
    "dependencies", "graphs", "env", "store", "checkpointer", "auth", "encryption",
    "priority", "http", "webhooks", "ui", "ui_config", "keep_pkg_tools", "project_root",
    "package",
    "graphs.*.path", "graphs.*.description",
    "store.index", "store.ttl",
    "checkpointer.path", "checkpointer.ttl", "checkpointer.serde",
    "checkpointer.serde.allowed_json_modules", "checkpointer.serde.allowed_msgpack_modules",
    "checkpointer.serde.pickle_fallback",
    "http.app", "http.disable_assistants", "http.disable_threads", "http.disable_runs",
    "http.disable_store", "http.disable_mcp", "http.disable_a2a", "http.disable_meta",
    "http.disable_ui", "http.disable_webhooks", "http.cors", "http.configurable_headers",
    "http.logging_headers", "http.middleware_order", "http.enable_custom_route_auth",
    "http.mount_prefix",
    "http.configurable_headers.includes", "http.configurable_headers.excludes",
    "http.configurable_headers.include", "http.configurable_headers.exclude",  # langgraph-api's aliases
    "http.disable_crons",  # treadle's addition (the cron routes alone)
    "http.cors.allow_origins", "http.cors.allow_methods", "http.cors.allow_headers",
    "http.cors.allow_credentials", "http.cors.allow_origin_regex", "http.cors.expose_headers",
    "http.cors.max_age",
    "store.ttl.default_ttl", "store.ttl.refresh_on_read", "store.ttl.sweep_interval_minutes",
    "store.index.dims", "store.index.embed", "store.index.fields",
    "checkpointer.ttl.strategy", "checkpointer.ttl.default_ttl",
    "checkpointer.ttl.sweep_interval_minutes", "checkpointer.ttl.sweep_limit",
    "auth.path", "auth.disable_studio_auth", "auth.openapi", "auth.cache",
    "webhooks.env_prefix", "webhooks.headers", "webhooks.url", "webhooks.url.require_https",
    "webhooks.url.allowed_domains", "webhooks.url.allowed_ports", "webhooks.url.max_url_length",
    "webhooks.url.disable_loopback",
    "webhooks.url.disable_private",  # treadle's addition (private addresses)
}

BASE = {"graphs": {"g": "./g.py:graph"}}

# A value each key may take in a real langgraph.json (default: a string).
SAMPLES: dict[str, Any] = {
    "graphs": {"g": "./g.py:graph"},
    "dependencies": ["."],
    "env": {"A": "b"},
    "dockerfile_lines": ["RUN true"],
    "keep_pkg_tools": True,
    "source": {"kind": "uv", "root": "."},
    "auth": {"path": "./auth.py:auth"},
    "encryption": {"path": "./enc.py:enc"},
    "priority": {"path": "./prio.py:prio"},
    "webhooks": {"env_prefix": "LG_WEBHOOK_"},
    "webhooks.url": {"require_https": True},
    "ui": {"agent": "./ui.tsx"},
    "ui_config": {"shared": ["react"]},
    "store": {}, "checkpointer": {}, "http": {},
    "store.index": {"dims": 1536, "embed": "openai:text-embedding-3-small"},
    "store.ttl": {"default_ttl": 5},
    "checkpointer.ttl": {"strategy": "delete", "default_ttl": 60},
    "checkpointer.serde": {"pickle_fallback": False},
    "checkpointer.serde.allowed_json_modules": [["my_agent.state", "Plan"]],
    "checkpointer.serde.allowed_msgpack_modules": [["my_agent.state", "Plan"]],
    "http.cors": {"allow_origins": ["*"]},
    "http.configurable_headers": {"includes": ["x-user"]},
    "http.logging_headers": {"excludes": ["authorization"]},
    "http.middleware_order": "auth_first",
    "http.enable_custom_route_auth": True,
}


def _doc_with(key: Key, value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(BASE))
    parts = key.path.split(".")
    if parts[:2] == ["graphs", "*"]:
        doc["graphs"]["g"] = {"path": "./g.py:graph", parts[2]: value}
        return doc
    node: dict[str, Any] = doc
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return doc


KIND_SAMPLES: dict[str, Any] = {"boolean": True, "integer": 600, "number": 1.5, "string": "x",
                                "list of strings": ["x"], "list of integers": [443],
                                "JSON object of strings": {"X-A": "b"}}


# Keys whose value is one of a few words (checked beyond their JSON type).
ENUM_SAMPLES: dict[str, Any] = {"checkpointer.ttl.strategy": "keep_latest",
                                "http.middleware_order": "auth_first",
                                "http.app": "./webapp.py:app", "http.mount_prefix": "/my-api"}


def _sample(key: Key) -> Any:
    if key.path in ENUM_SAMPLES:
        return ENUM_SAMPLES[key.path]
    if key.kind is not None:
        return KIND_SAMPLES[key.kind]
    return SAMPLES.get(key.path, "x")


@pytest.mark.parametrize("key", [k for k in KEYS if k.kind], ids=lambda k: k.path)
def test_an_honoured_key_of_the_wrong_type_is_one_line(key: Key) -> None:
    wrong = ["x", 1] if key.kind == "list of strings" else ["x"]
    with pytest.raises(ConfigError) as err:
        check(_doc_with(key, wrong), "langgraph.json")
    assert str(err.value) == f'langgraph.json: "{key.path}" must be a {key.kind}'


def test_the_table_covers_langgraph_clis_schema_exactly() -> None:
    assert {k.path for k in KEYS} == SCHEMA_KEYS
    assert len(KEYS) == len(SCHEMA_KEYS)  # no key twice


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.path)
def test_each_key_does_what_its_status_says(key: Key) -> None:
    doc = _doc_with(key, _sample(key))
    if key.status == "refused":
        with pytest.raises(ConfigError) as err:
            check(doc, "langgraph.json")
        message = str(err.value)
        assert f'unsupported key "{key.path}"' in message and key.note in message
        assert "\n" not in message
    else:
        found = check(doc, "langgraph.json")
        assert found.warnings == []
        assert found.build_only == ([key.path] if key.status == "build-only" else [])
    # null is the key's absence, whatever its status
    assert check(_doc_with(key, None), "langgraph.json").warnings == []


def test_auth_is_read_with_its_file_made_absolute(tmp_path: Path) -> None:
    file = tmp_path / "langgraph.json"
    file.write_text(json.dumps({**BASE, "auth": {"path": "./auth.py:auth",
                                                 "disable_studio_auth": True}}))
    assert load(file).auth == f"{tmp_path.resolve() / 'auth.py'}:auth"
    file.write_text(json.dumps({**BASE, "auth": {"path": "pkg.auth:auth"}}))
    assert load(file).auth == "pkg.auth:auth"
    file.write_text(json.dumps(BASE))
    assert load(file).auth is None


@pytest.mark.parametrize("auth", [{"path": "./auth.py"}, {"disable_studio_auth": True}])
def test_an_auth_without_a_usable_path_is_one_line(tmp_path: Path, auth: dict[str, Any]) -> None:
    file = tmp_path / "langgraph.json"
    file.write_text(json.dumps({**BASE, "auth": auth}))
    with pytest.raises(ConfigError) as err:
        load(file)
    assert str(err.value) == (f'{file}: "auth.path" must be "path/to/auth.py:attr" (the '
                              "langgraph_sdk.Auth instance)")


def test_every_refused_key_is_named_in_the_one_line() -> None:
    doc = {**BASE, "ui": {"a": "a.tsx"}, "checkpointer": {"path": "./s.py:s"}, "ui_config": {}}
    with pytest.raises(ConfigError,
                       match=r'"ui".*\(also unsupported: checkpointer\.path, ui_config\)$'):
        check(doc, "langgraph.json")


@pytest.mark.parametrize(("doc", "warning"), [
    ({**BASE, "python_verison": "3.12"},
     'unknown key "python_verison" is ignored (did you mean \'python_version\'?)'),
    ({**BASE, "semantic_search": {}}, 'unknown key "semantic_search" is ignored'),
    ({**BASE, "http": {"corss": {}}}, 'unknown key "http.corss" is ignored (did you mean \'cors\'?)'),
    ({**BASE, "http": {"cors": {"allow_origin": ["*"]}}},
     'unknown key "http.cors.allow_origin" is ignored (did you mean \'allow_origins\'?)'),
    ({**BASE, "store": {"sweep": 1}}, 'unknown key "store.sweep" is ignored'),
    ({"graphs": {"g": {"path": "g.py:graph", "descripton": "x"}}},
     'unknown key "graphs.g.descripton" is ignored (did you mean \'description\'?)'),
])
def test_unknown_keys_are_warnings(doc: dict[str, Any], warning: str) -> None:
    assert check(doc, "langgraph.json").warnings == [f"langgraph.json: {warning}"]


@pytest.mark.parametrize(("doc", "message"), [
    ({**BASE, "http": "x"}, '"http" must be an object'),
    ({**BASE, "dependencies": "."}, '"dependencies" must be a list of strings'),
    ({"graphs": {}}, 'has no "graphs" object'),
    ({"graphs": {"g": 1}}, "graph 'g' must be a string"),
])
def test_bad_shapes_are_one_line(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check(doc, "langgraph.json")
        langgraph_json.graph_refs(doc, "langgraph.json", str)


def test_load_applies_env_and_dependencies_and_logs_unknown_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "abs").mkdir()
    (tmp_path / ".env").write_text("# comment\nLGJSON_FROM_FILE='yes'\n")
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({
        "dependencies": [str(tmp_path / "abs"), "./lib", "requests"], "python_version": "3.12", "color": "blue",
        "graphs": {"a": "./a.py:graph", "b": {"path": "pkg.mod:graph", "description": "B"}},
        "env": {"LGJSON_FROM_DICT": "1", "LGJSON_SET": "json"}}))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("LGJSON_SET", "environment")
    monkeypatch.delenv("LGJSON_FROM_DICT", raising=False)
    with caplog.at_level(logging.INFO, logger="treadle.config"):
        loaded = load(config)
    assert loaded.refs == {"a": f"{tmp_path.resolve() / 'a.py'}:graph", "b": "pkg.mod:graph"}
    assert loaded.descriptions == {"b": "B"}
    assert sys.path[:2] == [str((tmp_path / d).resolve()) for d in ("lib", "abs")]
    assert "requests" not in sys.path
    assert os.environ["LGJSON_FROM_DICT"] == "1" and os.environ["LGJSON_SET"] == "environment"
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("WARNING", f'{config}: unknown key "color" is ignored') in messages
    assert ("INFO", f"{config}: python_version used by `langgraph build` only; treadle "
            "ignores it at run time") in messages
    config.write_text(json.dumps({"graphs": {"a": "./a.py:graph"}, "env": ".env"}))
    monkeypatch.delenv("LGJSON_FROM_FILE", raising=False)
    assert read_langgraph_json(config) == {"a": f"{tmp_path.resolve() / 'a.py'}:graph"}
    assert os.environ["LGJSON_FROM_FILE"] == "yes"


def test_load_refuses_before_applying_anything(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({**BASE, "env": {"LGJSON_NOT_SET": "1"},
                                  "ui": {"a": "./a.tsx"}}))
    monkeypatch.delenv("LGJSON_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match='unsupported key "ui"'):
        load(config)
    assert "LGJSON_NOT_SET" not in os.environ


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON: Expecting property name"),
    ("[1]", "must hold a JSON object"),
])
def test_unreadable_files(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load(config)
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.json")


def test_docs_list_every_key_as_the_code_does() -> None:
    docs = (REPO / "docs" / "api.md").read_text()
    assert keys_markdown() in docs, "regenerate with langgraph_json.keys_markdown()"


def test_deploy_k8s_checks_the_config_it_ships(tmp_path: Path) -> None:
    from treadle.deploy.manifests import K8sOptions, render

    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({**BASE, "colour": "blue", "dockerfile_lines": ["RUN true"]}))
    _, notes = render(K8sOptions(config=config, allow_unauthenticated=True))
    assert f'{config}: unknown key "colour" is ignored' in notes
    config.write_text(json.dumps({**BASE, "checkpointer": {"path": "./saver.py:saver"}}))
    with pytest.raises(ConfigError, match='unsupported key "checkpointer.path"'):
        render(K8sOptions(config=config))


def test_the_server_sends_the_cors_headers_http_cors_asks_for(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from treadle.config import Settings
    from treadle.langgraph_json import Loaded, cors_options
    from treadle.server.app import create_app

    settings = Settings(store=f"sqlite:///{tmp_path}/cors.db")
    preflight = {"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(settings, {})) as client:  # no http.cors: no CORS headers
        assert "access-control-allow-origin" not in client.options("/threads", headers=preflight
                                                                   ).headers
        assert "access-control-allow-origin" not in client.get(
            "/ok", headers={"Origin": "https://ui.example"}).headers
    doc = {**BASE, "http": {"cors": {"allow_origins": ["https://ui.example"],
                                     "allow_methods": ["GET", "POST"], "max_age": 60,
                                     "expose_headers": ["content-location"],
                                     "allow_credentials": None, "allow_origin": ["typo"]}}}
    cors = cors_options(doc)
    assert cors == {"allow_origins": ["https://ui.example"], "allow_methods": ["GET", "POST"],
                    "max_age": 60, "expose_headers": ["content-location"]}
    with TestClient(create_app(settings, {}, langgraph=Loaded({}, cors=cors))) as client:
        answer = client.options("/threads", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://ui.example"
        assert answer.headers["access-control-max-age"] == "60"
        ok = client.get("/ok", headers={"Origin": "https://ui.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        assert ok.headers["access-control-expose-headers"] == "content-location"
        other = client.options("/threads", headers={**preflight, "Origin": "https://evil.example"})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers


def test_store_ttl_is_langgraphs_ttl_config() -> None:
    from treadle.langgraph_json import store_ttl

    assert store_ttl(BASE) is None and store_ttl({**BASE, "store": {"ttl": None}}) is None
    doc = {**BASE, "store": {"ttl": {"default_ttl": 5, "refresh_on_read": False,
                                     "sweep_interval_minutes": None, "typo": 1}}}
    assert store_ttl(doc) == {"default_ttl": 5, "refresh_on_read": False}


def test_the_store_api_reads_with_store_ttls_refresh_default(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from treadle.config import Settings
    from treadle.langgraph_json import Loaded
    from treadle.server.app import create_app

    settings = Settings(store=f"sqlite:///{tmp_path}/ttl.db")

    def expires(client: TestClient) -> float:
        row = client.app.state.ctx.store.get_items(  # type: ignore[attr-defined]
            [(("n",), "k")], refresh_ttl=False)[0]
        assert row is not None and row.expires_at is not None
        return float(row.expires_at)

    item = {"namespace": ["n"], "key": "k", "value": {"v": 1}, "ttl": 10}
    for ttl, refreshed in ((None, True), ({"refresh_on_read": False}, False),
                           ({"refresh_on_read": True, "default_ttl": 3}, True)):
        app = create_app(settings, {}, langgraph=Loaded({}, store_ttl=ttl))
        with TestClient(app) as client:
            assert client.put("/store/items", json=item).status_code == 204
            before = expires(client)
            time.sleep(0.01)  # a refresh now moves expires_at forward
            assert client.get("/store/items", params={"namespace": "n", "key": "k"}
                              ).status_code == 200
            assert (expires(client) > before) is refreshed, ttl
            search = client.post("/store/items/search", json={"namespace_prefix": ["n"]})
            assert search.json()["items"][0]["key"] == "k"
            asked = client.get("/store/items", params={"namespace": "n", "key": "k",
                                                       "refresh_ttl": "false"})
            assert asked.status_code == 200
            # An HTTP put without ttl keeps its item, whatever default_ttl says.
            assert client.put("/store/items", json={**item, "ttl": None}).status_code == 204
            row = client.app.state.ctx.store.get_items(  # type: ignore[attr-defined]
                [(("n",), "k")], refresh_ttl=False)[0]
            assert row is not None and row.ttl_minutes is None


def test_what_the_table_says_treadle_does_not_do(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """http.disable_mcp/a2a true, http.disable_ui: no such routes; http.configurable_headers:
    no header reaches a run's config; http.logging_headers: no header is logged."""
    from fastapi.testclient import TestClient

    from treadle.config import Settings
    from treadle.langgraph_json import Loaded
    from treadle.server.app import create_app

    chain = f"{REPO / 'tests' / 'server_graphs' / 'graphs.py'}:chain"
    app = create_app(Settings(store=f"sqlite:///{tmp_path}/h.db"), {"chain": chain},
                     langgraph=Loaded({"chain": chain}, disable_mcp=True, disable_a2a=True))
    headers = {"x-user-id": "header-value-1", "authorization": "Bearer header-value-2",
               "user-agent": "header-value-3"}
    with caplog.at_level(logging.DEBUG), TestClient(app) as client:
        for path in ("/mcp", "/mcp/", "/a2a/chain", "/ui/chain", "/.well-known/agent-card.json"):
            assert client.get(path).status_code == 404
            assert client.post(path, json={}).status_code in (404, 405)
        thread = client.post("/threads", json={}, headers=headers).json()
        run = client.post(f"/threads/{thread['thread_id']}/runs", headers=headers,
                          json={"assistant_id": "chain", "input": {"n": 1},
                                "config": {"configurable": {"own": 1}}})
        assert run.status_code == 200, run.text
        stored = client.get(f"/threads/{thread['thread_id']}/runs/{run.json()['run_id']}")
    configurable = stored.json()["kwargs"]["config"]["configurable"]
    assert configurable["own"] == 1 and "header-value" not in json.dumps(configurable)
    assert not [k for k in configurable if k in headers or k.startswith("x-")]
    assert caplog.records and "header-value" not in caplog.text


@pytest.mark.parametrize(("http", "mcp", "a2a"), [
    ({}, False, False), ({"disable_mcp": True}, True, False),
    ({"disable_a2a": True, "disable_mcp": False}, False, True), ({"disable_mcp": None}, False, False)])
def test_disable_mcp_and_a2a_are_read(tmp_path: Path, http: dict[str, Any], mcp: bool,
                                      a2a: bool) -> None:
    file = tmp_path / "langgraph.json"
    file.write_text(json.dumps({"graphs": {"g": "./g.py:graph"}, "http": http}))
    loaded = load(file)
    assert (loaded.disable_mcp, loaded.disable_a2a) == (mcp, a2a)


def test_disable_mcp_must_be_a_boolean(tmp_path: Path) -> None:
    file = tmp_path / "langgraph.json"
    file.write_text(json.dumps({"graphs": {"g": "./g.py:graph"}, "http": {"disable_mcp": "yes"}}))
    with pytest.raises(ConfigError, match="disable_mcp"):
        load(file)
