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
from typing import Any

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


# --- what the docs name exists, and kubectl runs in the documented order ----------------------

READ = [*DOCS, REPO / "examples" / "README.md", *sorted((REPO / "examples").rglob("*.py"))]


def test_the_docs_name_no_path_outside_the_repository() -> None:
    # A path on the machine the docs were written on means nothing to a reader.
    for doc in READ:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            found = re.search(r"(?<![\w.:/])/(?:work|home|Users|root|tmp/pytest)[/\w.\-]*", line)
            assert not found, f"{doc.relative_to(REPO)}:{number} names {found.group(0)}"


def test_relative_links_of_the_docs_exist() -> None:
    for doc in [*DOCS, REPO / "examples" / "README.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            assert path.exists(), f"{doc.relative_to(REPO)} links to {target}, which is not there"
            assert REPO in path.parents, f"{doc.relative_to(REPO)} links outside the repository"


def test_graph_references_of_the_docs_name_real_attributes() -> None:
    import ast

    refs: set[tuple[str, str]] = set()
    for doc in READ:
        text = doc.read_text()
        refs |= set(re.findall(r"\b(examples/[\w/]+\.py):(\w+)", text))
        refs |= {(m.replace(".", "/") + ".py", a)
                 for m, a in re.findall(r"\b(examples(?:\.\w+)+):(\w+)", text)}
        refs |= {("examples/" + m.replace(".", "/") + ".py", a)
                 for m, a in re.findall(r"from examples\.([\w.]+) import (\w+)", text)}
    assert ("examples/pipeline.py", "builder") in refs  # the extraction itself
    for path, attr in sorted(refs):
        tree = ast.parse((REPO / path).read_text())
        names = {t.id for node in tree.body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
        names |= {node.name for node in tree.body
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        assert attr in names, f"the docs name {path}:{attr}; {path} defines {sorted(names)}"


def _selected(doc: dict[str, Any], selector: str) -> bool:
    """A label selector of the forms the docs use: ``key notin (a,b)``, ``key=value``."""
    labels: dict[str, str] = (doc.get("metadata") or {}).get("labels") or {}
    if found := re.fullmatch(r"([\w./-]+) notin \(([\w,-]+)\)", selector):
        return labels.get(found.group(1)) not in found.group(2).split(",")
    if found := re.fullmatch(r"([\w./-]+)=([\w.-]+)", selector):
        return labels.get(found.group(1)) == found.group(2)
    raise AssertionError(f"a selector this test cannot evaluate: {selector!r}")


def _rendered_blocks() -> list[tuple[str, list[str]]]:
    """Shell blocks of docs/operations.md that render manifests to a file and apply them."""
    blocks = []
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "docs" / "operations.md").read_text(),
                            re.S):
        lines = [line.strip() for line in block.replace("\\\n", " ").splitlines()
                 if line.strip() and not line.strip().startswith("#")]
        if any(line.startswith("treadle deploy k8s") and ">" in line for line in lines):
            blocks.append((block, lines))
    return blocks


def test_documented_kubectl_apply_in_one_go_waits_for_the_migration_job(tmp_path: Path) -> None:
    """The docs apply a rendering in one go: safe because the migration Job comes first and
    every pod that needs the schema waits for it in an init container; the documented wait
    selects every Job."""
    import yaml

    blocks = _rendered_blocks()
    assert len(blocks) >= 2  # first install, upgrade
    for block, lines in blocks:
        render = next(line for line in lines if line.startswith("treadle deploy k8s"))
        command, out = render.rsplit(">", 1)
        done = subprocess.run([sys.executable, "-m", "treadle", *command.split()[1:]], cwd=REPO,
                              env=subprocess_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        docs = [d for d in yaml.safe_load_all(done.stdout) if d]
        applies = [line for line in lines if line.startswith(f"kubectl apply -f {out.strip()}")]
        assert applies == [f"kubectl apply -f {out.strip()}"], block
        kinds = [d["kind"] for d in docs]
        workloads = [i for i, k in enumerate(kinds) if k in ("Deployment", "CronJob")]
        assert "Job" in kinds and workloads and kinds.index("Job") < min(workloads), kinds
        for doc in docs:
            if doc["kind"] not in ("Deployment", "CronJob"):
                continue
            spec = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else \
                doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            waits = [c for c in spec.get("initContainers") or []
                     if c.get("args", [])[:3] == ["migrate", "--check", "--wait"]]
            assert waits, f"{doc['kind']} {doc['metadata']['name']} does not wait for the schema"
        wait = next(line for line in lines if " wait " in line and "job" in line)
        waited = re.search(r"job -l (\S+)", wait)
        assert waited, wait
        jobs = [d for d in docs if d["kind"] == "Job"]
        assert jobs and all(_selected(d, waited.group(1)) for d in jobs), wait


@pytest.mark.postgres
def test_the_cluster_quick_starts_python_runs_as_written(tmp_path: Path, pg_url: str) -> None:
    text = (REPO / "docs" / "cluster.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", quick, re.S)
    shutil.copytree(REPO / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("__pycache__", ".treadle"))
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("TREADLE_")}
    worker = _Served(f"{sys.executable} -m treadle worker --store {pg_url} --graphs "
                     "examples/langgraph.json", tmp_path, env, tmp_path / "worker.log")
    try:
        worker.wait_up()
        done = subprocess.run([sys.executable, "-c", re.sub(r"postgresql://[^\s'\"]+", pg_url, code)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        worker.stop()
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{worker.log()}"
    assert "'report'" in done.stdout, done.stdout  # the stream's last update
