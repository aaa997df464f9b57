"""treadle.cli.parent_watch: a process whose parent (named by TREADLE_PARENT_PID) dies logs
why and gets SIGTERM; one whose parent is already gone stops at once; without the variable,
nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processes import subprocess_env

# A child that follows its parent (the "middle" process), reports its pid, then sleeps; its
# SIGTERM handler writes "terminated" to the file it was given and exits. Its log goes to the
# same file.
CHILD = """
import logging, os, signal, sys, time
from treadle.cli.parent_watch import follow_parent
out = sys.argv[1]
logging.basicConfig(filename=out, format="log %(message)s")
def done(*_):
    open(out, "a").write("terminated\\n"); os._exit(0)
signal.signal(signal.SIGTERM, done)
print(follow_parent(poll=0.1), flush=True)
open(out, "a").write(f"pid {os.getpid()}\\n")
time.sleep(120)
"""

# The middle process: starts the child with TREADLE_PARENT_PID set to its own pid, then sleeps
# (the test SIGKILLs it).
MIDDLE = """
import os, subprocess, sys, time
env = {**os.environ, "TREADLE_PARENT_PID": sys.argv[2]  or str(os.getpid())}
subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[1]], env=env)
time.sleep(120)
"""


def _wait_for(path: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = path.read_text() if path.exists() else ""
        if text in found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path}: {found!r}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# The same child without the kernel's help (as off Linux): its watcher thread notices.
WATCHER_CHILD = CHILD.replace(
    "print(", "import treadle.cli.parent_watch as pw; pw._death_signal = lambda *_: False\nprint(")

# A child that drains already when its parent dies: it is not sent a second SIGTERM.
DRAINING_CHILD = CHILD.replace("follow_parent(poll=0.1)",
                               "follow_parent(poll=0.1, draining=lambda: True)")


def _start(tmp_path: Path, child_source: str) -> tuple[subprocess.Popen[bytes], Path, int]:
    out = tmp_path / "child.out"
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, str(out), "", child_source],
                              env=subprocess_env())
    try:
        child = int(_wait_for(out, "pid ").split("pid ")[1].split()[0])
    except BaseException:
        middle.kill()  # its child, if any, follows it (or sleeps out its 120 s)
        middle.wait(10)
        raise
    return middle, out, child


@pytest.mark.parametrize("child_source", [CHILD, WATCHER_CHILD], ids=["kernel", "watcher"])
def test_the_child_gets_sigterm_when_its_parent_is_killed(tmp_path: Path,
                                                          child_source: str) -> None:
    middle, out, child = _start(tmp_path, child_source)
    try:
        assert _alive(child)
        middle.kill()
        middle.wait(10)
        found = _wait_for(out, "terminated")
        assert f"log treadle serve (pid {middle.pid}) that started this worker died: draining\n" \
            "terminated\n" in found
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_draining_child_is_not_stopped_again(tmp_path: Path) -> None:
    middle, out, child = _start(tmp_path, DRAINING_CHILD)
    try:
        middle.kill()
        middle.wait(10)
        _wait_for(out, "the drain goes on")
        with out.open("a") as f:  # anything the child wrote on its own comes before this
            f.write("the test sends SIGTERM\n")
        os.kill(child, signal.SIGTERM)
        assert _wait_for(out, "terminated").endswith(
            f"log treadle serve (pid {middle.pid}) that started this worker died: the drain "
            "goes on\nthe test sends SIGTERM\nterminated\n")
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_parent_already_gone_stops_the_child_at_once(tmp_path: Path) -> None:
    # TREADLE_PARENT_PID names a pid that is not the child's parent: as if serve had died
    # between starting the worker and the worker asking the kernel. The child stops before
    # it gets to write its pid.
    out = tmp_path / "child.out"
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, str(out), "1", CHILD],
                              env=subprocess_env())
    try:
        assert _wait_for(out, "terminated") == (
            "log treadle serve (pid 1) that started this worker was gone when this worker "
            "started: draining\nterminated\n")
    finally:
        middle.kill()
        middle.wait(10)


def test_without_the_variable_nothing_is_watched() -> None:
    from treadle.cli.parent_watch import PARENT_ENV, follow_parent

    os.environ.pop(PARENT_ENV, None)
    assert follow_parent() is False
    os.environ[PARENT_ENV] = "not-a-pid"
    assert follow_parent() is False and PARENT_ENV not in os.environ
