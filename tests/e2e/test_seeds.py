"""The five seed demos (examples/seeds/) run on treadle and print what their seeds show.

Each seed runs as a subprocess in a fresh temporary directory, exactly as a user runs it
(`python examples/seeds/seed_00X_....py`), so its store is ./.treadle/treadle.db there.
Nothing here asserts wall-clock times. Two tests run a seed under a small wrapper that
replaces `random.random` / `time.sleep` for calls made from the seed file only, to make
seed 001's failures deterministic and to observe seed 004's concurrency structurally.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "examples" / "seeds"
SRC = REPO / "src"

RETRY_LINE = re.compile(
    r"^node 'worker' attempt \d/5 failed \(RuntimeError: Transient failure\); "
    r"retrying it from the last checkpoint$"
)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TREADLE_STORE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr lines keep their real order
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


def _run(cwd: Path, *argv: str, **env: str) -> list[str]:
    """Run python ``argv`` in ``cwd``; its stdout+stderr lines, blank lines dropped."""
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env=_env(**env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=240,
    )
    text = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{text}"
    return [line for line in text.splitlines() if line.strip()]


def run_seed(name: str, cwd: Path) -> list[str]:
    return _run(cwd, str(SEEDS / name))


def literal_after(lines: list[str], prefix: str) -> Any:
    """The Python literal printed after ``prefix`` on the last such line."""
    found = [line[len(prefix):] for line in lines if line.startswith(prefix)]
    assert found, f"no line starts with {prefix!r}:\n" + "\n".join(lines)
    return ast.literal_eval(found[-1].strip())


def stored_threads(cwd: Path) -> dict[str, dict[str, Any]]:
    """thread_id -> latest checkpointed channel values, from the seed's default store."""
    from treadle import TreadleSaver, open_store

    db = cwd / ".treadle" / "treadle.db"
    assert db.is_file(), "the seed did not create ./.treadle/treadle.db in its cwd"
    store = open_store(f"sqlite:///{db}")
    try:
        saver = TreadleSaver(store)
        latest: dict[str, dict[str, Any]] = {}
        for tup in saver.list(None):
            tid = tup.config["configurable"]["thread_id"]
            if tid not in latest:  # list() yields newest first per thread
                current = saver.get_tuple({"configurable": {"thread_id": tid}})
                assert current is not None
                latest[tid] = dict(current.checkpoint["channel_values"])
        return latest
    finally:
        store.close()


# --- the seeds, as users run them ------------------------------------------------------


def test_seed_000_distributed_runtime(tmp_path: Path) -> None:
    lines = run_seed("seed_000_distributed_runtime.py", tmp_path)
    final = {"input": "distributed systems", "step": 2, "result": "DISTRIBUTED SYSTEMS", "done": True}
    assert lines == [
        "[Planner] running on worker-A | step=0",
        "[Executor] running on worker-B | step=1",
        "[Verifier] running on worker-C | step=1",
        "[Planner] running on worker-A | step=1",
        "[Executor] running on worker-B | step=2",
        "[Verifier] running on worker-C | step=2",
        f"Final State: {final!r}",
    ]
    # The thread_id given at the top level of the config is the thread that was checkpointed.
    assert stored_threads(tmp_path)["enterprise-session-42"] == final


def test_seed_001_cloud_runtime(tmp_path: Path) -> None:
    lines = run_seed("seed_001_cloud_runtime.py", tmp_path)
    assert lines[0] == "--- Cloud Runtime Execution ---"
    assert lines[-2:] == ["--- Final State ---", "{'step': 3, 'result': 'Processed step 3'}"]
    # Whenever treadle retried the failed worker, it resumed from the checkpoint: the
    # worker reruns alone, the planner step before it is not repeated.
    for i, line in enumerate(lines):
        if RETRY_LINE.match(line):
            assert lines[i + 1] == "Worker running...", "\n".join(lines)
    if not any("Failure detected" in line for line in lines):  # the seed's last resort, ~0.7%
        assert lines.count("Planner running...") == 3
        assert lines.count("Controller checking...") == 3
    assert stored_threads(tmp_path)["user-session-001"] == {"step": 3, "result": "Processed step 3"}


def test_seed_002_horizontal_scaling(tmp_path: Path) -> None:
    lines = run_seed("seed_002_horizontal_scaling.py", tmp_path)
    assert len(lines) == 6, "\n".join(lines)
    for step, line in enumerate(lines[:5], 1):
        assert re.fullmatch(rf"Worker [123] executed step {step}", line), line
    final = {"thread_id": "job-123", "step": 5, "done": True}
    assert literal_after(lines, "Final State:") == final
    # Stateless use (no thread_id): the one invoke still ran durably, on a fresh thread.
    assert list(stored_threads(tmp_path).values()) == [final]


