"""A run create retried after the API process that took it was kill -9'ed.

Two `treadle serve` replicas share one PostgreSQL store. The client sends a create with an
``Idempotency-Key`` to the first (through the SDK); once the run is committed, that process is kill -9'ed
(the client never reads its answer) and the client retries, through the SDK, on the
surviving replica: it gets the same run, and the thread has one run, executed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from processes import StartServer

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.timeout(180)]


async def _send_and_forget(url: str, *args: Any, **kwargs: Any) -> None:
    try:
        await get_client(url=url).runs.create(*args, **kwargs)
    except httpx.HTTPError:
        pass  # the process died under the request: the client saw no answer


async def test_a_create_retried_after_the_api_was_killed_returns_the_first_run(
        pg_url: str, start_server: StartServer) -> None:
    doomed = start_server("serve", store=pg_url, args=["--workers", "0"])
    api = start_server("serve", store=pg_url, args=["--workers", "1"])
    client = get_client(url=api.url)
    t = (await client.threads.create())["thread_id"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    payload = {"n": 0, "delay": 0.1}
    sent = asyncio.create_task(
        _send_and_forget(doomed.url, t, "slow", input=payload, headers=key))
    runs: list[dict[str, Any]] = []
    for _ in range(600):  # until the create is committed (seen by the other replica)
        runs = await client.runs.list(t)
        if runs:
            break
        await asyncio.sleep(0.05)
    assert len(runs) == 1, "the first create was never committed"
    doomed.proc.kill()  # kill -9
    doomed.proc.wait(10)
    sent.cancel()  # whatever the dead process answered (or not), the client did not hear it
    with contextlib.suppress(asyncio.CancelledError):
        await sent

    retry = await client.runs.create(t, "slow", input=payload, headers=key)
    assert retry["run_id"] == runs[0]["run_id"]
    assert await client.runs.join(t, retry["run_id"]) == {"n": 3, "delay": 0.1}
    assert [r["run_id"] for r in await client.runs.list(t)] == [retry["run_id"]]
    assert (await client.threads.get_state(t))["values"] == {"n": 3, "delay": 0.1}
