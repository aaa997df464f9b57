"""The encryption context through a real ``treadle dev`` and the official client: a user
``Encryption`` keys each tenant's data from ``ctx.metadata["tenant"]``, which its
``@encryption.context`` handler derives from the authenticated user (a custom Auth). Two
users' threads, runs, checkpoints, stream events and store items decrypt back through the
API; the handlers saw each user's context when the API wrote and when the worker wrote,
and again when they decrypted; the header's extra keys reach them but cannot change the
tenant; the raw SQLite file holds the contexts (metadata) and no secret."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from langgraph_sdk import get_client
from psycopg import sql

from processes import StartServer

GRAPHS = Path(__file__).parent / "tenant_graphs"


async def _session(url: str, token: str, secret: str, header: dict[str, Any]) -> None:
    extra = {"X-Encryption-Context": base64.b64encode(json.dumps(header).encode()).decode()}
    client = get_client(url=url, headers={"Authorization": f"Bearer {token}", **extra})
    thread = await client.threads.create(metadata={"plain": "visible"})
    tid = thread["thread_id"]
    events = [p.data async for p in client.runs.stream(
        tid, "tenant", input={"secret": secret}, stream_mode=["custom"])
        if p.event == "custom"]
    assert {"leak": secret} in events
    await client.store.put_item(["notes"], "k", {"v": secret})
    # read back, in a later request, through every path
    reader = get_client(url=url, headers={"Authorization": f"Bearer {token}"})
    state = await reader.threads.get_state(tid)
    assert state["values"] == {"secret": secret, "echo": secret}  # the checkpoint
    got = await reader.threads.get(tid)
    assert got["values"] == {"secret": secret, "echo": secret}  # the thread record's cache
    runs = await reader.runs.list(tid)
    run: dict[str, Any] = dict(runs[0])
    assert run["kwargs"]["input"] == {"secret": secret}  # the run's payload
    replay = [p.data async for p in reader.runs.join_stream(tid, runs[0]["run_id"],
                                                            stream_mode=["custom"])]
    assert secret in str(replay)  # stream events
    item = await reader.store.get_item(["notes"], "k")
    assert item is not None and item["value"] == {"v": secret}


SECRETS = {"acme": "S3CRET-acme-", "zeta": "S3CRET-zeta-"}


def _sessions(url: str) -> dict[str, str]:
    secrets = {t: prefix + uuid.uuid4().hex for t, prefix in SECRETS.items()}
    asyncio.run(_session(url, "alice-token", secrets["acme"], {"region": "eu"}))
    asyncio.run(_session(url, "bob-token", secrets["zeta"],
                         {"region": "us", "tenant": "acme"}))  # the handler overrides tenant
    return secrets


def _check_calls(log: Path) -> None:
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    by = {(c["op"], c["model"], json.dumps(c["metadata"], sort_keys=True)) for c in calls}
    for tenant, region in (("acme", "eu"), ("zeta", "us")):
        md = json.dumps({"region": region, "tenant": tenant}, sort_keys=True)
        for op in ("encrypt", "decrypt"):
            for model in ("run", "checkpoint", "thread", "store"):
                assert (op, model, md) in by, f"no {op} of a {model} with {tenant}'s context"
    # every user value (what a run, its worker or the API wrote) used a tenant's context
    for c in calls:
        if c["model"] in ("checkpoint", "store", "task") or \
                (c["model"] == "run" and c["field"] in ("kwargs", "result", "event")):
            assert c["metadata"].get("tenant") in ("acme", "zeta"), c


def _context_text(tenant: str, region: str) -> str:
    return json.dumps({"region": region, "tenant": tenant}, separators=(",", ":"))


def test_each_tenant_is_encrypted_and_decrypted_with_its_own_context(
        start_server: StartServer, tmp_path: Path) -> None:
    db = tmp_path / "tenants.db"
    log = tmp_path / "calls.jsonl"
    log.touch()
    server = start_server("dev", store=f"sqlite:///{db}", config=GRAPHS / "langgraph.json",
                          env={"TENANT_CIPHER_CALLS": str(log)})
    secrets = _sessions(server.url)
    _check_calls(log)
    bad = httpx.post(f"{server.url}/threads", json={}, headers={
        "Authorization": "Bearer alice-token", "X-Encryption-Context": "[1, 2]"})
    assert bad.status_code == 400 and "X-Encryption-Context" in bad.json()["detail"]
    server.stop()
    raw = b"".join(f.read_bytes() for f in db.parent.glob(db.name + "*") if f.is_file())
    for secret in secrets.values():
        assert secret.encode() not in raw
    for tenant, region in (("acme", "eu"), ("zeta", "us")):  # the contexts are stored as is
        assert _context_text(tenant, region).encode() in raw


def test_a_separate_worker_process_uses_the_runs_context(start_server: StartServer,
                                                         pg_url: str, tmp_path: Path) -> None:
    """`treadle serve` on PostgreSQL: its `treadle worker` process writes the checkpoints,
    events and results with the context the API recorded in the run."""
    log = tmp_path / "calls.jsonl"
    log.touch()
    server = start_server("serve", store=pg_url, config=GRAPHS / "langgraph.json",
                          env={"TENANT_CIPHER_CALLS": str(log)})
    secrets = _sessions(server.url)
    _check_calls(log)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")]
        text = "\n".join(row[0] for table in tables for row in conn.execute(
            sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))))
    assert "treadle_checkpoints" in tables
    for secret in secrets.values():
        assert secret not in text and secret.encode().hex() not in text
    for tenant, region in (("acme", "eu"), ("zeta", "us")):  # bytea columns print as hex
        assert _context_text(tenant, region).encode().hex() in text
