"""The run queue on SQLite: the backend contract, plus what only a shared file shows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from priority_contract import PriorityContract
from queue_contract import QueueContract, new_run
from treadle.store import open_store
from treadle.store.base import Store


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/q.db")
    try:
        yield s
    finally:
        s.close()


class TestSqliteQueue(QueueContract):
    @pytest.fixture
    def store(self, sqlite_store: Store) -> Store:
        return sqlite_store


def test_migration_creates_the_queue_tables(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/q.db")
    try:
        assert store.schema_version() >= 2
        conn = sqlite3.connect(tmp_path / "q.db")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"treadle_runs", "treadle_tasks", "treadle_events", "treadle_graphs"} <= tables
        # The partial unique index is the hard guarantee of one running run per thread.
        store.enqueue_run(new_run("r1"))
        store.enqueue_run(new_run("r2"))
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE treadle_runs SET status = 'running'")
        conn.close()
        assert store.migrate() == []  # idempotent
    finally:
        store.close()


_CLAIMER = textwrap.dedent("""
    import json, os, sys, time
    from treadle.store import open_store

    url, ready, go = sys.argv[1:4]
    store = open_store(url)
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
    claimed = []
    while True:
        row = store.claim_run(f"w{os.getpid()}", ["ref:g"], False, 60.0)
        if row is None:
            break
        claimed.append([row.run_id, row.epoch])
        time.sleep(0.002)  # a little work, so the claimers take turns at the lock
    store.close()
    print(json.dumps(claimed))
""")


def test_processes_sharing_the_file_never_claim_the_same_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    store = open_store(url)
    runs = 100
    for i in range(runs):
        store.enqueue_run(new_run(f"r{i:02d}", thread_id=f"t{i}"))
    go = tmp_path / "go"
    procs, readies = [], []
    for n in range(2):
        ready = tmp_path / f"ready-{n}"
        readies.append(ready)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, url, str(ready), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "claimer processes did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    claimed = [run_id for result in results for run_id, _ in result]
    assert len(claimed) == runs and len(set(claimed)) == runs
    assert all(epoch == 1 for result in results for _, epoch in result)
    rows = store.list_runs(limit=runs)
    assert all(r.status == "running" and r.epoch == 1 for r in rows)
    assert store.queue_depth() == (0, None)
    store.close()


def test_fenced_thread_claim_in_a_batch(tmp_path: Path) -> None:
    """Ops queued behind a refused claim in the same commit stay fenced."""
    from treadle.errors import FencedWriteError
    from treadle.store.checkpoints import ClaimThread, PutWrites, WriteRow

    store = open_store(f"sqlite:///{tmp_path}/q.db", linger=0.05)
    try:
        store.enqueue_run(new_run("r1"))
        r = store.claim_run("w", ["ref:g"], False, 60.0)
        assert r is not None
        assert store.claim_thread("t", "owner") == 1
        write = PutWrites("t", checkpoint_ns="", checkpoint_id="c1", upsert=False, token="stale",
                          rows=[WriteRow(task_id="x", idx=0, channel="ch", type="json", blob=b"1")])
        refused = store.submit(ClaimThread("t", token="stale", run_id="r1", run_epoch=r.epoch - 1))
        behind = store.submit(write)
        with pytest.raises(FencedWriteError):
            refused.result(5)
        with pytest.raises(FencedWriteError):
            behind.result(5)
        assert store.thread_epoch("t") == 1
    finally:
        store.close()


class TestSqlitePriority(PriorityContract):
    @pytest.fixture
    def store(self, sqlite_store: Store) -> Store:
        return sqlite_store