def test_seed_003_kubernetes(tmp_path: Path) -> None:
    lines = run_seed("seed_003_kubernetes.py", tmp_path)
    start = lines.index("--- Kubernetes Pod Execution Start ---")
    done = lines.index("--- Kubernetes Pod Execution Complete ---")
    assert lines[start + 1:done] == [f"Processing step {i}" for i in range(5)]
    assert lines[done + 1] == "Final State: {'step': 5, 'done': True}"
    spec = lines[lines.index("--- Kubernetes Deployment Spec ---") + 1:]
    assert spec[:3] == ["apiVersion: apps/v1", "kind: Deployment", "metadata:"]
    assert "  name: langgraph-runtime" in spec
    assert spec[-1] == "          value: postgres://state-db"


def test_seed_004_worker_pool(tmp_path: Path) -> None:
    lines = run_seed("seed_004_worker_pool.py", tmp_path)
    assert len(lines) == 2, "\n".join(lines)
    assert literal_after(lines, "Final State:") == {"results": ["A", "B", "C", "Collected: A, B, C"]}
    assert re.fullmatch(r"Execution Time: \d+(\.\d+)? seconds", lines[1]), lines[1]


# --- the seeds' claims, made observable ------------------------------------------------

_SCRIPTED_RANDOM = """
import random, runpy, sys
seed, script = sys.argv[1], [float(x) for x in sys.argv[2].split(",")]
real = random.random
def scripted():
    if sys._getframe(1).f_code.co_filename == seed:
        return script.pop(0)
    return real()
random.random = scripted
runpy.run_path(seed, run_name="__main__")
assert not script, f"unused scripted values: {script}"
"""


def test_seed_001_retry_resumes_from_checkpoint(tmp_path: Path) -> None:
    # worker's random draws: ok; fail (RuntimeError); ok (the retry); ok.
    lines = _run(tmp_path, "-c", _SCRIPTED_RANDOM,
                 str(SEEDS / "seed_001_cloud_runtime.py"), "0.9,0.1,0.9,0.9")
    assert lines[:-1] == [
        "--- Cloud Runtime Execution ---",
        "Planner running...",
        "Worker running...",
        "Controller checking...",
        "Planner running...",
        "Worker running...",
        "node 'worker' attempt 1/5 failed (RuntimeError: Transient failure); "
        "retrying it from the last checkpoint",
        "Worker running...",  # retried alone: no "Planner running..." again, no restart
        "Controller checking...",
        "Planner running...",
        "Worker running...",
        "Controller checking...",
        "--- Final State ---",
    ]
    assert ast.literal_eval(lines[-1]) == {"step": 3, "result": "Processed step 3"}


_PEAK_SLEEPS = """
import runpy, sys, threading, time
seed = sys.argv[1]
real_sleep, cond = time.sleep, threading.Condition()
active = peak = 0
def sleep(seconds):
    global active, peak
    if sys._getframe(1).f_code.co_filename != seed:
        return real_sleep(seconds)
    with cond:  # a branch's "work": wait (bounded) for the other branches to be working too
        active += 1
        peak = max(peak, active)
        cond.notify_all()
        cond.wait_for(lambda: peak >= 3, timeout=20)
        active -= 1
time.sleep = sleep
runpy.run_path(seed, run_name="__main__")
print("peak concurrent branches:", peak)
"""


def test_seed_004_branches_run_at_once(tmp_path: Path) -> None:
    # No clock involved: A, B and C each block until all three are in their sleep
    # together, which only happens if treadle runs them concurrently (max_workers=3).
    lines = _run(tmp_path, "-c", _PEAK_SLEEPS, str(SEEDS / "seed_004_worker_pool.py"))
    assert literal_after(lines, "Final State:") == {"results": ["A", "B", "C", "Collected: A, B, C"]}
    assert lines[-1] == "peak concurrent branches: 3", "\n".join(lines)


@pytest.mark.parametrize("seed", sorted(p.name for p in SEEDS.glob("seed_*.py")))
def test_seed_changes_only_import_and_compile(seed: str) -> None:
    """Each example keeps its seed's code: compiled with treadle.compile, never builder.compile()."""
    code = "\n".join(
        line for line in (SEEDS / seed).read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    )
    assert "import treadle" in code
    assert code.count("graph = treadle.compile(builder)") == 1
    assert "builder.compile(" not in code
