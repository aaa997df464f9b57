"""``run_timeout`` over the HTTP API, through the official langgraph-sdk.

A run given ``run_timeout`` (in its config, or as a body field) ends with status
``timeout`` when it runs longer, even while its node is blocked in a sync call (the
node's thread is abandoned), and its worker slot takes the next run. A run without one
gets the worker's default (``TREADLE_RUN_TIMEOUT`` / ``--run-timeout``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from processes import SERVER_GRAPHS, ServerProcess, StartServer, StartWorker

pytestmark = pytest.mark.timeout(120)

# The "slow" graph sleeps this long in a blocking time.sleep per step: for ever, here.
FOREVER = 3600.0


async def _ends(client: Any, thread_id: str, run_id: str) -> dict[str, Any]:
    await asyncio.wait_for(client.runs.join(thread_id, run_id), 60)
    run: dict[str, Any] = await client.runs.get(thread_id, run_id)
    return run


async def _next_run_finishes(client: Any) -> None:
    """A quick run on another thread completes: the only worker slot is free again."""
    t = await client.threads.create()
    # Its own run_timeout (longer than any default here) wins over the worker's default.
    out = await asyncio.wait_for(client.runs.wait(
        t["thread_id"], "chain", input={"n": 0}, config={"run_timeout": 600}), 60)
    assert out == {"n": 10}


async def test_run_timeout_ends_blocked_runs_and_frees_the_slot(start_server: StartServer) -> None:
    """Given in the config (through the SDK) or as a body field; one worker slot."""
    server = start_server("dev", args=["--concurrency", "1"])
    client = get_client(url=server.url)
    t = await client.threads.create()
    run = await client.runs.create(t["thread_id"], "slow", input={"n": 0, "delay": FOREVER},
                                   config={"configurable": {"run_timeout": 1}})
    done = await _ends(client, t["thread_id"], run["run_id"])
    assert done["status"] == "timeout"
    assert (await client.threads.get(t["thread_id"]))["status"] == "idle"

    body = {"assistant_id": "slow", "input": {"n": 0, "delay": FOREVER}, "run_timeout": 1.5}
    r = httpx.post(f"{server.url}/threads/{t['thread_id']}/runs", json=body, timeout=10)
    assert r.status_code == 200, r.text
    done = await _ends(client, t["thread_id"], r.json()["run_id"])
    assert done["status"] == "timeout"
    out = await client.runs.join(t["thread_id"], r.json()["run_id"])
    assert out["__error__"] == {"error": "timeout", "message": "run exceeded its timeout of 1.5s"}
    await _next_run_finishes(client)  # both blocked node threads were abandoned


@pytest.mark.parametrize("bad", [0, -1, "soon", True])
def test_a_bad_run_timeout_is_a_422_and_writes_nothing(dev_server: ServerProcess, bad: object) -> None:
    def threads() -> int:
        return int(httpx.post(f"{dev_server.url}/threads/count", json={}, timeout=10).json())

    before = threads()
    body = {"assistant_id": "chain", "input": {"n": 0}, "config": {"run_timeout": bad}}
    r = httpx.post(f"{dev_server.url}/runs", json=body, timeout=10)
    assert r.status_code == 422 and "run_timeout" in r.text
    assert threads() == before  # no stateless thread was made for it


async def test_default_run_timeout_of_a_worker(start_server: StartServer, start_worker: StartWorker, tmp_path: Path) -> None:
    """`treadle worker --run-timeout`: a run that never ends and sets no limit of its own
    is stopped at the worker's default, and the worker's only slot is freed."""
    store = f"sqlite:///{tmp_path / 'api.db'}"
    server = start_server("serve", store=store, args=["--no-workers"])
    start_worker(store, args=["--config", str(SERVER_GRAPHS / "langgraph.json"),
                              "--concurrency", "1", "--run-timeout", "1"])
    client = get_client(url=server.url)
    t = await client.threads.create()
    run = await client.runs.create(t["thread_id"], "slow", input={"n": 0, "delay": FOREVER})
    done = await _ends(client, t["thread_id"], run["run_id"])
    assert done["status"] == "timeout"
    await _next_run_finishes(client)
