"""Every ``treadle ...`` command line in the code blocks of README.md and docs/*.md runs as
written, from a copy of the repository's ``examples/`` (cwd: a fresh directory, as a
checkout's root).

Each code block is one case: its commands run in order, sharing the directory and the
database, as a reader typing them would. Commands that serve (``worker``, ``dev``,
``serve``) are started in the background, must come up (a worker logs ``serving``, a server
answers ``/ok``) and stay up until the block ends; every other command must exit 0.

What the test changes, and only this: every ``postgresql://...`` URL becomes this test's
throwaway database; a server's ``--port`` (or, without one, ``TREADLE_PORT``) becomes a free
port (2024 is taken here); ``TREADLE_*`` variables of the test environment are not passed.
Lines of those blocks that are not treadle commands are listed in ``NOT_RUN`` with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from processes import subprocess_env

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SERVING = ("worker", "dev", "serve")

# Shell lines of the same blocks that are not treadle commands, and why they do not run here.
NOT_RUN = {
    "docker build": "needs a Docker daemon and network access to build the image (none here)",
    "kubectl": "needs a Kubernetes cluster to apply to (none here)",
    "#": "a comment",
}


@dataclass(frozen=True)
class Block:
    where: str  # file:line of the block's first command
    commands: tuple[str, ...]
    others: tuple[str, ...]  # its other shell lines


def _blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        inside, shell, start = False, False, 0
        commands: list[str] = []
        others: list[str] = []
        pending = ""
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if line.startswith("```"):
                if inside and commands:
                    found.append(Block(f"{doc.relative_to(REPO)}:{start}", tuple(commands),
                                       tuple(others)))
                inside = not inside
                shell = inside and line[3:].strip() in ("", "bash", "sh", "console")
                commands, others, pending = [], [], ""
                continue
            if not (inside and shell) or not line:
                continue
            if pending:
                line = pending + " " + line
                pending = ""
            if line.endswith("\\"):
                pending = line[:-1].rstrip()
                continue
            if line.startswith("treadle "):
                if not commands:
                    start = number
                commands.append(line)
            else:
                others.append(line)
    return found


BLOCKS = _blocks()


def test_the_docs_have_commands() -> None:
    # The extraction itself: a change of format must not make this test vacuous.
    wheres = {b.where.split(":")[0] for b in BLOCKS}
    assert {"README.md", "docs/cluster.md", "docs/api.md", "docs/operations.md"} <= wheres
    assert sum(len(b.commands) for b in BLOCKS) >= 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rewrite(command: str, pg_url: str) -> tuple[str, dict[str, str]]:
    command = re.sub(r"postgresql://[^\s'\"]+", pg_url, command)
    env: dict[str, str] = {}
    words = command.split()
    if words[1] in ("dev", "serve"):
        port = str(_free_port())
        if re.search(r"(--port|-p) \d+", command):
            command = re.sub(r"(--port|-p) \d+", rf"\g<1> {port}", command)
        env["TREADLE_PORT"] = port
    return command, env


class _Served:
    def __init__(self, command: str, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.command, self.log_path = command, log
        self.port = env.get("TREADLE_PORT")
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=cwd, env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_up(self) -> None:
        deadline = time.monotonic() + 60  # a guard against hanging, not a speed claim
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"`{self.command}` exited:\n{self.log()}"
            if self.port is None:
                if "serving" in self.log():
                    assert "cannot be loaded" not in self.log(), self.log()
                    return
            else:
                try:
                    if httpx.get(f"http://127.0.0.1:{self.port}/ok", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"`{self.command}` did not come up:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


@pytest.mark.postgres
@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_documented_commands_run_as_written(block: Block, tmp_path: Path, pg_url: str) -> None:
    for other in block.others:
        assert any(other.startswith(prefix) for prefix in NOT_RUN), (
            f"{block.where}: `{other}` is neither run nor listed in NOT_RUN with a reason")
    shutil.copytree(REPO / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("__pycache__", ".treadle"))
    base = {k: v for k, v in subprocess_env().items() if not k.startswith("TREADLE_")}
    base["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])
    served: list[_Served] = []
    try:
        for n, written in enumerate(block.commands):
            command, extra = _rewrite(written, pg_url)
            env = {**base, **extra}
            if command.split()[1] in SERVING:
                s = _Served(command, tmp_path, env, tmp_path / f"served-{n}.log")
                served.append(s)
                s.wait_up()
                continue
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (
                f"{block.where}: `{written}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
            assert "error:" not in done.stderr, f"{block.where}: `{written}`:\n{done.stderr}"
    finally:
        for s in reversed(served):
            s.stop()
