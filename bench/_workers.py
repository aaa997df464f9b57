"""`treadle worker` subprocesses for the cluster benchmark, and the fleet that stops them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench._common import BENCH_DIR, progress
from bench.cluster_graphs import GRAPHS

ROOT = BENCH_DIR.parent
GRAPH_ARGS = [f"{name}=bench.cluster_graphs:{attr}" for name, attr in GRAPHS.items()]


class WorkerProc:
    """One ``treadle worker`` subprocess; output to ``<log_dir>/worker-<label>.log``."""

    def __init__(self, url: str, log_dir: Path, label: str, args: list[str]) -> None:
        self.label = label
        self.log_path = log_dir / f"worker-{label}.log"
        self._out = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "treadle", "worker", "--store", url, *args, *GRAPH_ARGS],
            cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT,
        )
        self.started = time.perf_counter()
        self.ready_s: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "serving" in self.log():
                self.ready_s = time.perf_counter() - self.started
                return self.ready_s
            if not self.alive():
                raise RuntimeError(f"worker {self.label} exited early:\n{self.log()[-2000:]}")
            time.sleep(0.02)
        raise RuntimeError(f"worker {self.label} not ready after {timeout:.0f} s:\n{self.log()[-2000:]}")

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def close(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` s; always reaps and closes the log."""
        try:
            if self.alive():
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            if self.alive():  # pragma: no cover - only if the waits above raised
                self.proc.kill()
            self._out.close()


class Fleet:
    """Every worker started by the benchmark, so a finally block can stop them all."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.url, self.log_dir = url, log_dir
        self.all: list[WorkerProc] = []

    def start(self, label: str, args: list[str]) -> WorkerProc:
        w = WorkerProc(self.url, self.log_dir, label, args)
        self.all.append(w)
        return w

    def start_ready(self, labels: list[str], args: list[str]) -> list[WorkerProc]:
        ws = [self.start(label, args) for label in labels]  # start in parallel
        for w in ws:
            w.wait_ready()
        progress("workers " + ", ".join(f"{w.label} ready in {w.ready_s:.1f} s" for w in ws))
        return ws

    def by_name(self, worker_name: str | None) -> WorkerProc | None:
        """The worker whose lease name (``host:pid:hex``) is ``worker_name``."""
        if not worker_name:
            return None
        try:
            pid = int(worker_name.rsplit(":", 2)[1])
        except (IndexError, ValueError):
            return None
        return next((w for w in self.all if w.pid == pid), None)

    def lease_trouble(self, workers: list[WorkerProc]) -> Counter:
        """How many log lines of ``workers`` report lost / expired leases or refused writes."""
        kinds = ("lease lost", "lease expired", "refused")
        return Counter(k for w in workers for line in w.log().splitlines() for k in kinds if k in line)

    def close(self) -> None:
        for w in self.all:
            try:
                w.close()
            except Exception as exc:  # noqa: BLE001
                print(f"  (stopping worker {w.label} failed: {exc})", file=sys.stderr)
