"""HTTP server subprocesses for the server benchmark: start, wait for ``GET /ok``, stop.

Each server runs in its own process group with its output captured to a log
file; a server that fails to start raises :class:`ServerUnavailable` carrying
the tail of that log, so the benchmark can print "not available" and go on.

The reference ``langgraph dev`` (``langgraph-cli[inmem]``) pins its own versions
of LangGraph and friends, so it lives in a separate virtualenv, never in the
environment treadle is developed in: ``.bench/langgraph-dev/`` at the repository
root (created on first use), or the one named by ``TREADLE_BENCH_LANGGRAPH_DEV``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench._common import BENCH_DIR, fresh_pg_database, pg_url_variant, progress, sqlite_url

__all__ = [
    "LANGGRAPH_DEV_ENV",
    "STUB_APP",
    "ServerProc",
    "ServerUnavailable",
    "free_port",
    "langgraph_dev_venv",
    "launch",
    "offline_env",
]

ROOT = BENCH_DIR.parent
LANGGRAPH_DEV_ENV = "TREADLE_BENCH_LANGGRAPH_DEV"
DEFAULT_VENV = ROOT / ".bench" / "langgraph-dev"
LANGGRAPH_DEV_REQUIREMENT = "langgraph-cli[inmem]"


STUB_APP = "bench._servers:stub_app"  # for ``uvicorn --factory``


def stub_app():  # noqa: ANN201 - Starlette is imported lazily
    """The HTTP floor: answers the benchmark's two calls with canned JSON, runs nothing.

    ``POST /threads`` returns a thread, ``POST /threads/{id}/runs/wait`` returns
    ``{"n": 10}``: what remains of an op's cost is the client, HTTP and uvicorn.
    """
    import json
    import uuid
    from datetime import UTC, datetime

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def reply(body: object) -> Response:
        return Response(json.dumps(body), media_type="application/json")

    async def ok(request: Request) -> Response:
        return reply({"ok": True})

    async def create_thread(request: Request) -> Response:
        await request.body()
        now = datetime.now(UTC).isoformat()
        return reply({"thread_id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "metadata": {},
                      "status": "idle", "values": None, "interrupts": {}})

    async def wait_run(request: Request) -> Response:
        await request.body()
        return reply({"n": 10})

    return Starlette(routes=[
        Route("/ok", ok),
        Route("/threads", create_thread, methods=["POST"]),
        Route("/threads/{thread_id}/runs/wait", wait_run, methods=["POST"]),
    ])


class ServerUnavailable(RuntimeError):
    """A server could not be started (missing command, crash, no answer on /ok)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def offline_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that keeps LangGraph's tooling off the network.

    ``langgraph dev`` otherwise posts CLI analytics (supabase.co) and asks PyPI for
    newer ``langgraph-api`` versions on start; LangSmith tracing is off too.
    """
    env = dict(os.environ if base is None else base)
    env.update(
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="true",
        PYTHONUNBUFFERED="1",
    )
    for key in ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "LANGSMITH_ENDPOINT"):
        env.pop(key, None)
    return env


def langgraph_dev_venv(install: bool = True) -> Path:
    """The virtualenv holding ``langgraph dev``; created with pip when missing.

    ``TREADLE_BENCH_LANGGRAPH_DEV=/path/to/venv`` points at an existing one (it is
    never modified). Raises :class:`ServerUnavailable` when no usable venv exists.
    """
    override = os.environ.get(LANGGRAPH_DEV_ENV)
    if override:
        venv = Path(override).expanduser()
        if not (venv / "bin" / "langgraph").exists():
            raise ServerUnavailable(f"{LANGGRAPH_DEV_ENV}={override}: no bin/langgraph in that virtualenv")
        return venv
    venv = DEFAULT_VENV
    marker = venv / ".treadle-bench-ready"  # written only after pip succeeded (an interrupted install retries)
    if marker.exists():
        return venv
    if not install:
        raise ServerUnavailable(f"no langgraph dev virtualenv at {venv}")
    progress(f"creating {venv.relative_to(ROOT)}: pip install {LANGGRAPH_DEV_REQUIREMENT!r} (first run only)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True,
                       timeout=120)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             LANGGRAPH_DEV_REQUIREMENT],
            check=True, capture_output=True, text=True, timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = str(getattr(exc, "stderr", None) or "").strip()
        raise ServerUnavailable(f"installing {LANGGRAPH_DEV_REQUIREMENT} into {venv} failed: {exc}"
                                + (f": {detail.splitlines()[-1]}" if detail else "")) from exc
    if not (venv / "bin" / "langgraph").exists():
        raise ServerUnavailable(f"pip install {LANGGRAPH_DEV_REQUIREMENT} left no {venv}/bin/langgraph")
    marker.write_text(LANGGRAPH_DEV_REQUIREMENT + "\n")
    return venv


def launch(key: str, config: str, port: int, *, tmp: Path, pg_url: str, suffix: str,
           lg_jobs: int | None = None) -> tuple[list[str], dict[str, str]]:
    """The command and environment of one benchmarked server: ``langgraph_dev`` (its own
    virtualenv; ``--n-jobs-per-worker lg_jobs`` unless None), ``treadle_dev`` (a SQLite file
    in ``tmp``) or ``treadle_serve`` (one worker process, on the scratch database ``pg_url`` +
    ``suffix``, dropped and recreated here)."""
    if key == "langgraph_dev":
        argv = [str(langgraph_dev_venv() / "bin" / "langgraph"), "dev", "--config", config,
                "--port", str(port), "--no-browser", "--no-reload"]
        if lg_jobs is not None:
            argv += ["--n-jobs-per-worker", str(lg_jobs)]
        env = offline_env()
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        return argv, env
    env = offline_env()
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH")) if p)
    if key == "treadle_dev":
        return [sys.executable, "-m", "treadle", "dev", "--config", config, "--port", str(port),
                "--store", sqlite_url(tmp / f"{suffix.strip('_')}.db")], env
    url = pg_url_variant(pg_url, suffix)
    try:
        fresh_pg_database(url)
    except Exception as exc:  # noqa: BLE001
        raise ServerUnavailable(f"PostgreSQL: {exc}") from exc
    return [sys.executable, "-m", "treadle", "serve", "--config", config, "--port", str(port),
            "--store", url, "--workers", "1"], env


class ServerProc:
    """One server subprocess on ``127.0.0.1:<port>``, output in ``<log_dir>/<label>.log``."""

    def __init__(self, label: str, argv: list[str], port: int, *, cwd: Path, env: dict[str, str],
                 log_dir: Path) -> None:
        self.label = label
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"{label.replace(' ', '-')}.log"
        self._out = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.ready_s: float | None = None
        self._terminated = False
        try:
            # own process group: stop() reaches anything the server forks (reloaders, workers)
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            self._out.close()
            self.proc = None
            raise ServerUnavailable(f"cannot execute {argv[0]}: {exc}") from exc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 2500) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return re.sub(r"\x1b\[[0-9;]*m", "", text)[-chars:]

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll ``GET /ok`` until it answers 200; seconds since start."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                rc = self.proc.returncode if self.proc is not None else None
                raise ServerUnavailable(f"exited with status {rc} before answering /ok")
            try:
                with urllib.request.urlopen(self.url + "/ok", timeout=2) as resp:
                    if resp.status == 200:
                        self.ready_s = time.perf_counter() - self.started
                        return self.ready_s
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
            time.sleep(0.1)
        raise ServerUnavailable(f"GET /ok did not answer 200 within {timeout:.0f} s (last: {last})")

    def terminate(self) -> None:
        """Send SIGTERM to the process group once (a second one makes uvicorn skip its shutdown)."""
        if self.alive() and not self._terminated:
            self._terminated = True
            self._signal(signal.SIGTERM)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL after ``grace`` s; returns the exit status."""
        try:
            if self.alive():
                assert self.proc is not None
                self.terminate()
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.proc.wait(5)
            if self.proc is not None:
                try:  # stragglers of the group (the leader is gone, the group id is still ours)
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        finally:
            self._out.close()
        return self.proc.returncode if self.proc is not None else None

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def describe_failure(self, exc: BaseException) -> str:
        """Reason plus log tail, indented, for stderr."""
        tail = self.log_tail().rstrip()
        body = "\n".join("    | " + line for line in tail.splitlines()[-25:]) if tail else "    | (empty log)"
        return f"{self.label}: {exc}\n  command: {' '.join(self.argv)}\n  log tail ({self.log_path}):\n{body}"
