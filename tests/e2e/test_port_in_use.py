"""A server whose port is taken stops at once in one line: `treadle worker --port`,
`treadle dev` and `treadle serve`, each a real process started on a port another socket
holds."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from processes import subprocess_env

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process's socket listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize(("command", "option"), [
    (["worker"], "--port / TREADLE_WORKER_PORT"),
    (["dev"], "--port / TREADLE_PORT"),
    (["serve"], "--port / TREADLE_PORT"),
    (["serve", "--no-workers"], "--port / TREADLE_PORT"),
])
def test_a_taken_port_is_one_line_and_exit_1(command: list[str], option: str, taken_port: int,
                                              tmp_path: Path) -> None:
    store = tmp_path / "treadle.db"
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("TREADLE_")}
    done = subprocess.run(
        [sys.executable, "-m", "treadle", *command, "--config", str(EXAMPLES / "langgraph.json"),
         "--store", f"sqlite:///{store}", "--port", str(taken_port)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (f"error: port {taken_port} is already in use on 127.0.0.1 (another "
                           f"process listens there): stop it or choose another port with "
                           f"{option}\n"), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not store.exists()  # it stopped before opening the store

