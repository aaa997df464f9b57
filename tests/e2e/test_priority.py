"""langgraph.json's ``priority`` with real processes: `treadle serve` (API only) and two
`treadle worker` processes of two slots each, on SQLite and PostgreSQL, driven by the
official langgraph-sdk.

Tenant "a" queues a burst of runs, far more than the workers carry; then tenant "b" queues
one run, and tenant "c" one run at priority -5. Each of those starts before all but a few
of the burst's runs: at most one per worker slot (claims already under way when it was
queued) starts between its creation and its start, and most of the burst is still pending
when both have finished. In plain FIFO order both would wait for the whole burst.
"""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from processes import StartServer, StartWorker
from treadle.store import open_store
from treadle.store.queue import RunRow, ThreadPriority

pytestmark = pytest.mark.timeout(600)

CONFIG = Path(__file__).parent / "priority_graphs" / "langgraph.json"
BURST = 1000
WORKERS, SLOTS = 2, 2


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


async def _queue(client: object, tenant: str, n: int, **metadata: object) -> list[str]:
    sem = asyncio.Semaphore(16)

    async def one(_: int) -> str:
        async with sem:
            run = await client.runs.create(  # type: ignore[attr-defined]
                str(uuid.uuid4()), "step", input={"delay": 0.05}, if_not_exists="create",
                metadata={"tenant": tenant, **metadata})
            return str(run["run_id"])

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def _overtaken_by(target: RunRow, others: list[RunRow]) -> int:
    """Runs of ``others`` that started after ``target`` was queued and before it started."""
    assert target.started_at is not None
    return sum(1 for r in others if r.started_at is not None
               and target.created_at <= r.started_at <= target.started_at)


async def test_a_burst_does_not_delay_another_tenant_nor_an_urgent_run(
        store_url: str, start_server: StartServer, start_worker: StartWorker) -> None:
    server = start_server("serve", store=store_url, args=["--workers", "0"], config=CONFIG)
    for _ in range(WORKERS):
        start_worker(store_url, args=["--config", str(CONFIG), "--concurrency", str(SLOTS)])
    client = get_client(url=server.url, api_key=None, timeout=120)
    try:
        burst = await _queue(client, "a", BURST)
        [other] = await _queue(client, "b", 1)
        [urgent] = await _queue(client, "c", 1, priority=-5)
        store = open_store(store_url)
        try:
            rows = {r: store.get_run(r) for r in (other, urgent)}
            for run_id in (other, urgent):
                row = rows[run_id]
                assert row is not None
                await client.runs.join(row.thread_id, run_id)
            done = {r: store.get_run(r) for r in (other, urgent)}
            a_runs = [store.get_run(r) for r in burst]
        finally:
            store.close()
    finally:
        await client.aclose()
    a_rows = [r for r in a_runs if r is not None]
    assert len(a_rows) == BURST
    for run_id in (other, urgent):
        row = done[run_id]
        assert row is not None and row.status == "success", row
        assert _overtaken_by(row, a_rows) <= WORKERS * SLOTS
    still_pending = sum(1 for r in a_rows if r.started_at is None
                        or r.started_at > max(d.ended_at or 0 for d in done.values() if d))
    assert still_pending >= BURST // 2


async def test_settings_are_decided_once_per_thread_and_a_bad_handler_is_a_500(
        start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("dev", config=CONFIG)
    client = get_client(url=server.url, api_key=None, timeout=60)
    try:
        thread = await client.threads.create(metadata={"kind": "first"})
        tid = thread["thread_id"]
        await client.runs.wait(tid, "step", input={}, metadata={"tenant": "t1", "priority": 2})
        await client.runs.wait(tid, "step", input={}, metadata={"tenant": "t2", "priority": -4})
        bad = str(uuid.uuid4())
        with pytest.raises(Exception) as refused:
            await client.runs.create(bad, "step", input={}, if_not_exists="create",
                                     metadata={"bad": True})
        runs_of_bad = await client.runs.list(bad) if await _exists(client, bad) else []
    finally:
        await client.aclose()
    response = getattr(refused.value, "response", None)
    assert response is not None and response.status_code == 500
    assert "priority 9 is not an integer from -5 to 5" in response.text
    assert runs_of_bad == []
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        assert store.thread_priority(tid) == ThreadPriority(2, "t1")  # the first run's
        assert store.thread_priority(bad) is None  # nothing stored for a refused handler
    finally:
        store.close()
    assert "the priority handler returned priority 9" in server.log()


async def _exists(client: object, thread_id: str) -> bool:
    try:
        await client.threads.get(thread_id)  # type: ignore[attr-defined]
    except Exception:
        return False
    return True


def _readme_example() -> tuple[str, str]:
    """README's "Priority and fair queuing" example: the handler, and the client's code."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("**Priority and fair queuing.**"):]
    first = section[section.index("```python\n") + 10:]
    handler, rest = first[:first.index("```")], first[first.index("```") + 3:]
    client = rest[rest.index("```python\n") + 10:]
    return handler, client[:client.index("```")]


async def test_the_readme_example(start_server: StartServer, tmp_path: Path) -> None:
    handler, code = _readme_example()
    (tmp_path / "priority.py").write_text(handler)
    (tmp_path / "step.py").write_text((CONFIG.parent / "step.py").read_text())
    config = tmp_path / "langgraph.json"
    config.write_text('{"graphs": {"agent": "./step.py:graph"}, '
                      '"priority": {"path": "./priority.py:priority"}}')
    db = tmp_path / "readme.db"
    server = start_server("dev", store=f"sqlite:///{db}", config=config,
                          env={"TREADLE_WORKER_CONCURRENCY": "1"})  # one slot: a real queue
    client = get_client(url=server.url, api_key=None, timeout=120)
    scope: dict[str, object] = {"client": client, "job": lambda n: {"delay": 0.2}}
    exec("async def example():\n" + textwrap.indent(code, "    "), scope)  # noqa: S102
    try:
        await scope["example"]()  # type: ignore[operator]
    finally:
        await client.aclose()
    store = open_store(f"sqlite:///{db}")
    try:
        waiting = store.queue_stats().pending
    finally:
        store.close()
    # globex's run is done while most of acme's burst still waits (first in, first out, it
    # would have waited for all 300: a minute at 0.2 s each on one slot).
    assert waiting >= 100, waiting


async def test_a_crons_tick_tells_the_handler_its_cron(start_server: StartServer,
                                                       tmp_path: Path) -> None:
    db = tmp_path / "cron.db"
    server = start_server("dev", store=f"sqlite:///{db}", config=CONFIG,
                          env={"TREADLE_CRON_INTERVAL": "0.2"})
    client = get_client(url=server.url, api_key=None, timeout=60)
    try:
        thread = await client.threads.create()
        tid = thread["thread_id"]
        cron = await client.crons.create_for_thread(tid, "step", schedule="0 0 1 1 *",
                                                    input={})
        cron_id = str(cron["cron_id"])  # type: ignore[typeddict-item]
        store = open_store(f"sqlite:///{db}")
        try:  # make the yearly tick due now, as the scheduler's clock would
            found = store.get_cron(cron_id)
            assert found is not None and found.next_run_at is not None
            assert store.advance_cron(cron_id, found.next_run_at, store.now() - 1)
            for _ in range(300):
                if store.list_runs(thread_id=tid):
                    break
                await asyncio.sleep(0.1)
            [run] = store.list_runs(thread_id=tid)
            await client.runs.join(tid, run.run_id)
            assert store.thread_priority(tid) == ThreadPriority(3, f"cron:{cron_id}")
        finally:
            store.close()
    finally:
        await client.aclose()
