"""Encryption at rest, end to end: a real server (``treadle dev``), the official
``langgraph_sdk`` client, and a secret written through every path treadle stores (run
input, node output in state and checkpoints, a pending write beside an interrupt, the
interrupt, a failed step's error, a custom stream event, store items through the graph and
through the API, the run result, a chosen metadata key). Then the raw database — the SQLite
file and its -wal, or every table of the PostgreSQL database as text — must not contain
it, while reading back through the API returns it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph_sdk import get_client
from psycopg import sql

from processes import StartServer

GRAPHS = Path(__file__).parent / "secret_graphs"
KEYS = "k2:" + base64.b64encode(b"k" * 32).decode() + ",k1:" + base64.b64encode(b"o" * 32).decode()


async def _drive(url: str, secret: str) -> None:
    """Write ``secret`` through every path, then read each back through the API."""
    client = get_client(url=url)
    thread = await client.threads.create(metadata={"ssn": secret, "plain": "visible"})
    tid = thread["thread_id"]
    custom: list[Any] = []
    async for part in client.runs.stream(tid, "secret", input={"secret": secret},
                                         stream_mode=["values", "custom"],
                                         metadata={"ssn": secret}):
        if part.event == "custom":
            custom.append(part.data)
    assert {"leak": secret} in custom
    state = await client.threads.get_state(tid)
    values = state["values"]
    assert isinstance(values, dict) and values["echo"] == secret  # node output, read from the checkpoint
    assert secret in str(state["tasks"])  # the interrupt (a pending write)
    got = await client.threads.get(tid)
    assert got["status"] == "interrupted"
    metadata = got["metadata"] or {}
    assert metadata["ssn"] == secret and metadata["plain"] == "visible"
    assert secret in str(got["interrupts"])  # cached in the thread record
    runs = await client.runs.list(tid)
    first = runs[0]
    assert (first["metadata"] or {})["ssn"] == secret
    replay = [p.data async for p in client.runs.join_stream(tid, first["run_id"],
                                                             stream_mode=["custom"])]
    assert secret in str(replay)  # stream events read back from the store
    result = await client.runs.wait(tid, "secret", command={"resume": secret})
    assert isinstance(result, dict) and result["approved"] == secret  # the run result
    history = await client.threads.get_history(tid)
    assert any((h["metadata"] or {}).get("ssn") == secret for h in history)  # checkpoint metadata
    item = await client.store.get_item(["graph-mem"], "k")
    assert item is not None and item["value"] == {"v": secret}
    await client.store.put_item(["api-mem"], "k", {"v": secret})
    item = await client.store.get_item(["api-mem"], "k")
    assert item is not None and item["value"] == {"v": secret}
    assistant = await client.assistants.create("secret", metadata={"ssn": secret})
    fetched = await client.assistants.get(assistant["assistant_id"])
    assert (fetched["metadata"] or {})["ssn"] == secret
    failing = await client.threads.create()
    run = await client.runs.create(failing["thread_id"], "failing", input={"secret": secret})
    await client.runs.join(failing["thread_id"], run["run_id"])
    done = await client.runs.get(failing["thread_id"], run["run_id"])
    assert done["status"] == "error"
    errored = await client.threads.get(failing["thread_id"])
    assert errored["status"] == "error"


def _assert_absent(blob: bytes, secret: str, where: str) -> None:
    for form in (secret.encode(), secret.encode().hex().encode()):
        assert form not in blob, f"the secret is readable in {where}"


def _scan_sqlite(db: Path, secret: str) -> int:
    scanned = 0
    for file in db.parent.rglob(db.name + "*"):  # the file, its -wal and -shm
        if not file.is_file():
            continue
        data = file.read_bytes()
        _assert_absent(data, secret, file.name)
        scanned += len(data)
    return scanned


def _scan_postgres(url: str, secret: str) -> int:
    rows = 0
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")]
        assert "treadle_checkpoints" in tables
        for table in tables:
            for (text,) in conn.execute(sql.SQL("SELECT t::text FROM {} t").format(
                    sql.Identifier(table))):
                _assert_absent(text.encode(), secret, f"table {table}")
                rows += 1
    return rows


def _env(user_encryption: bool) -> dict[str, str]:
    env = {"TREADLE_ENCRYPTED_METADATA_FIELDS": "ssn"}
    if not user_encryption:
        env["TREADLE_ENCRYPTION_KEYS"] = KEYS
    return env


def _config(user_encryption: bool) -> Path:
    return GRAPHS / ("langgraph_user_encryption.json" if user_encryption else "langgraph.json")


@pytest.mark.parametrize("user_encryption", [False, True], ids=["keyring", "user-encryption"])
def test_secret_never_reaches_sqlite(start_server: StartServer, tmp_path: Path,
                                     user_encryption: bool) -> None:
    secret = f"S3CRET-{uuid.uuid4().hex}"
    db = tmp_path / "secret.db"
    server = start_server("dev", store=f"sqlite:///{db}", env=_env(user_encryption),
                          config=_config(user_encryption))
    asyncio.run(_drive(server.url, secret))
    assert _scan_sqlite(db, secret) > 0
    server.stop()
    assert _scan_sqlite(db, secret) > 0  # after the WAL is checkpointed into the file


@pytest.mark.parametrize("user_encryption", [False, True], ids=["keyring", "user-encryption"])
def test_secret_never_reaches_postgres(start_server: StartServer, pg_url: str,
                                       user_encryption: bool) -> None:
    """Through `treadle serve`: its `treadle worker` process runs the graphs, so the
    worker reads the same keys / langgraph.json encryption as the API."""
    secret = f"S3CRET-{uuid.uuid4().hex}"
    server = start_server("serve", store=pg_url, env=_env(user_encryption),
                          config=_config(user_encryption))
    asyncio.run(_drive(server.url, secret))
    assert _scan_postgres(pg_url, secret) > 0


def _tables_holding(db: Path, secret: str) -> set[str]:
    """The tables of the SQLite store ``db`` with a value containing ``secret``."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t for t in tables for row in conn.execute(f'SELECT * FROM "{t}"')  # noqa: S608
                if any(secret.encode() in (v if isinstance(v, bytes) else str(v).encode())
                       for v in row)}


