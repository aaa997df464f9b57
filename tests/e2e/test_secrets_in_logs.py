"""Secrets never reach a log line or a terminal: `treadle dev`'s console log and
`treadle run`'s output for a node failing with an API key in its local variables, in its
exception message and in its log line (from the environment, the run's config, a bearer
header and a URL password). Tracebacks are still shown, without local variables."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from processes import subprocess_env

LEAKY = Path(__file__).resolve().parent / "graphs" / "leaky.py"
ENV_KEY = "sk-envsecret0123456789abcdef"  # OPENAI_API_KEY: redacted as an environment secret
CONFIG_KEY = "cfg-only-in-the-config-2b7e"  # under "api_key" in the run's config
BEARER = "bearer-token-only-3c9f1a"  # after "Authorization: Bearer"
DB_PASSWORD = "db-pw-only-4d0e2b"  # in postgresql://app:...@host
SECRETS = (ENV_KEY, CONFIG_KEY, BEARER, DB_PASSWORD)
ENV = {"OPENAI_API_KEY": ENV_KEY, "LEAKY_BEARER": BEARER, "LEAKY_DB_PW": DB_PASSWORD,
       "TREADLE_RETRY_MAX_ATTEMPTS": "2", "TREADLE_RETRY_INITIAL_INTERVAL": "0.01"}


def _treadle(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treadle", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                          env=subprocess_env(TREADLE_STORE=f"sqlite:///{cwd}/t.db", **ENV))


def _assert_hidden(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} printed:\n{text}"


def test_dev_console_log_hides_secrets_and_locals(tmp_path: Path, start_server: Any) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"leaky": f"{LEAKY}:graph"}}))
    server = start_server("dev", config=config, env=ENV)
    thread_id = httpx.post(f"{server.url}/threads", json={}, timeout=30).json()["thread_id"]
    r = httpx.post(f"{server.url}/threads/{thread_id}/runs/wait", timeout=60, json={
        "assistant_id": "leaky", "input": {"question": "q"},
        "config": {"configurable": {"api_key": CONFIG_KEY}},
    })
    assert r.status_code == 200, r.text
    run_id = r.headers["Content-Location"].rsplit("/", 1)[-1]
    # What clients read of the failure (the run's result, its record, the thread's) too.
    assert "model refused key ***" in r.text
    _assert_hidden(r.text)
    # (The run's kwargs echo the config the client sent, as langgraph-api's do.)
    run = httpx.get(f"{server.url}/threads/{thread_id}/runs/{run_id}", timeout=30).json()
    assert run["status"] == "error" and "model refused key ***" in run["error"]
    _assert_hidden(run["error"])
    _assert_hidden(httpx.get(f"{server.url}/threads/{thread_id}", timeout=30).text)
    deadline = time.monotonic() + 30
    while " error [treadle.worker]" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    server.stop()
    log = server.log()
    _assert_hidden(log)
    # The failure is still there, readable: a plain traceback and the masked message.
    assert "Traceback (most recent call last)" in log
    assert "model call failed for key ***" in log
    assert "ConnectionError: model refused key *** with {'api_key': '***'}" in log
    assert "{'Authorization': '***'}" in log and "postgresql://app:***@db.internal" in log
    assert "Locals" not in log and "│" not in log  # no rich traceback panels, no locals
    # What the CLI shows of that run and its thread: the error and the metadata (which holds
    # the run's config) with their secrets hidden too.
    store = f"sqlite:///{tmp_path / 'server.db'}"
    shown = _treadle(tmp_path, "runs", "show", run_id, "--store", store, "--json")
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["status"] == "error" and "model refused key ***" in run["error"], run
    thread = _treadle(tmp_path, "threads", "show", thread_id, "--store", store, "--json")
    assert thread.returncode == 0, thread.stderr
    info = json.loads(thread.stdout)
    assert info["errors"] and info["status"] == "error", info
    for text in (shown.stdout, thread.stdout, _treadle(tmp_path, "runs", "list", "--store",
                                                      store).stdout):
        _assert_hidden(text)


def test_run_errors_and_debug_tracebacks_hide_secrets(tmp_path: Path) -> None:
    plain = _treadle(tmp_path, "run", f"{LEAKY}:graph", "--input", "{}")
    assert plain.returncode == 1
    _assert_hidden(plain.stdout + plain.stderr)
    assert "error: node 'call_model' failed: ConnectionError: model refused key ***" \
        in plain.stderr
    debug = _treadle(tmp_path, "run", f"{LEAKY}:graph", "--input", "{}", "--debug")
    assert debug.returncode == 1
    _assert_hidden(debug.stdout + debug.stderr)
    assert "Traceback (most recent call last)" in debug.stderr
