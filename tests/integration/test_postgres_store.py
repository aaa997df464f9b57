"""The PostgreSQL store against a real server: what only PostgreSQL shows (failures, reconnects,
migrations, pool options). The checkpoint contract and LangChain's conformance suite run in
test_checkpoints_postgres.py."""

from __future__ import annotations

import json
import operator
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, LiteralString, TypedDict

import psycopg
import pytest
from langgraph.graph import START, StateGraph

import treadle
from treadle.errors import (
    ConfigError,
    FencedWriteError,
    SchemaError,
    StoreError,
    StoreUnavailableError,
)
from treadle.store import Store, open_store
from treadle.store.checkpoints import (
    BlobRow,
    CheckpointRow,
    PutCheckpoint,
    PutWrites,
    WriteRow,
)
from treadle.store.drivers.postgres import PostgresConnector
from treadle.store.migrate import load_migrations

pytestmark = pytest.mark.postgres

SRC = Path(__file__).resolve().parents[2] / "src"


# --- helpers -----------------------------------------------------------------------


def _scalar(conn: psycopg.Connection[Any], sql: LiteralString) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _checkpoint(thread_id: str, checkpoint_id: str, *, token: str | None = None,
                run_id: str | None = None, ns: str = "", source: str = "loop") -> PutCheckpoint:
    version = f"v-{checkpoint_id}"
    row = CheckpointRow(
        thread_id=thread_id, checkpoint_ns=ns, checkpoint_id=checkpoint_id,
        parent_checkpoint_id=None, run_id=run_id, type="json", checkpoint=b"{}",
        channel_versions=json.dumps({"state": version}), metadata_type="json",
        metadata_blob=b"{}", metadata=json.dumps({"source": source, "step": 1}),
    )
    return PutCheckpoint(thread_id, row=row, blobs=[BlobRow("state", version, "json", b"1")],
                         token=token)


def _writes(thread_id: str, checkpoint_id: str, task_id: str, *, token: str | None = None,
            ns: str = "") -> PutWrites:
    return PutWrites(thread_id, checkpoint_ns=ns, checkpoint_id=checkpoint_id, upsert=False,
                     token=token,
                     rows=[WriteRow(task_id=task_id, idx=0, channel="ch", type="json", blob=b"1")])


def _record_batches(store: Store) -> list[int]:
    """Sizes of the batches the store's writer applies from now on."""
    sizes: list[int] = []
    committer = store._committer
    assert committer is not None
    apply = committer._apply

    def recording(conn: Any, ops: list[Any]) -> list[Any]:
        sizes.append(len(ops))
        return apply(conn, ops)

    committer._apply = recording  # type: ignore[method-assign]
    return sizes


@contextmanager
def _writer_held(store: Store, url: str) -> Iterator[None]:
    """Keep the writer stuck in a commit: everything submitted inside forms one batch.

    A fenced write to a gate thread waits on a row lock held by another connection;
    the operations queued meanwhile are committed together once the lock is released.
    """
    store.claim_thread("gate", "gate-token")
    blocker = psycopg.connect(url)
    gate: Future[Any] | None = None
    try:
        blocker.execute("SELECT 1 FROM treadle_threads WHERE thread_id = 'gate' FOR UPDATE")
        gate = store.submit(_writes("gate", "g", "gate-task", token="gate-token"))
        with psycopg.connect(url, autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while not _scalar(
                watcher,
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'",
            ):
                assert time.monotonic() < deadline, "the writer never reached the gate lock"
                time.sleep(0.01)
        yield
    finally:
        blocker.commit()
        blocker.close()
        if gate is not None:
            assert gate.result(30) is None


# --- fencing -------------------------------------------------------------------------------


def test_a_failing_operation_fails_alone(pg_store: Store, pg_url: str) -> None:
    store = pg_store
    bad_client_side = _writes("t\x00nul", "c1", "x")  # text cannot hold NUL: refused by psycopg
    bad_server_side = _checkpoint("t", "c-bad")
    bad_server_side.row.channel_versions = "not json"  # refused by the server's jsonb parser
    batches = _record_batches(store)
    with _writer_held(store, pg_url):
        good_1 = store.submit(_checkpoint("t", "c1"))
        bad_1 = store.submit(bad_client_side)
        bad_2 = store.submit(bad_server_side)
        good_2 = store.submit(_writes("t", "c1", "task"))
    assert good_1.result(10) is None and good_2.result(10) is None
    for bad in (bad_1, bad_2):
        with pytest.raises(StoreError):
            bad.result(10)
    assert batches[-5:] == [4, 1, 1, 1, 1]  # the batch failed, then each op ran on its own
    record = store.get_checkpoint("t", "", None)
    assert record is not None and record.row.checkpoint_id == "c1"
    assert [w.task_id for w in record.writes] == ["task"]
    # The writer connection is still usable afterwards.
    assert store.submit(_checkpoint("t", "c2")).result(10) is None


def test_stale_graph_execution_cannot_write(pg_url: str) -> None:
    class S(TypedDict):
        log: Annotated[list[str], operator.add]

    started, release = threading.Event(), threading.Event()

    def slow(state: S) -> dict[str, Any]:
        started.set()
        release.wait(10)
        return {"log": ["from-A"]}

    a_builder = StateGraph(S)
    a_builder.add_node("step", slow)
    a_builder.add_edge(START, "step")
    a = treadle.compile(a_builder, store=pg_url)
    b_builder = StateGraph(S)
    b_builder.add_node("step", lambda s: {"log": ["from-B"]})
    b_builder.add_edge(START, "step")
    b = treadle.compile(b_builder, store=pg_url)
    errors: list[BaseException] = []

    def run_a() -> None:
        try:
            a.invoke({"log": []}, {"thread_id": "shared"})
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    try:
        t = threading.Thread(target=run_a)
        t.start()
        assert started.wait(10)
        assert b.invoke({"log": []}, {"thread_id": "shared"}) == {"log": ["from-B"]}
        release.set()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], FencedWriteError), errors
        assert b.get_state({"thread_id": "shared"}).values == {"log": ["from-B"]}
    finally:
        release.set()
        a.close()
        b.close()


