"""Two API replicas and a worker on one PostgreSQL: a run created through one replica
is streamed, joined and cancelled through the other; double-texting and crons hold
across replicas (a due cron fires once, not once per replica)."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError
from langgraph_sdk.schema import Cron

from processes import SERVER_GRAPHS, ServerProcess, StartServer, StartWorker, WorkerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


@pytest.fixture
def cluster(pg_url: str, start_server: StartServer,
            start_worker: StartWorker) -> tuple[ServerProcess, ServerProcess, WorkerProcess]:
    config = str(SERVER_GRAPHS / "langgraph.json")
    a = start_server("serve", store=pg_url, args=["--workers", "0"])
    b = start_server("serve", store=pg_url, args=["--workers", "0"])
    worker = start_worker(pg_url, args=["--config", config])
    return a, b, worker


async def test_run_on_one_replica_streamed_joined_cancelled_on_the_other(
        cluster: tuple[ServerProcess, ServerProcess, WorkerProcess]) -> None:
    a, b, _worker = cluster
    ca, cb = get_client(url=a.url), get_client(url=b.url)
    t = await ca.threads.create()
    assert (await cb.threads.get(t["thread_id"]))["thread_id"] == t["thread_id"]
    run = await ca.runs.create(t["thread_id"], "slow", input={"n": 0, "delay": 0.3},
                               stream_mode=["updates"])
    parts = [p async for p in cb.runs.join_stream(t["thread_id"], run["run_id"],
                                                  stream_mode="updates", last_event_id="0")]
    assert [list(p.data) for p in parts if p.event == "updates"] == [["a"], ["b"], ["c"]]
    assert await cb.runs.join(t["thread_id"], run["run_id"]) == {"n": 3, "delay": 0.3}
    assert (await ca.runs.get(t["thread_id"], run["run_id"]))["status"] == "success"

    # double texting is enforced by the store, whichever replica gets the second request
    long = await ca.runs.create(t["thread_id"], "slow", input={"n": 0, "delay": 2.0})
    with pytest.raises(ConflictError):
        await cb.runs.create(t["thread_id"], "slow", input={"n": 0}, multitask_strategy="reject")
    # cancelled through the other replica
    await asyncio.sleep(0.5)
    await cb.runs.cancel(t["thread_id"], long["run_id"], wait=True)
    assert (await ca.runs.get(t["thread_id"], long["run_id"]))["status"] == "interrupted"
    assert (await ca.threads.get(t["thread_id"]))["status"] == "idle"


async def test_a_due_cron_fires_once_across_replicas(
        cluster: tuple[ServerProcess, ServerProcess, WorkerProcess], pg_url: str) -> None:
    from treadle.store import open_store

    a, b, _worker = cluster
    ca = get_client(url=a.url)
    t = await ca.threads.create()
    # Yearly: its own next tick never falls inside this test (a minutely one could, and
    # then legitimately fire a second run).
    # The SDK annotates create_for_thread as returning a Run; the API answers with the cron.
    cron = cast(Cron, await ca.crons.create_for_thread(t["thread_id"], "chain",
                                                       schedule="0 0 1 1 *", input={"n": 0}))
    store = open_store(pg_url)
    try:
        # Make the cron due now on both replicas at once.
        store.patch_cron(cron["cron_id"], next_run_at=store.now() - 1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            runs = await ca.runs.list(t["thread_id"])
            if runs and all(r["status"] == "success" for r in runs):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)  # both replicas have checked for due crons again since
        runs = await ca.runs.list(t["thread_id"])
        assert len(runs) == 1, f"the tick fired {len(runs)} runs"
        after = store.get_cron(cron["cron_id"])
        assert after is not None and after.next_run_at is not None
        assert after.next_run_at > store.now()
    finally:
        store.close()
