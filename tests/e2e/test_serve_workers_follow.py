"""`treadle serve`'s worker processes stop when serve itself is killed (SIGKILL: no chance
to stop them): each gets SIGTERM from the kernel, drains and exits, leaving no orphan."""

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
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def test_workers_stop_when_serve_is_killed(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("serve", args=["--workers", "2"])
    deadline = time.monotonic() + 60
    while len(workers := _children(server.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers) == 2, server.log()
    while server.log().count("serving") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # both ready: killing serve now tests the kernel's signal
    try:
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
    # Linux: the kernel's SIGTERM (PR_SET_PDEATHSIG) did it, not a worker noticing at start-up
    assert "is gone: stopping" not in server.log()
