"""langgraph.json through the real CLI: refused keys stop start-up in one line, unknown keys
warn, descriptions reach the default assistants, http.cors is honoured (docs/api.md, "langgraph.json")."""

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

SERVER_GRAPHS = Path(__file__).resolve().parents[1] / "server_graphs"
CHAIN = f"{SERVER_GRAPHS / 'graphs.py'}:chain"


def _config(tmp_path: Path, **keys: object) -> Path:
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"chain": CHAIN}, **keys}))
    return config


def _treadle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treadle", *args], capture_output=True,
                          text=True, timeout=60, env=subprocess_env())


@pytest.mark.parametrize("command", ["dev", "serve"])
def test_a_server_whose_auth_cannot_load_does_not_start(tmp_path: Path, command: str) -> None:
    config = _config(tmp_path, auth={"path": "./auth.py:auth"})
    r = _treadle(command, "--config", str(config), "--port", "0",
                 "--store", f"sqlite:///{tmp_path / 'x.db'}")
    assert r.returncode == 1, r.stderr
    missing = tmp_path.resolve() / "auth.py"
    assert r.stderr == (f"error: {config}: \"auth.path\" '{missing}:auth' cannot be loaded: "
                        f"no such file: {missing}\n")
    assert r.stdout == ""
    assert not (tmp_path / "x.db").exists()  # refused before opening anything


def test_worker_and_run_refuse_it_too(tmp_path: Path) -> None:
    config = _config(tmp_path, ui={"agent": "./ui.tsx"})
    store = f"sqlite:///{tmp_path / 'x.db'}"
    for args in (["worker", "--config", str(config), "--store", store],
                 ["run", "chain", "--config", str(config), "--store", store]):
        r = _treadle(*args)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith(f'error: {config}: unsupported key "ui": ')
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_deploy_k8s_refuses_it(tmp_path: Path) -> None:
    config = _config(tmp_path, ui={"agent": "./ui.tsx"})
    r = _treadle("deploy", "k8s", "--config", str(config))
    assert r.returncode == 1
    assert r.stderr.startswith(f'error: {config}: unsupported key "ui": ')
    assert r.stderr.count("\n") == 1


def test_unknown_keys_warn_and_descriptions_reach_the_default_assistant(
        start_server: StartServer, tmp_path: Path) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({
        "graphs": {"chain": {"path": CHAIN, "description": "adds one, ten times"}},
        "python_version": "3.12", "colour": "blue",
        "http": {"disable_mcp": True, "cors": {"allow_origins": ["https://ui.example"]}}}))
    server = start_server(config=config)
    log = server.log()
    assert f'{config}: unknown key "colour" is ignored' in log
    assert f"{config}: python_version used by `langgraph build` only" in log
    ok = httpx.get(f"{server.url}/ok", headers={"Origin": "https://ui.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ui.example"
    client = get_sync_client(url=server.url)
    assert client.assistants.get("chain")["description"] == "adds one, ten times"
    server.stop()
    config.write_text(json.dumps({"graphs": {"chain": {"path": CHAIN, "description": "new"}}}))
    again = start_server(config=config)
    assistant = get_sync_client(url=again.url).assistants.get("chain")
    assert assistant["description"] == "new" and assistant["version"] == 2
    assert "unknown key" not in again.log()
    ok = httpx.get(f"{again.url}/ok", headers={"Origin": "https://ui.example"})
    assert "access-control-allow-origin" not in ok.headers  # no http.cors: no CORS headers


def test_store_ttl_reaches_the_graphs_of_serves_worker_processes(start_server: StartServer,
                                                                  tmp_path: Path) -> None:
    from treadle.store import open_store

    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({
        "graphs": {"chat": f"{SERVER_GRAPHS / 'graphs.py'}:chat"},
        "store": {"ttl": {"default_ttl": 7, "refresh_on_read": False}}}))
    server = start_server(command="serve", args=["--workers", "1"], config=config)
    client = get_sync_client(url=server.url)
    chat_input: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    client.runs.wait(None, "chat", input=chat_input,
                     config={"configurable": {"user": "ttl"}})  # its node puts without ttl
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        row = store.get_items([(("memories", "ttl"), "last")], refresh_ttl=False)[0]
    finally:
        store.close()
    assert row is not None and row.value == {"text": "hi"} and row.ttl_minutes == 7
