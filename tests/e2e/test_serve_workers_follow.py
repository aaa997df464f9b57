"""`treadle serve`'s worker processes stop when serve itself is killed (SIGKILL: no chance
to stop them): each is told by the kernel, logs that serve died, drains and exits, leaving no
orphan; a worker that drains already (serve's own SIGTERM) is not cut short."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx

from processes import StartServer


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return not stat.read_text().split(") ")[-1].startswith("Z")
    except OSError:  # gone between the two looks
        return False


def _wait_gone(pids: list[int], log: str) -> None:
    deadline = time.monotonic() + 60
    while any(_alive(w) for w in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in pids), log


def _kill_survivors(pids: list[int]) -> None:
    for w in pids:  # never leave an orphan behind, even when the test fails
        if _alive(w):
            os.kill(w, signal.SIGKILL)


def test_workers_stop_when_serve_is_killed(start_server: StartServer) -> None:
    server = start_server("serve", args=["--workers", "2"])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(server.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) == 2, server.log()
        while server.log().count("serving") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # both ready: killing serve now tests the kernel's signal
        assert server.log().count("serving") == 2, server.log()
        server.proc.kill()
        server.proc.wait(10)
        _wait_gone(workers, server.log())
    finally:
        _kill_survivors(workers)
    log = server.log()
    died = f"treadle serve (pid {server.proc.pid}) that started this worker died: draining"
    assert log.count(died) == 2, log  # each worker says why it drains
    assert log.count("draining: no new claims") == 2, log  # the drain of any SIGTERM
    assert "was gone when this worker started" not in log, log  # the kernel's signal did it


def test_a_draining_worker_goes_on_draining_when_serve_is_killed(
        start_server: StartServer) -> None:
    # A run blocked in its node: the drain waits TREADLE_DRAIN_TIMEOUT for it, the window in
    # which serve (waiting for its worker) is killed.
    server = start_server("serve", args=["--workers", "1"], env={"TREADLE_DRAIN_TIMEOUT": "5"})
    workers: list[int] = []
    try:
        workers = _children(server.proc.pid)
        assert len(workers) == 1, server.log()
        thread = httpx.post(f"{server.url}/threads", json={}, timeout=10).json()["thread_id"]
        runs = f"{server.url}/threads/{thread}/runs"
        body = {"assistant_id": "slow", "input": {"n": 0, "delay": 3600}}
        run = httpx.post(runs, json=body, timeout=10).json()["run_id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{runs}/{run}", timeout=10).json()["status"] != "running":
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        server.proc.send_signal(signal.SIGTERM)
        while "draining: no new claims" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        server.proc.kill()
        server.proc.wait(10)
        _wait_gone(workers, server.log())
    finally:
        _kill_survivors(workers)
    log = server.log()
    assert "that started this worker died: the drain goes on" in log, log
    assert "stopping now" not in log, log  # what a second SIGTERM would have done
    assert re.search(r'"worker \S+ stopped"', log), log  # the drain ran to its end
