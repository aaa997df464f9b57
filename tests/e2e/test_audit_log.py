"""Audit completeness, end to end: a scripted session through the official langgraph-sdk
against a real `treadle dev`; every mutating call appears exactly once with its action,
resource, id and outcome, run lifecycle events appear, reads do not; the chain verifies
through the API and `treadle audit verify`; the records went out as JSON log lines; then a
row edited in the SQLite file (its trigger dropped first) is reported by the CLI."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.schema import Cron

from processes import SERVER_GRAPHS, StartServer, StartWorker, subprocess_env

pytestmark = pytest.mark.timeout(180)

RUN_EVENTS = ("runs.started", "runs.succeeded", "runs.failed", "runs.interrupted",
              "runs.cancelled", "runs.timed_out")


def _treadle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treadle", *args], env=subprocess_env(),
                          text=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


async def _session(url: str) -> list[tuple[str, str | None, str | None, str]]:
    """The scripted session; the records it must leave (action, resource, id, outcome)."""
    client = get_client(url=url)
    expect: list[tuple[str, str | None, str | None, str]] = []
    assistant = await client.assistants.create("chain", name="audited")
    aid = assistant["assistant_id"]
    expect.append(("assistants.create", "assistants", aid, "200"))
    await client.assistants.search(graph_id="chain")  # reads: not recorded
    await client.assistants.count()
    thread = await client.threads.create(metadata={"k": "v"})
    tid = thread["thread_id"]
    expect.append(("threads.create", "threads", tid, "200"))
    await client.threads.update(tid, metadata={"k": "w"})
    expect.append(("threads.update", "threads", tid, "200"))
    await client.threads.search(metadata={"k": "w"})
    await client.threads.get(tid)
    out = await client.runs.wait(tid, aid, input={"n": 0})
    assert isinstance(out, dict) and out["n"] == 10
    (done,) = await client.runs.list(tid)  # a GET: not recorded
    expect.append(("runs.create", "runs", done["run_id"], "200"))
    streamed = None
    async for part in client.runs.stream(tid, aid, input={"n": 0}):
        if part.event == "metadata":
            streamed = part.data["run_id"]
    assert isinstance(streamed, str)
    expect.append(("runs.create", "runs", streamed, "200"))
    await client.threads.get_history(tid)  # a POST that reads
    await client.threads.update_state(tid, {"n": 100})
    expect.append(("threads.update_state", "threads", tid, "200"))
    slow_thread = await client.threads.create()
    sid = slow_thread["thread_id"]
    expect.append(("threads.create", "threads", sid, "200"))
    slow = await client.runs.create(sid, "slow", input={"delay": 3})
    expect.append(("runs.create", "runs", slow["run_id"], "200"))
    for _ in range(200):  # cancel it while it runs, so it starts and is interrupted
        if (await client.runs.get(sid, slow["run_id"]))["status"] == "running":
            break
        await asyncio.sleep(0.05)
    await client.runs.cancel(sid, slow["run_id"])
    expect.append(("runs.cancel", "runs", slow["run_id"], "202"))
    await client.runs.join(sid, slow["run_id"])
    await client.store.put_item(["audit", "ns"], "k1", {"v": "swordfish"})
    expect.append(("store.put", "store", "audit.ns/k1", "204"))
    await client.store.search_items(["audit"])
    await client.store.delete_item(["audit", "ns"], "k1")
    expect.append(("store.delete", "store", "audit.ns/k1", "204"))
    cron = cast(Cron, await client.crons.create_for_thread(tid, "chain", schedule="0 0 1 1 *",
                                                           input={"n": 0}))
    expect.append(("crons.create", "crons", cron["cron_id"], "200"))
    await client.crons.search(thread_id=tid)
    await client.crons.delete(cron["cron_id"])
    expect.append(("crons.delete", "crons", cron["cron_id"], "204"))
    await client.threads.delete(tid)
    expect.append(("threads.delete", "threads", tid, "204"))
    return expect


def test_a_session_is_audited_and_tampering_is_found(start_server: StartServer,
                                                     tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    store = f"sqlite:///{db}"
    server = start_server("dev", store=store, args=["--log-format", "json"])
    expect = asyncio.run(_session(server.url))
    http = httpx.Client(base_url=server.url, timeout=30)
    records: list[dict[str, Any]] = http.get("/audit", params={"limit": 1000}).json()["records"]
    calls = [r for r in records if r["action"] not in RUN_EVENTS]
    got = [(r["action"], r["resource"], r["resource_id"], r["outcome"]) for r in calls]
    # A cancel answers 202 or 204 depending on how far the run got: either is its outcome.
    assert [g[:3] for g in got] == [e[:3] for e in expect]
    for g, e in zip(got, expect, strict=True):
        assert g[3] == e[3] or (g[0] == "runs.cancel" and g[3] in ("202", "204")), (g, e)
    assert {r["actor"] for r in records} == {"anonymous"}
    assert all(r["request_id"] for r in calls)
    assert len({r["request_id"] for r in calls}) == len(calls)
    assert "swordfish" not in json.dumps(records)

    created = [e[2] for e in expect if e[0] == "runs.create"]
    done_id, streamed_id, slow_id = created
    runs = [(r["action"], r["resource_id"], r["outcome"]) for r in records
            if r["action"] in RUN_EVENTS]
    assert ("runs.started", done_id, "running") in runs
    assert ("runs.succeeded", done_id, "success") in runs
    assert ("runs.succeeded", streamed_id, "success") in runs
    assert ("runs.started", slow_id, "running") in runs
    assert ("runs.interrupted", slow_id, "interrupted") in runs
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(1, len(records) + 1))

    verdict = http.get("/audit/verify").json()
    assert verdict["ok"] is True and verdict["records"] == len(records)
    ok = _treadle("audit", "verify", "--store", store)
    assert ok.returncode == 0, ok
    assert f"{len(records)} records, head {verdict['head_seq']}:{verdict['head_hash']}" \
        in ok.stdout, ok.stdout
    anchored = _treadle("audit", "verify", "--store", store, "--head",
                        f"{verdict['head_seq']}:{verdict['head_hash']}")
    assert anchored.returncode == 0, anchored
    wrong = _treadle("audit", "verify", "--store", store, "--head", f"2:{'0' * 64}")
    assert wrong.returncode == 1 and "BROKEN at seq 2" in wrong.stdout, wrong
    listed = _treadle("audit", "list", "--store", store, "--json", "--limit", "3")
    assert listed.returncode == 0, listed
    assert [json.loads(line)["seq"] for line in listed.stdout.splitlines()] == seqs[-3:]
    http.close()
    server.stop()  # a clean shutdown: every queued record is stored first

    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    logged = [line["audit"] for line in lines if line.get("logger") == "treadle.audit"]
    assert [a["seq"] for a in logged] == seqs
    assert [a["hash"] for a in logged] == [r["hash"] for r in records]

    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER treadle_audit_no_update")
    conn.execute("UPDATE treadle_audit SET actor = 'mallory' WHERE seq = 3")
    conn.commit()
    conn.close()
    broken = _treadle("audit", "verify", "--store", store)
    assert broken.returncode == 1, broken
    assert "BROKEN at seq 3" in broken.stdout, broken.stdout
    as_json = json.loads(_treadle("audit", "verify", "--store", store, "--json").stdout)
    assert (as_json["ok"], as_json["broken_seq"], as_json["records"]) == (False, 3, 2)


@pytest.mark.postgres
def test_two_replicas_and_a_worker_keep_one_chain_on_postgres(
        pg_url: str, start_server: StartServer, start_worker: StartWorker) -> None:
    """Calls on two API replicas and run events of a separate `treadle worker` land in one
    chain; the worker's records name it."""
    a = start_server("serve", store=pg_url, args=["--workers", "0"])
    b = start_server("serve", store=pg_url, args=["--workers", "0"])
    worker = start_worker(pg_url, args=["--config", str(SERVER_GRAPHS / "langgraph.json")])

    async def session() -> list[str]:
        ca, cb = get_client(url=a.url), get_client(url=b.url)
        threads = await asyncio.gather(*[(ca if i % 2 else cb).threads.create()
                                         for i in range(10)])
        runs = await asyncio.gather(*[(cb if i % 2 else ca).runs.wait(
            t["thread_id"], "chain", input={"n": 0}) for i, t in enumerate(threads)])
        assert all(isinstance(r, dict) and r["n"] == 10 for r in runs)
        return [t["thread_id"] for t in threads]

    thread_ids = asyncio.run(session())
    worker.stop(timeout=15)  # a clean shutdown stores the worker's queued records
    a.stop()
    b.stop()
    from treadle.store import open_store

    store = open_store(pg_url, auto_migrate=False)
    try:
        records = store.list_audit(limit=1000)
        verdict = store.verify_audit()
    finally:
        store.close()
    assert verdict.ok and verdict.records == len(records)
    created = sorted(r.resource_id or "" for r in records if r.action == "threads.create")
    assert created == sorted(thread_ids)
    assert len([r for r in records if r.action == "runs.create"]) == 10
    succeeded = [r for r in records if r.action == "runs.succeeded"]
    assert len(succeeded) == 10
    assert all(json.loads(r.detail)["worker"] for r in succeeded)
    ok = _treadle("audit", "verify", "--store", pg_url)
    assert ok.returncode == 0 and f"{len(records)} records" in ok.stdout, ok
