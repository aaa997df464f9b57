"""Thread TTLs end to end, through langgraph-sdk against real servers: langgraph.json's
``checkpointer.ttl`` default and ``threads.create(ttl=...)`` / ``threads.update(ttl=...)``,
both strategies, a thread with a run in flight left alone, the per-thread storage figure
against the rows in the database, and two PostgreSQL replicas sweeping without doubling.

Real time passes (TTLs of a fraction of a second, sweeps every 0.2-0.3 s through
TREADLE_TTL_SWEEP_INTERVAL); every wait polls for the outcome with a generous deadline.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError
from prometheus_client.parser import text_string_to_metric_families

from processes import SERVER_GRAPHS, ServerProcess, StartServer

pytestmark = pytest.mark.timeout(180)

SHORT = 0.005  # minutes: 0.3 s
DEADLINE = 40.0


async def poll(what: str, check: Callable[[], Awaitable[Any]]) -> Any:
    end = time.monotonic() + DEADLINE
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def gone(client: Any, thread_id: str) -> bool:
    try:
        await client.threads.get(thread_id)
    except NotFoundError:
        return True
    return False


def config_with(tmp_path: Path, **extra: Any) -> Path:
    """tests/server_graphs' langgraph.json (absolute paths) with ``extra`` keys."""
    doc = json.loads((SERVER_GRAPHS / "langgraph.json").read_text())
    doc["dependencies"] = [str(SERVER_GRAPHS)]
    doc["graphs"] = {name: str(SERVER_GRAPHS / ref.removeprefix("./"))
                     for name, ref in doc["graphs"].items()}
    doc.update(extra)
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(doc))
    return path


def swept(server: ServerProcess, strategy: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "treadle_threads_swept":
            return sum(s.value for s in family.samples
                       if s.name.endswith("_total") and s.labels.get("strategy") == strategy)
    return 0.0


async def test_ttls_through_the_sdk_on_treadle_dev(start_server: StartServer,
                                                   tmp_path: Path) -> None:
    db = tmp_path / "ttl.db"
    config = config_with(tmp_path, checkpointer={"ttl": {
        "strategy": "delete", "default_ttl": SHORT, "sweep_interval_minutes": 60}})
    server = start_server("dev", store=f"sqlite:///{db}", config=config,
                          env={"TREADLE_TTL_SWEEP_INTERVAL": "0.3"})
    client = get_client(url=server.url)

    # langgraph.json's default_ttl: a thread made by its run, deleted once it is idle
    by_run = str(uuid.uuid4())
    assert await client.runs.wait(by_run, "chain", input={"n": 0}, if_not_exists="create")
    await poll("the run's thread to be deleted", lambda: gone(client, by_run))

    async def rows_gone() -> bool:  # the record goes first, then the rest, as on DELETE
        left = 0
        with sqlite3.connect(db) as conn:
            for table in ("checkpoints", "blobs", "writes", "runs"):
                left += int(conn.execute(f"SELECT count(*) FROM treadle_{table} "
                                         "WHERE thread_id = ?", (by_run,)).fetchone()[0])
        return left == 0  # (a run's tasks and events go in its deletion's transaction)

    await poll("its checkpoints, runs and events to be deleted", rows_gone)

    # keep_latest, given on create: pruned to its latest checkpoint, state kept
    kept = (await client.threads.create(ttl={"ttl": 60, "strategy": "keep_latest"}))["thread_id"]
    assert cast(dict[str, Any], await client.runs.wait(kept, "chain", input={"n": 0}))["n"] == 10
    before = len(await client.threads.get_history(kept, limit=100))
    assert before > 2
    with_ttl = await client.threads.get(kept, include=["ttl"])
    assert with_ttl["ttl"]["strategy"] == "keep_latest"  # type: ignore[typeddict-item]
    await client.threads.update(kept, metadata={}, ttl={"ttl": SHORT, "strategy": "keep_latest"})

    async def pruned() -> bool:
        return len(await client.threads.get_history(kept, limit=100)) == 1

    await poll("the keep_latest thread to be pruned", pruned)
    assert cast(dict[str, Any], (await client.threads.get_state(kept))["values"])["n"] == 10

    # the storage figure counts the rows the database holds for the thread
    figure = httpx.get(f"{server.url}/threads/{kept}/storage", timeout=10).json()
    with sqlite3.connect(db) as conn:
        rows = {table: conn.execute(f"SELECT count(*) FROM treadle_{table} WHERE thread_id = ?",
                                    (kept,)).fetchone()[0]
                for table in ("checkpoints", "blobs", "writes", "runs")}
        blob_bytes = conn.execute("SELECT coalesce(sum(length(blob)), 0) FROM treadle_blobs "
                                  "WHERE thread_id = ?", (kept,)).fetchone()[0]
    assert figure["checkpoints"] == rows["checkpoints"] == 1
    assert {t: figure["tables"][t]["rows"] for t in rows} == rows
    assert figure["tables"]["blobs"]["bytes"] >= blob_bytes
    assert figure["bytes"] == sum(t["bytes"] for t in figure["tables"].values())

    # delete, set by an update; a thread with a run in flight is left alone meanwhile
    busy = (await client.threads.create(ttl=60))["thread_id"]
    run = await client.runs.create(busy, "slow", input={"n": 0, "delay": 1.0})

    async def running() -> bool:
        return (await client.runs.get(busy, run["run_id"]))["status"] == "running"

    await poll("the slow run to start", running)
    await client.threads.update(busy, metadata={}, ttl={"ttl": SHORT})
    await asyncio.sleep(1.5)  # its TTL passed several sweeps ago
    assert not await gone(client, busy)
    assert (await client.runs.join(busy, run["run_id"]))["n"] == 3  # undisturbed
    await poll("the thread to be deleted once its run ended", lambda: gone(client, busy))

    # a thread with its own long TTL is still there
    assert not await gone(client, kept)


@pytest.mark.postgres
async def test_two_replicas_sweep_each_thread_once(pg_url: str, start_server: StartServer
                                                   ) -> None:
    env = {"TREADLE_TTL_SWEEP_INTERVAL": "0.2"}
    a = start_server("serve", store=pg_url, args=["--workers", "0"], env=env)
    b = start_server("serve", store=pg_url, args=["--workers", "0"], env=env)
    ca, cb = get_client(url=a.url), get_client(url=b.url)
    # No worker: this thread's run stays pending, so the thread is never swept.
    pending = (await ca.threads.create(ttl=60))["thread_id"]
    await ca.runs.create(pending, "chain", input={"n": 0})
    await ca.threads.update(pending, metadata={}, ttl={"ttl": SHORT})
    ids = [(await (ca if i % 2 else cb).threads.create(ttl={"ttl": SHORT}))["thread_id"]
           for i in range(30)]

    async def all_gone() -> bool:
        return all([await gone(ca, t) for t in ids])

    await poll("the 30 threads to be deleted", all_gone)
    assert swept(a, "delete") + swept(b, "delete") == 30  # each thread once, by one replica
    await asyncio.sleep(1.0)
    assert not await gone(cb, pending)
    assert [r["status"] for r in await cb.runs.list(pending)] == ["pending"]
