"""Real processes for the end-to-end and chaos tests: `treadle dev` / `treadle serve`
servers and the environment subprocesses run in. A module (not conftest.py) so test
modules can import it by name: ``from processes import ServerProcess``."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

SRC = Path(__file__).resolve().parents[1] / "src"
SERVER_GRAPHS = Path(__file__).resolve().parent / "server_graphs"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM ``proc`` (as Kubernetes would), SIGKILL it after ``timeout`` s; reap it."""
    import signal

    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A `treadle dev` / `treadle serve` subprocess on a free port."""

    def __init__(self, command: str, store: str, log: Path, args: list[str],
                 env: dict[str, str], config: Path) -> None:
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "treadle", command, "--config", str(config), "--store", store,
             "--port", str(self.port), *args],
            env=env, stdout=self._out, stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 20) -> None:
        terminate(self.proc, timeout)
        self._out.close()


@contextlib.contextmanager
def running_server(tmp: Path, config: Path, command: str = "dev", **env: str
                   ) -> Iterator[ServerProcess]:
    """A ready `treadle dev` (or ``command``) serving ``config`` on a fresh SQLite file in
    ``tmp``, stopped on exit (started in a module fixture, or around one test)."""
    server = ServerProcess(command, f"sqlite:///{tmp / 'server.db'}", tmp / "server.log", [],
                           subprocess_env(**env), config)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop(timeout=10)


class WorkerProcess:
    """A `treadle worker` subprocess; its output goes to ``log``."""

    def __init__(self, url: str, graphs: list[str], log: Path, args: list[str],
                 env: dict[str, str]) -> None:
        import sys

        self.url, self.graphs, self.log_path, self.args, self.env = url, graphs, log, args, env
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "treadle", "worker", "--store", url, *args, *graphs],
            env=env, stdout=self._out, stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "serving" in self.log():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log()}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        terminate(self.proc, timeout)
        self._out.close()


class StartWorker(Protocol):
    """The ``start_worker`` fixture (tests/conftest.py)."""

    def __call__(self, url: str, *graphs: str, args: list[str] | None = None,
                 env: dict[str, str] | None = None, ready: bool = True) -> WorkerProcess: ...


class StartServer(Protocol):
    """The ``start_server`` fixture (tests/conftest.py)."""

    def __call__(self, command: str = "dev", store: str | None = None, args: list[str] | None = None,
                 env: dict[str, str] | None = None, config: Path | None = None,
                 ready: bool = True) -> ServerProcess: ...