def test_the_scan_finds_a_plaintext_secret(start_server: StartServer, tmp_path: Path) -> None:
    """Without encryption the same session leaves the secret readable in every table the
    encrypted tests cover: the session exercises every path, and the scans can fail."""
    secret = f"S3CRET-{uuid.uuid4().hex}"
    db = tmp_path / "plain.db"
    server = start_server("dev", store=f"sqlite:///{db}", config=_config(False))
    asyncio.run(_drive(server.url, secret))
    server.stop()
    with pytest.raises(AssertionError, match="the secret is readable"):
        _scan_sqlite(db, secret)
    assert _tables_holding(db, secret) >= {
        "treadle_checkpoints", "treadle_blobs", "treadle_writes", "treadle_runs",
        "treadle_events", "treadle_items", "treadle_thread_records"}


def test_turning_encryption_on_over_a_plaintext_store(start_server: StartServer,
                                                      tmp_path: Path) -> None:
    """Rows written before encryption was on are refused with one clear message (not
    returned as if nothing happened); the migration setting reads them."""
    store = f"sqlite:///{tmp_path / 'legacy.db'}"

    async def write(url: str) -> str:
        client = get_client(url=url)
        thread = await client.threads.create()
        await client.runs.wait(thread["thread_id"], "secret", input={"secret": "legacy"})
        await client.store.put_item(["legacy"], "k", {"v": "legacy"})
        return str(thread["thread_id"])

    async def read(url: str, tid: str) -> Exception | None:
        client = get_client(url=url)
        try:
            state = await client.threads.get_state(tid)
            item = await client.store.get_item(["legacy"], "k")
        except Exception as exc:  # the SDK raises httpx.HTTPStatusError
            return exc
        assert isinstance(state["values"], dict) and state["values"]["echo"] == "legacy"
        assert item is not None and item["value"] == {"v": "legacy"}
        return None

    plain = start_server("dev", store=store, config=_config(False))
    tid = asyncio.run(write(plain.url))
    plain.stop()
    encrypted = start_server("dev", store=store, env=_env(False), config=_config(False))
    refused = asyncio.run(read(encrypted.url, tid))
    assert refused is not None
    detail = refused.response.text if hasattr(refused, "response") else str(refused)
    assert "not encrypted while encryption at rest is on" in detail
    assert "TREADLE_ENCRYPTION_ALLOW_PLAINTEXT" in detail
    encrypted.stop()
    migrating = start_server("dev", store=store, config=_config(False),
                             env={**_env(False), "TREADLE_ENCRYPTION_ALLOW_PLAINTEXT": "true"})
    assert asyncio.run(read(migrating.url, tid)) is None