# --- reads and maintenance -------------------------------------------------------------------


def _scenario(store: Any) -> list[Any]:
    """Drive a store through every operation; return what an observer would see."""
    seen: list[Any] = []

    def outcome(op: Any) -> Any:
        try:
            return store.submit(op).result(10)
        except FencedWriteError as exc:
            return ("fenced", exc.current_epoch)

    def dump(thread_id: str) -> list[Any]:
        return [
            (r.row.checkpoint_ns, r.row.checkpoint_id, r.row.run_id,
             sorted((b.channel, b.version, b.blob) for b in r.blobs),
             [(w.task_id, w.idx, w.channel, w.blob, w.task_path) for w in r.writes])
            for r in store.list_checkpoints(thread_id, None)
        ]

    def rows(*spec: tuple[str, int, bytes]) -> list[WriteRow]:
        return [WriteRow(task_id=t, idx=i, channel=f"ch{i}", type="json", blob=b, task_path="p")
                for t, i, b in spec]

    seen.append(store.claim_thread("t", "tok-1"))
    seen.append(outcome(_writes("t", "c1", "early", token="tok-0")))
    seen.append(outcome(_checkpoint("t", "c1", token="tok-1", run_id="r1")))
    seen.append(outcome(_checkpoint("t", "c1-sub", ns="sub", token="tok-1", run_id="r1")))
    # Regular writes keep the first value of a key, special ones (upsert) the last.
    seen.append(outcome(PutWrites("t", checkpoint_ns="", checkpoint_id="c1", upsert=False,
                                  token="tok-1", rows=rows(("a", 0, b"1"), ("a", 0, b"2")))))
    seen.append(outcome(PutWrites("t", checkpoint_ns="", checkpoint_id="c1", upsert=False,
                                  token="tok-1", rows=rows(("a", 0, b"3"), ("a", 1, b"4")))))
    seen.append(outcome(PutWrites("t", checkpoint_ns="", checkpoint_id="c1", upsert=True,
                                  token="tok-1", rows=rows(("b", -1, b"5"), ("b", -1, b"6")))))
    seen.append(outcome(PutWrites("t", checkpoint_ns="", checkpoint_id="c1", upsert=True,
                                  token="tok-1", rows=rows(("b", -1, b"7")))))
    seen.append(outcome(_checkpoint("t", "c2", token="tok-1", run_id="r2")))
    seen.append(outcome(_writes("t", "c2", "task", token="tok-1")))
    seen.append(store.claim_thread("t", "tok-2"))
    seen.append(outcome(_checkpoint("t", "c3", token="tok-1", run_id="r2")))
    seen.append(outcome(_checkpoint("t", "c3", token="tok-2", run_id="r3")))
    seen.append(outcome(_checkpoint("t", "c4")))  # unfenced
    seen.append(dump("t"))
    for query in ({"source": "loop"}, {"source": "loop", "step": 1}, {"source": "input"},
                  {"missing": None}, {"source": None}, {"step": 2}):
        seen.append([r.row.checkpoint_id for r in store.list_checkpoints("t", None, filter=query)])
    store.copy_thread("t", "u")
    seen.append(dump("u"))
    store.delete_for_runs(["r2"])
    seen.append((dump("t"), dump("u")))
    store.prune(["u"], "keep_latest")
    seen.append(dump("u"))
    seen.append([(i.thread_id, i.epoch, i.checkpoints, i.latest_checkpoint_id)
                 for i in sorted(store.list_threads(), key=lambda i: i.thread_id)])
    store.prune(["u"], "delete")
    store.delete_thread("t")
    seen.append((dump("t"), dump("u"), store.thread_epoch("t"), store.thread_epoch("u")))
    seen.append(outcome(_checkpoint("t", "c5", token="tok-2")))
    # Each backend is at its own newest migration (their counts differ).
    backend = store.db.dialect
    seen.append(store.schema_version() == len(load_migrations(backend)))
    return seen


def test_same_observable_behaviour_as_sqlite(pg_store: Store, tmp_path: Path) -> None:
    sqlite = open_store(f"sqlite:///{tmp_path}/parity.db")
    try:
        expected = _scenario(sqlite)
    finally:
        sqlite.close()
    assert _scenario(pg_store) == expected


