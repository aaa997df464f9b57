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

from langgraph_sdk import get_client

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


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_each_tenant_is_encrypted_and_decrypted_with_its_own_context(
        start_server: StartServer, tmp_path: Path) -> None:
    db = tmp_path / "tenants.db"
    log = tmp_path / "calls.jsonl"
    log.touch()
    server = start_server("dev", store=f"sqlite:///{db}", config=GRAPHS / "langgraph.json",
                          env={"TENANT_CIPHER_CALLS": str(log)})
    secrets = {"acme": f"S3CRET-acme-{uuid.uuid4().hex}", "zeta": f"S3CRET-zeta-{uuid.uuid4().hex}"}
    asyncio.run(_session(server.url, "alice-token", secrets["acme"], {"region": "eu"}))
    asyncio.run(_session(server.url, "bob-token", secrets["zeta"],
                         {"region": "us", "tenant": "acme"}))  # the handler overrides tenant

    calls = _calls(log)
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

    server.stop()
    raw = b"".join(f.read_bytes() for f in db.parent.glob(db.name + "*") if f.is_file())
    for secret in secrets.values():
        assert secret.encode() not in raw
    for tenant, region in (("acme", "eu"), ("zeta", "us")):  # the contexts are stored as is
        assert json.dumps({"region": region, "tenant": tenant},
                          separators=(",", ":")).encode() in raw
