"""treadle as PID 1 of a container: SIGTERM must end a command that does not drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

_CHILD = """
import os, signal, sys, time
from treadle.cli import exit_on_sigterm_as_pid1
exit_on_sigterm_as_pid1(pid={pid})
print("ready", flush=True)
time.sleep(30)
sys.exit(0)
"""


def _run(pid: int) -> int:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(pid=pid)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def test_pid1_exits_143_on_sigterm() -> None:
    assert _run(pid=1) == 143


def test_other_pids_keep_the_default_disposition() -> None:
    # Not PID 1: no handler is installed, so SIGTERM kills the process as usual.
    assert _run(pid=4242) == -signal.SIGTERM


def test_a_command_handler_is_not_replaced() -> None:
    from treadle.cli import exit_on_sigterm_as_pid1

    def mine(*_: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        exit_on_sigterm_as_pid1(pid=1)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