def test_writer_and_readers_reconnect_after_the_server_drops_them(pg_store: Store,
                                                                   pg_url: str) -> None:
    store = pg_store
    store.claim_thread("t", "tok")
    store.submit(_checkpoint("t", "c1", token="tok")).result(10)
    assert store.get_checkpoint("t", "", None) is not None
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = _scalar(
            admin,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
    assert killed >= 2  # the writer and at least one pooled reader
    store.submit(_checkpoint("t", "c2", token="tok")).result(10)
    latest = store.get_checkpoint("t", "", None)
    assert latest is not None and latest.row.checkpoint_id == "c2"


# --- options ---------------------------------------------------------------------------------


def test_pool_options_are_read_from_the_url_and_stripped(pg_url: str) -> None:
    sep = "&" if "?" in pg_url else "?"
    store = open_store(f"{pg_url}{sep}pool_max=3&pool_min=1&application_name=treadle-test",
                       auto_migrate=True)
    try:
        assert isinstance(store.db, PostgresConnector)
        assert store.db.pool is not None and store.db.pool.max_size == 3
        store.thread_epoch("t")  # a read through the pool
        with psycopg.connect(pg_url, autocommit=True) as admin:
            names = {r[0] for r in admin.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            )}
        assert "treadle-test" in names  # libpq options pass through untouched
    finally:
        store.close()
    with pytest.raises(ConfigError, match="pool_max"):
        open_store(f"{pg_url}{sep}pool_max=lots", auto_migrate=True)


# --- migrations --------------------------------------------------------------------------------


def _migration_rows(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT version, name FROM treadle_migrations ORDER BY version"
        ).fetchall()


def test_concurrent_migrate_from_threads_applies_once(pg_url: str) -> None:
    names = [m.name for m in load_migrations("postgres")]
    stores = [open_store(pg_url, auto_migrate=False) for _ in range(6)]
    try:
        barrier = threading.Barrier(len(stores))

        def run(store: Store) -> list[str]:
            barrier.wait(10)
            return store.migrate()

        with ThreadPoolExecutor(len(stores)) as pool:
            results = list(pool.map(run, stores))
        assert sorted(results) == [[]] * (len(stores) - 1) + [names]
        assert all(s.schema_version() == len(names) for s in stores)
    finally:
        for s in stores:
            s.close()
    assert [name for _, name in _migration_rows(pg_url)] == names


_MIGRATE_CHILD = """
import json, sys
from treadle.store import open_store
store = open_store(sys.argv[1], auto_migrate=False)
print("ready", flush=True)
sys.stdin.readline()  # go
print(json.dumps(store.migrate()), flush=True)
store.close()
"""


def test_concurrent_migrate_from_processes_applies_once(pg_url: str) -> None:
    names = [m.name for m in load_migrations("postgres")]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    children = [
        subprocess.Popen([sys.executable, "-c", _MIGRATE_CHILD, pg_url], env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    try:
        for child in children:  # every child connected before any migrates
            assert child.stdout is not None and child.stdout.readline().strip() == "ready", (
                child.stderr.read() if child.stderr else "")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert sorted(results) == [[]] * (len(children) - 1) + [names]
    assert [name for _, name in _migration_rows(pg_url)] == names


def test_schema_newer_than_the_code_is_refused(pg_url: str) -> None:
    open_store(pg_url, auto_migrate=True).close()
    newest = load_migrations("postgres")[-1].version
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO treadle_migrations (version, name) VALUES (999, '0999_future.sql')"
        )
    with pytest.raises(SchemaError) as info:
        open_store(pg_url, auto_migrate=True)
    message = str(info.value)
    assert "schema version 999" in message and f"versions up to {newest}" in message
    store = open_store(pg_url, auto_migrate=False)
    try:
        with pytest.raises(SchemaError):
            store.migrate()
        assert store.schema_version() == 999
    finally:
        store.close()


def test_schema_version_of_an_empty_database_is_zero(pg_url: str) -> None:
    store = open_store(pg_url, auto_migrate=False)
    try:
        assert store.schema_version() == 0
        assert store.migrate() == [m.name for m in load_migrations("postgres")]
        assert store.migrate() == []
        assert store.schema_version() == load_migrations("postgres")[-1].version
    finally:
        store.close()


# --- unreachable server ------------------------------------------------------------------------


def test_refused_connection_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailableError) as info:
        open_store("postgresql://postgres:s3cret@127.0.0.1:1/test")
    message = str(info.value)
    assert "127.0.0.1:1" in message
    assert "s3cret" not in message and "\n" not in message
    assert isinstance(info.value.__cause__, psycopg.Error)


def test_silent_server_is_store_unavailable_after_the_connect_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREADLE_CONNECT_TIMEOUT", "2")
    with socket.socket() as silent:  # accepts TCP connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with pytest.raises(StoreUnavailableError) as info:
            open_store(f"postgresql://postgres:s3cret@127.0.0.1:{port}/test")
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "s3cret" not in message and "\n" not in message
