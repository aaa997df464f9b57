"""`treadle serve`'s worker processes stop when serve itself is killed (SIGKILL: no chance
to stop them): each is told by the kernel, logs that serve died, drains and exits, leaving no
orphan."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

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
        deadline = time.monotonic() + 60
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), server.log()
    finally:
        for w in workers:  # never leave an orphan behind, even when the test fails
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    log = server.log()
    died = f"treadle serve (pid {server.proc.pid}) that started this worker died: draining"
    assert log.count(died) == 2, log  # each worker says why it drains
    assert log.count("draining: no new claims") == 2, log  # the drain of any SIGTERM
    assert "was gone when this worker started" not in log, log  # the kernel's signal did it
