"""The HTTP API under faults: the worker executing a streamed run is kill -9'ed; another
worker resumes the run from its last checkpoint and the client's stream, through the
SDK, goes on to the end without an error and with the right final values."""

from __future__ import annotations

import signal

import pytest
from langgraph_sdk import get_client

from processes import SERVER_GRAPHS, StartServer, StartWorker

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.timeout(180)]


async def test_worker_killed_mid_stream_the_run_resumes_and_the_stream_completes(
        pg_url: str, start_server: StartServer, start_worker: StartWorker) -> None:
    config = str(SERVER_GRAPHS / "langgraph.json")
    args = ["--config", config, "--lease-ttl", "2", "--poll-interval", "0.2"]
    api = start_server("serve", store=pg_url, args=["--workers", "0"])
    first = start_worker(pg_url, args=args)
    client = get_client(url=api.url)
    thread = await client.threads.create()
    parts = []
    killed = False
    async for part in client.runs.stream(thread["thread_id"], "slow",
                                         input={"n": 0, "delay": 1.0},
                                         stream_mode=["updates", "values"]):
        parts.append(part)
        if part.event == "updates" and not killed:
            first.signal(signal.SIGKILL)  # mid-run: step "b" is executing
            killed = True
            start_worker(pg_url, args=args)
    assert killed
    assert all(p.event != "error" for p in parts), [p for p in parts if p.event == "error"]
    values = [p.data for p in parts if p.event == "values"]
    assert values[-1] == {"n": 3, "delay": 1.0}
    steps = [next(iter(p.data)) for p in parts if p.event == "updates"]
    # Every step was streamed; the one in flight at the kill ran again (and may be seen
    # twice), the one committed before it never ran again.
    assert steps[0] == "a" and steps.count("a") == 1
    assert set(steps) == {"a", "b", "c"} and len(steps) <= 4
    history = await client.threads.get_history(thread["thread_id"], limit=100)
    committed = sorted(h["metadata"]["step"] for h in history)
    assert committed == [-1, 0, 1, 2, 3]  # each step committed exactly once
    run = (await client.runs.list(thread["thread_id"]))[0]
    assert run["status"] == "success"
