"""kill -9 a process mid-run; a new process resumes from the last committed checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.chaos

CHAIN = Path(__file__).parent / "graphs" / "chain.py"
SRC = Path(__file__).resolve().parents[2] / "src"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen[bytes], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} lines")


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"])
def test_kill_9_then_resume(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> None:
    if store_kind == "sqlite":
        url = f"sqlite:///{tmp_path}/chaos.db"
    else:
        url = request.getfixturevalue("pg_url")
    log = tmp_path / "log.txt"
    thread = f"chaos-{store_kind}"
    proc = subprocess.Popen([sys.executable, str(CHAIN), url, thread, str(log), "start"], env=_env())
    _wait_for_lines(log, 3, proc)  # n3 has started, so n1 and n2 are committed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    out = subprocess.run(
        [sys.executable, str(CHAIN), url, thread, str(log), "resume"],
        env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout.strip().splitlines()[-1])
    assert final["done"] == [f"n{i}" for i in range(1, 7)]

    lines = [line.split() for line in log.read_text().splitlines()]
    runs = Counter(name for name, _ in lines)
    # Finished nodes never run again; only the one in flight at the kill may repeat.
    assert runs["n1"] == 1 and runs["n2"] == 1
    assert all(runs[f"n{i}"] == 1 for i in range(4, 7)), runs
    assert runs["n3"] in (1, 2)
    # A repeated task keeps its idempotency key across the crash and the resume.
    keys = {name: {k for n, k in lines if n == name} for name in runs}
    assert all(len(v) == 1 for v in keys.values()), keys


def test_cli_kill_9_then_resume(tmp_path: Path) -> None:
    """The same through the real CLI: `treadle run`, kill -9, `treadle run --resume`."""
    url = f"sqlite:///{tmp_path}/cli.db"
    log = tmp_path / "log.txt"
    ref = f"{CHAIN}:builder"
    base = [sys.executable, "-m", "treadle", "run", ref, "--store", url, "--thread", "cli-chaos"]
    inp = json.dumps({"log_path": str(log), "done": []})
    proc = subprocess.Popen(base + ["--input", inp, "--json"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_lines(log, 3, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)

    out = subprocess.run(base + ["--resume", "--json"], env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["done"] == [f"n{i}" for i in range(1, 7)]
    runs = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert runs["n1"] == runs["n2"] == 1 and runs["n3"] in (1, 2)
    assert all(runs[f"n{i}"] == 1 for i in range(4, 7)), runs


def test_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    """Several processes write one SQLite file at once: SQLite's write lock and busy
    timeout serialise them; every run completes with exact state."""
    url = f"sqlite:///{tmp_path}/shared.db"
    script = Path(__file__).parent / "graphs" / "many.py"
    procs = [
        subprocess.Popen([sys.executable, str(script), url, f"p{k}", "25"], env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == {"bad": []}
    from treadle.store import open_store

    with open_store(url) as store:
        assert len(store.list_threads(limit=1000)) == 75
